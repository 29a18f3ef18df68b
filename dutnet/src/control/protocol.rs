//! The control protocol: one JSON object per line each way.
//!
//! A request is `{"version":1,"request":{"verb":"add-address","ip":"..."}}`;
//! its response is `{"version":1,"response":{"ok":{"reply":"done",...}}}` or
//! `{"version":1,"response":{"error":{"kind":"invalid","message":"..."}}}`.
//! Addresses, MACs and names travel as the user typed them: the daemon
//! parses them with the config file's own code, so a runtime change and the
//! file obey the same rules and speak with the same messages.
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use super::counters::{InterfaceCounters, NetworkCounters};
use crate::tftp::TftpCounters;

/// The protocol version this build speaks. A daemon answers a request of
/// another version with [`FailureKind::Invalid`].
pub const VERSION: u32 = 1;

/// The longest request line a daemon reads (a request is a few hundred bytes).
pub const MAX_LINE: usize = 64 * 1024;

/// Flows a `flows` request shows when it does not say.
pub const DEFAULT_FLOW_LIMIT: u64 = 100;
/// The most flows one `flows` reply holds (a few MB of JSON).
pub const MAX_FLOW_LIMIT: u64 = 100_000;

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    pub version: u32,
    pub request: Request,
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    pub version: u32,
    pub response: Response,
}

/// What a client asks. `network` may be left out when the daemon runs one
/// network; read-only verbs without it cover every network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Status {
        #[serde(default)]
        network: Option<String>,
    },
    Leases {
        #[serde(default)]
        network: Option<String>,
    },
    /// The local NTP server of each network (`local_ntp`).
    NtpStatus {
        #[serde(default)]
        network: Option<String>,
    },
    /// The address leased to `mac` (any network unless `network` is given).
    GetIp {
        #[serde(default)]
        network: Option<String>,
        mac: String,
    },
    /// An `addresses` entry, added as if it were in the config file.
    AddAddress {
        #[serde(default)]
        network: Option<String>,
        ip: String,
        #[serde(default)]
        mac: Option<String>,
        #[serde(default)]
        hostname: Option<String>,
        #[serde(default)]
        public_ip: Option<String>,
        /// Left out of the line when absent, so older daemons read it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vlan_id: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_gateway: Option<String>,
    },
    RemoveAddress {
        #[serde(default)]
        network: Option<String>,
        ip: String,
    },
    DnsEntries {
        #[serde(default)]
        network: Option<String>,
    },
    /// A `dns_entries` entry, added as if it were in the config file.
    AddDns {
        #[serde(default)]
        network: Option<String>,
        hostname: String,
        ip: String,
    },
    RemoveDns {
        #[serde(default)]
        network: Option<String>,
        hostname: String,
    },
    NatRules {
        #[serde(default)]
        network: Option<String>,
    },
    /// The eBPF datapath's counters of every DUT interface.
    Stats,
    /// Read the configuration file again and apply the difference.
    Reload,
    /// The connection table (`conntrack -L` for dutnet's fast path).
    Flows {
        #[serde(default)]
        network: Option<String>,
        /// At most this many flows ([`DEFAULT_FLOW_LIMIT`] when left out,
        /// 1 to [`MAX_FLOW_LIMIT`]; see [`flow_limit`]).
        #[serde(default)]
        limit: Option<u64>,
    },
    /// A packet capture: the one streaming request (see
    /// [`crate::capture`]). Its answer is a [`Reply::Capture`] line, then
    /// the capture as a pcap byte stream until the daemon closes the
    /// connection; or an error line and nothing more.
    Capture(CaptureRequest),
}

/// What `dutnet capture` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    #[serde(default)]
    pub network: Option<String>,
    /// Only this DUT's packets: its address or MAC, as the user typed it.
    #[serde(default)]
    pub dut: Option<String>,
    /// On the upstream NIC, after translation, instead of the DUT NIC.
    #[serde(default)]
    pub upstream: bool,
    /// End after this many packets.
    #[serde(default)]
    pub count: Option<u64>,
    /// End after this many milliseconds (at most
    /// [`crate::capture::MAX_DURATION`]).
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// A pcap-filter(7) expression the packets must match too.
    #[serde(default)]
    pub filter: Option<String>,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(Reply),
    Error(Failure),
}

/// Why a request was not carried out; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No such network, address, lease or DNS entry.
    NotFound,
    /// The request breaks a rule (of the config file, or of the protocol);
    /// nothing was changed.
    Invalid,
    /// A valid request the daemon could not carry out (a kernel call failed).
    Failed,
    /// The client may not do this (a capture without `enable_tcpdump`, by
    /// another user than root).
    Denied,
}

impl Failure {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::NotFound,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Invalid,
            message: message.into(),
        }
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Denied,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Failed,
            message: message.into(),
        }
    }
}

/// A successful answer, one shape per verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    Status {
        networks: Vec<NetworkStatus>,
    },
    Leases {
        networks: Vec<NetworkLeases>,
    },
    NtpStatus {
        networks: Vec<NetworkNtp>,
        /// The exporter's clock, as adjtimex(2) reads it.
        clock: NtpClock,
    },
    Ip(LeaseInfo),
    /// A change was made (add/remove); `message` says which.
    Done {
        network: String,
        message: String,
    },
    DnsEntries {
        networks: Vec<NetworkDns>,
    },
    /// What a reload did.
    Reloaded {
        summary: ReloadSummary,
    },
    NatRules {
        networks: Vec<NetworkNat>,
        /// dutnet's nftables table as `nft list table ip dutnet` prints it:
        /// the whole NAT of networks on the nft datapath, and what the eBPF
        /// fast path punts. One table for every network; `None` when it
        /// cannot be listed.
        #[serde(default)]
        ruleset: Option<String>,
    },
    Stats {
        /// `ebpf` when the eBPF programs run (for some networks at least),
        /// `nft` when every network is on the nftables datapath.
        datapath: String,
        /// One entry per DUT interface the eBPF programs are attached to,
        /// named as the daemon sees it.
        interfaces: Vec<InterfaceCounters>,
        /// Each network's DHCP and DNS counters (empty from `dutnet attach`).
        #[serde(default)]
        networks: Vec<NetworkCounters>,
        /// Seconds since the daemon started.
        #[serde(default)]
        uptime_seconds: u64,
    },
    Flows {
        /// Flows of the networks on the eBPF datapath, by network, then the
        /// most recently active first. With more than the limit, those the
        /// DUTs sent on most recently.
        flows: Vec<FlowInfo>,
        /// How many flows those networks have; `flows` holds `shown` of
        /// them.
        total: u64,
        shown: u64,
        /// Networks whose flows are not in dutnet's table (the nft
        /// datapath), each with where to see them instead.
        elsewhere: Vec<FlowsElsewhere>,
    },
    /// What a capture records; the pcap stream follows this line.
    Capture(CapturePlan),
}

/// Where and what a capture records. The daemon answers a
/// [`Request::Capture`] with it (the server then opens the capture and
/// forwards it to the client as the header line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePlan {
    pub network: String,
    /// The interface the packets are read on.
    pub interface: String,
    /// The whole pcap-filter(7) expression applied: the DUT's or its
    /// translated flows', and the user's; empty for every packet.
    pub filter: String,
    /// `enable_tcpdump` of the network: users other than root may capture.
    pub any_user: bool,
    /// When it ends at the latest, in milliseconds.
    pub duration_ms: u64,
    /// How many packets it ends after, if it does.
    #[serde(default)]
    pub count: Option<u64>,
}

/// What a reload did, by network name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Taken live (entries, timeouts) or restarted (anything else).
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// What could not be applied: saved runtime changes that no longer fit
    /// the file, networks that failed to come up.
    pub problems: Vec<String>,
}

/// `status` of one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    pub name: String,
    pub interface: String,
    /// The DUT interface exists and is taken over.
    pub interface_up: bool,
    /// `up`, `waiting` (its DUT interface does not exist yet) or `failed`
    /// (see `problem`); empty from a dutnet older than per-network states.
    #[serde(default)]
    pub state: String,
    /// Why the network is waiting or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The gateway address with its prefix, as put on the DUT interface.
    pub gateway: String,
    pub subnet: String,
    /// The interface DUT traffic leaves through (`None` without NAT, or
    /// when it cannot be resolved now).
    pub upstream: Option<String>,
    /// `masquerade`, `1to1` or `disabled`.
    pub nat_mode: String,
    /// `ebpf (tcx)`, `ebpf (netlink)`, `nft`, or `none` while the interface is absent.
    pub datapath: String,
    pub dhcp_enabled: bool,
    pub dhcp_running: bool,
    pub dns_running: bool,
    /// jumpstarter's `NetworkStatus.interface_status`.
    pub interface_status: InterfaceStatus,
    /// Bound DHCP leases, as jumpstarter's `NetworkStatus.leases` lists them.
    pub leases: Vec<StatusLease>,
    /// `addresses` entries (config file plus runtime changes).
    pub addresses: usize,
    /// `dns_entries` (config file plus runtime changes), jumpstarter's
    /// `{hostname, ip}` each.
    pub dns_entries: Vec<DnsRecord>,
    /// This network's rules in dutnet's nft table (jumpstarter's
    /// `nat_rules`: its table's listing); empty when it cannot be listed.
    #[serde(default)]
    pub nat_rules: String,
    /// Flows in the NAT table for this DUT interface.
    pub flows: u64,
    /// Network boot; `None` when the network configures none (and from a
    /// dutnet older than network boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootStatus>,
}

/// jumpstarter's `InterfaceStatus`: the DUT interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// It exists (and dutnet has taken it over).
    pub exists: bool,
    /// dutnet's addresses on it (`address/prefix`).
    pub addresses: Vec<String>,
}

/// A lease as jumpstarter's `NetworkStatus.leases` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusLease {
    pub mac: String,
    pub ip: String,
    /// Empty when the DUT sent none.
    pub hostname: String,
    /// Unix seconds.
    pub expiry: u64,
}

/// The network-boot configuration of one network and its TFTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootStatus {
    /// The network's `dhcp_options`, as the config file's keys.
    pub dhcp_options: serde_json::Value,
    /// The `addresses` entries with their own `dhcp_options`.
    pub duts: Vec<DutBoot>,
    pub tftp_root: Option<String>,
    pub tftp_running: bool,
    /// Since the TFTP server started; `None` while it does not run.
    pub tftp: Option<TftpCounters>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DutBoot {
    pub ip: Ipv4Addr,
    pub mac: Option<String>,
    pub dhcp_options: serde_json::Value,
}

/// One network's NTP server; `enabled` and `running` as jumpstarter's
/// driver names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkNtp {
    pub network: String,
    /// `local_ntp` is set.
    pub enabled: bool,
    /// Its server is listening.
    pub running: bool,
    /// `None` while it does not run.
    pub counters: Option<crate::ntp::NtpCounters>,
    /// The clients its rate limiter remembers (at most 1024).
    pub clients: Vec<crate::ntp::limit::ClientSeen>,
}

/// The exporter's clock as the NTP server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NtpClock {
    pub synchronized: bool,
    /// The leap indicator sent (3: unsynchronized).
    pub leap: u8,
    pub stratum: u8,
    pub offset_ns: i64,
    pub maxerror_us: i64,
    pub esterror_us: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLeases {
    pub network: String,
    pub leases: Vec<LeaseInfo>,
}

/// One bound DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub network: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
    /// Seconds since the Unix epoch.
    pub expires: u64,
    /// From an `addresses` entry with this MAC.
    pub is_static: bool,
    /// Seconds since the Unix epoch of the DUT's last DHCP exchange (its
    /// last ACK) since dutnet started; absent before its first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ack: Option<u64>,
    /// What the DUT does through NAT, as of the flow table's last sweep
    /// (every 1 to 10 s); absent on a network without a fast path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatActivity>,
}

/// A DUT's flows in the fast path's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatActivity {
    /// Its flows the table holds.
    pub flows: u64,
    /// Seconds since it last sent a packet through NAT; `None` when it has
    /// no flow.
    pub last_sent_secs_ago: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDns {
    pub network: String,
    /// Custom records (`dns_entries` and `add-dns`).
    pub entries: Vec<DnsRecord>,
    /// DUT host names: `addresses[].hostname` and names DHCP clients sent.
    pub hosts: Vec<DnsRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecord {
    pub hostname: String,
    pub ip: Ipv4Addr,
}

/// What the datapath enforces for one network now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkNat {
    pub network: String,
    pub nat_mode: String,
    /// `ebpf` or `nft`: what carries the network's traffic.
    #[serde(default)]
    pub datapath: String,
    pub upstream: Option<String>,
    /// The address masqueraded DUT connections leave from.
    pub masquerade_address: Option<Ipv4Addr>,
    /// Source ports the eBPF fast path translates into (`None` on nft).
    pub ports: Option<PortRange>,
    /// Source ports the kernel's masquerade translates into: what the fast
    /// path punts, or on nft all of the network's traffic. `None` on a
    /// dutnet without eBPF: the kernel keeps the DUT's port when it is free.
    pub fallback_ports: Option<PortRange>,
    /// 1:1 mappings (private -> public).
    pub mappings: Vec<Mapping>,
    pub active_flows: u64,
}

/// One flow of a DUT, translated by the eBPF fast path. For ICMP echo the
/// DUT's and the translated port is the echo identifier, the remote's 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowInfo {
    pub network: String,
    /// `tcp`, `udp`, `icmp`.
    pub protocol: String,
    /// The DUT's address and port.
    pub dut: SocketAddrV4,
    /// What the far end sees instead.
    pub translated: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// Conntrack's name for it: `syn_sent`, `established`, `fin_wait`,
    /// `time_wait`, `close` (TCP); `unreplied`, `replied` (UDP, ICMP).
    pub state: String,
    /// Milliseconds since its last packet, either way.
    pub idle_ms: u64,
    /// Packets from the DUT, and back to it.
    pub packets_out: u64,
    pub packets_in: u64,
}

/// A network whose flows `flows` cannot list, and where they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowsElsewhere {
    pub network: String,
    /// What to run instead.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub private: Ipv4Addr,
    pub public: Ipv4Addr,
    /// The VLAN its traffic leaves tagged on (`vlan_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    /// Where its policy route goes (`public_gateway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_gateway: Option<Ipv4Addr>,
}

/// How many flows a `flows` request with `limit` gets, or why it is
/// refused.
pub fn flow_limit(limit: Option<u64>) -> Result<usize, Failure> {
    match limit.unwrap_or(DEFAULT_FLOW_LIMIT) {
        0 => Err(Failure::invalid(
            "--limit 0 shows no flow; give 1 or more (`dutnet status` shows how many flows each network has)",
        )),
        n if n > MAX_FLOW_LIMIT => Err(Failure::invalid(format!(
            "--limit {n} is more than one reply holds; give at most {MAX_FLOW_LIMIT} (and --network NAME to see one network's)"
        ))),
        // At most MAX_FLOW_LIMIT: fits any usize.
        n => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

/// Parses one request line. Errors are the [`Failure`] to send back.
pub fn parse_request(line: &str) -> Result<Request, Failure> {
    // The version is checked before the request's shape: a newer client's
    // verb would otherwise read as "unknown verb".
    let value: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| Failure::invalid(format!("the request is not JSON ({e})")))?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(VERSION)) {
        return Err(Failure::invalid(format!(
            "this dutnet daemon speaks control protocol version {VERSION}, the request has {}; \
             use the dutnet binary of the running daemon",
            version.map_or_else(|| "none".to_owned(), |v| v.to_string())
        )));
    }
    serde_json::from_value::<RequestFrame>(value)
        .map(|frame| frame.request)
        .map_err(|e| Failure::invalid(format!("malformed request ({e})")))
}

/// One request as the line to send (without the newline).
pub fn request_line(request: &Request) -> String {
    let frame = RequestFrame {
        version: VERSION,
        request: request.clone(),
    };
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string(&frame).unwrap_or_default()
}

/// One response as the line to send (without the newline).
pub fn response_line(response: Response) -> String {
    let frame = ResponseFrame {
        version: VERSION,
        response,
    };
    serde_json::to_string(&frame).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_one_line() {
        let request = Request::AddAddress {
            network: None,
            ip: "192.168.100.50".into(),
            mac: Some("02:00:00:aa:bb:cc".into()),
            hostname: None,
            public_ip: None,
            vlan_id: None,
            public_gateway: None,
        };
        let line = request_line(&request);
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            r#"{"version":1,"request":{"verb":"add-address","network":null,"ip":"192.168.100.50","mac":"02:00:00:aa:bb:cc","hostname":null,"public_ip":null}}"#
        );
        assert_eq!(parse_request(&line), Ok(request));
    }

    #[test]
    fn optional_fields_may_be_left_out() {
        let line = r#"{"version":1,"request":{"verb":"remove-dns","hostname":"x.lab"}}"#;
        assert_eq!(
            parse_request(line),
            Ok(Request::RemoveDns {
                network: None,
                hostname: "x.lab".into()
            })
        );
    }

    #[test]
    fn another_version_is_refused_before_the_shape_is_read() {
        let line = r#"{"version":2,"request":{"verb":"frobnicate"}}"#;
        let failure = parse_request(line).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Invalid);
        assert!(failure.message.contains("version 1"), "{}", failure.message);
        assert!(failure.message.contains("has 2"), "{}", failure.message);
    }

    #[test]
    fn garbage_and_unknown_verbs_are_invalid() {
        for line in [
            "not json",
            r#"{"version":1}"#,
            r#"{"version":1,"request":{"verb":"reboot"}}"#,
            r#"{"version":1,"request":{"verb":"status","bogus":1}}"#,
        ] {
            assert_eq!(
                parse_request(line).map_err(|f| f.kind),
                Err(FailureKind::Invalid),
                "{line}"
            );
        }
    }

    #[test]
    fn a_flow_limit_is_one_to_the_maximum_with_a_default() {
        assert_eq!(flow_limit(None), Ok(100));
        assert_eq!(flow_limit(Some(1)), Ok(1));
        assert_eq!(flow_limit(Some(MAX_FLOW_LIMIT)), Ok(100_000));
        for bad in [0, MAX_FLOW_LIMIT + 1, u64::MAX] {
            let failure = flow_limit(Some(bad)).unwrap_err();
            assert_eq!(failure.kind, FailureKind::Invalid);
            assert!(
                failure.message.contains(&format!("--limit {bad}")),
                "{}",
                failure.message
            );
        }
        let line = r#"{"version":1,"request":{"verb":"flows"}}"#;
        assert_eq!(
            parse_request(line),
            Ok(Request::Flows {
                network: None,
                limit: None
            })
        );
    }

    #[test]
    fn a_capture_request_is_one_object_with_its_verb() {
        let line = r#"{"version":1,"request":{"verb":"capture","network":"lab","upstream":true,"count":5,"filter":"icmp"}}"#;
        assert_eq!(
            parse_request(line),
            Ok(Request::Capture(CaptureRequest {
                network: Some("lab".into()),
                dut: None,
                upstream: true,
                count: Some(5),
                duration_ms: None,
                filter: Some("icmp".into()),
            }))
        );
        let bogus = r#"{"version":1,"request":{"verb":"capture","bogus":1}}"#;
        assert!(parse_request(bogus).is_err());
    }

    #[test]
    fn responses_round_trip() {
        for response in [
            Response::Ok(Reply::Done {
                network: "lab".into(),
                message: "added".into(),
            }),
            Response::Error(Failure::not_found("no such MAC")),
        ] {
            let line = response_line(response.clone());
            let frame: ResponseFrame = serde_json::from_str(&line).unwrap();
            assert_eq!(frame.version, VERSION);
            assert_eq!(frame.response, response);
        }
        assert_eq!(
            response_line(Response::Error(Failure::invalid("x"))),
            r#"{"version":1,"response":{"error":{"kind":"invalid","message":"x"}}}"#
        );
    }
}
