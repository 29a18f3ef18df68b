//! Network-boot and extra options (RFC 2132, 3397, 3442, 4578): what one
//! network, or one DUT, adds to its replies, and the pure stage of the
//! handler that puts them in a reply.
//!
//! Servers answer the options a client asks for in its parameter request
//! list (RFC 2132 9.8) and nothing more, since an old PXE ROM may choke on a
//! long reply; only siaddr and the `file` field go out whenever they are
//! configured, because BOOTP-era loaders (U-Boot, PXE) read those fields and
//! never ask for options 66/67.

use std::net::Ipv4Addr;
use std::str::FromStr;

use dhcproto::v4::{DhcpOption, Message, OptionCode, UnknownOption};
use dhcproto::{Encodable, Name};
use ipnet::Ipv4Net;
use serde::{Serialize, Serializer};

/// The options one network (or one DUT) configures. A DUT's value wins over
/// the network's, key by key ([`DhcpOptions::overlay`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DhcpOptions {
    /// siaddr: where the client fetches its boot file. When a boot file is
    /// set without it, the gateway (dutnet's own TFTP server) is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_server: Option<Ipv4Addr>,
    /// The `file` field and option 67.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_file: Option<String>,
    /// Option 66.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tftp_server_name: Option<String>,
    /// Option 43, opaque bytes.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_opt_hex"
    )]
    pub vendor_specific: Option<Vec<u8>>,
    /// Option 42.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntp_servers: Option<Vec<Ipv4Addr>>,
    /// Option 119.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_search: Option<Vec<String>>,
    /// Option 26.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Option 121.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_routes: Option<Vec<StaticRoute>>,
    /// Options by code; a DUT's option replaces the network's of the same code.
    #[serde(rename = "options", skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomOption>,
    /// Boot files by client kind, first match wins; a DUT's rules are tried
    /// before the network's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub boot_rules: Vec<BootRule>,
}

/// One option 121 route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StaticRoute {
    pub destination: Ipv4Net,
    pub gateway: Ipv4Addr,
}

/// An option by code with a typed value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomOption {
    pub code: u8,
    #[serde(flatten)]
    pub value: OptionValue,
}

/// The value types an option may be written in; [`OptionValue::encode`]
/// gives the option's data bytes (network byte order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum OptionValue {
    Ip(Ipv4Addr),
    Ips(Vec<Ipv4Addr>),
    U8(u8),
    U16(u16),
    U32(u32),
    String(String),
    #[serde(serialize_with = "serialize_hex")]
    Hex(Vec<u8>),
}

impl OptionValue {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Ip(ip) => ip.octets().to_vec(),
            Self::Ips(ips) => ips.iter().flat_map(|ip| ip.octets()).collect(),
            Self::U8(n) => vec![*n],
            Self::U16(n) => n.to_be_bytes().to_vec(),
            Self::U32(n) => n.to_be_bytes().to_vec(),
            Self::String(s) => s.as_bytes().to_vec(),
            Self::Hex(bytes) => bytes.clone(),
        }
    }
}

/// A boot file for the clients that match, e.g. UEFI firmware (option 93
/// = 7) or iPXE (user class `iPXE`) on a network whose default is for BIOS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootRule {
    /// Option 93, RFC 4578 2.1 (0 BIOS, 6 EFI IA32, 7 EFI x64, 11 EFI arm64, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<u16>,
    /// A prefix of option 60 (PXE ROMs send `PXEClient:Arch:00007:...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
    /// Option 77 as iPXE sends it (`iPXE`), or one RFC 3004 user class of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_class: Option<String>,
    pub boot_file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_server: Option<Ipv4Addr>,
}

/// What a request says about the client that the options depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFacts {
    /// Option 55; `None` when absent (then every configured option is sent).
    pub requested: Option<Vec<u8>>,
    pub arch: Option<u16>,
    pub vendor_class: Option<Vec<u8>>,
    pub user_class: Option<Vec<u8>>,
    /// Option 57: the longest message it accepts, IP and UDP headers included.
    pub max_message: Option<u16>,
}

/// RFC 2131 2: every client accepts 576-byte datagrams; a reply longer
/// than the client's limit may be dropped by its IP stack or its firmware.
const MIN_MAX_MESSAGE: u16 = 576;
/// IPv4 (no options) and UDP headers, which option 57 counts (RFC 2132 9.10).
const IP_UDP_HEADERS: usize = 28;

impl ClientFacts {
    pub fn of(msg: &Message) -> Self {
        let opts = msg.opts();
        Self {
            requested: match opts.get(OptionCode::ParameterRequestList) {
                Some(DhcpOption::ParameterRequestList(codes)) => {
                    Some(codes.iter().map(|c| u8::from(*c)).collect())
                }
                _ => None,
            },
            arch: match opts.get(OptionCode::ClientSystemArchitecture) {
                Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
                _ => None,
            },
            vendor_class: match opts.get(OptionCode::ClassIdentifier) {
                Some(DhcpOption::ClassIdentifier(v)) => Some(v.clone()),
                _ => None,
            },
            user_class: match opts.get(OptionCode::UserClass) {
                Some(DhcpOption::UserClass(v)) => Some(v.clone()),
                _ => None,
            },
            max_message: match opts.get(OptionCode::MaxMessageSize) {
                Some(DhcpOption::MaxMessageSize(n)) => Some(*n),
                _ => None,
            },
        }
    }

    /// The longest DHCP payload this client takes.
    fn payload_limit(&self) -> usize {
        usize::from(self.max_message.unwrap_or(0).max(MIN_MAX_MESSAGE)) - IP_UDP_HEADERS
    }

    fn wants(&self, code: u8) -> bool {
        self.requested.as_ref().is_none_or(|r| r.contains(&code))
    }
}

impl BootRule {
    /// Every condition given must hold (a rule with none matches nobody;
    /// the config refuses it).
    pub fn matches(&self, client: &ClientFacts) -> bool {
        let any = self.arch.is_some() || self.vendor_class.is_some() || self.user_class.is_some();
        let arch = self.arch.is_none_or(|a| client.arch == Some(a));
        let vendor = self.vendor_class.as_ref().is_none_or(|v| {
            client
                .vendor_class
                .as_ref()
                .is_some_and(|c| c.starts_with(v.as_bytes()))
        });
        let user = self.user_class.as_ref().is_none_or(|u| {
            client
                .user_class
                .as_ref()
                .is_some_and(|c| user_class_has(c, u.as_bytes()))
        });
        any && arch && vendor && user
    }
}

/// iPXE sends option 77 as the bare string; RFC 3004 4 makes it a list of
/// length-prefixed classes. Either form matches.
fn user_class_has(data: &[u8], class: &[u8]) -> bool {
    if data == class {
        return true;
    }
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let Some(item) = tail.get(..usize::from(len)) else {
            return false;
        };
        if item == class {
            return true;
        }
        rest = &tail[usize::from(len)..];
    }
    false
}

impl DhcpOptions {
    /// With option 42 naming `server` unless the user gave NTP servers
    /// (`local_ntp`: the gateway serves NTP).
    #[must_use]
    pub fn with_default_ntp(mut self, server: Ipv4Addr) -> Self {
        if self.ntp_servers.is_none() {
            self.ntp_servers = Some(vec![server]);
        }
        self
    }

    /// `self` (a DUT's) over `base` (its network's).
    pub fn overlay(&self, base: &DhcpOptions) -> DhcpOptions {
        let mut custom = self.custom.clone();
        custom.extend(
            base.custom
                .iter()
                .filter(|b| self.custom.iter().all(|o| o.code != b.code))
                .cloned(),
        );
        let mut boot_rules = self.boot_rules.clone();
        boot_rules.extend(base.boot_rules.iter().cloned());
        DhcpOptions {
            next_server: self.next_server.or(base.next_server),
            boot_file: self.boot_file.clone().or_else(|| base.boot_file.clone()),
            tftp_server_name: self
                .tftp_server_name
                .clone()
                .or_else(|| base.tftp_server_name.clone()),
            vendor_specific: self
                .vendor_specific
                .clone()
                .or_else(|| base.vendor_specific.clone()),
            ntp_servers: self
                .ntp_servers
                .clone()
                .or_else(|| base.ntp_servers.clone()),
            domain_search: self
                .domain_search
                .clone()
                .or_else(|| base.domain_search.clone()),
            mtu: self.mtu.or(base.mtu),
            static_routes: self
                .static_routes
                .clone()
                .or_else(|| base.static_routes.clone()),
            custom,
            boot_rules,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == DhcpOptions::default()
    }

    /// The boot file and next server this client gets: the first matching
    /// rule's, else the plain `boot_file`.
    pub fn boot_for(&self, client: &ClientFacts) -> (Option<&str>, Option<Ipv4Addr>) {
        match self.boot_rules.iter().find(|r| r.matches(client)) {
            Some(rule) => (
                Some(rule.boot_file.as_str()),
                rule.next_server.or(self.next_server),
            ),
            None => (self.boot_file.as_deref(), self.next_server),
        }
    }

    /// Writes the options into `reply`. `server_ip` is the next server when
    /// a boot file is given without one. The config layer checked every
    /// length (file <= 127 bytes, options <= 255), so nothing here panics on
    /// a valid config; an oversized value is skipped, not sent truncated.
    pub fn apply(&self, reply: &mut Message, client: &ClientFacts, server_ip: Ipv4Addr) {
        let (boot_file, next_server) = self.boot_for(client);
        if let Some(file) = boot_file {
            // The 128-byte `file` field needs a terminating NUL.
            if file.len() < 128 {
                reply.set_fname(file.as_bytes());
            }
            reply.set_siaddr(next_server.unwrap_or(server_ip));
        } else if let Some(ip) = next_server {
            reply.set_siaddr(ip);
        }
        let opts = reply.opts_mut();
        let mut put = |code: u8, option: DhcpOption| {
            if client.wants(code) {
                opts.insert(option);
            }
        };
        if let Some(file) = boot_file {
            put(67, DhcpOption::BootfileName(file.as_bytes().to_vec()));
        }
        if let Some(name) = &self.tftp_server_name {
            put(66, DhcpOption::TFTPServerName(name.as_bytes().to_vec()));
        }
        if let Some(bytes) = &self.vendor_specific {
            put(43, DhcpOption::VendorExtensions(bytes.clone()));
        }
        if let Some(ips) = &self.ntp_servers {
            put(42, DhcpOption::NtpServers(ips.clone()));
        }
        if let Some(mtu) = self.mtu {
            put(26, DhcpOption::InterfaceMtu(mtu));
        }
        if let Some(names) = &self.domain_search {
            // The config layer parsed each name the same way.
            let names: Vec<Name> = names
                .iter()
                .filter_map(|n| Name::from_str(n).ok())
                .collect();
            put(119, DhcpOption::DomainSearch(names));
        }
        if let Some(routes) = &self.static_routes {
            put(
                121,
                DhcpOption::ClasslessStaticRoute(
                    routes.iter().map(|r| (r.destination, r.gateway)).collect(),
                ),
            );
        }
        for option in &self.custom {
            put(
                option.code,
                DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::from(option.code),
                    option.value.encode(),
                )),
            );
        }
        self.fit(reply, client);
    }

    /// Drops configured options, the custom ones first (the last listed
    /// first), until the reply fits the client's limit. Option 67 goes last:
    /// the `file` field still names the boot file.
    fn fit(&self, reply: &mut Message, client: &ClientFacts) {
        let limit = client.payload_limit();
        let order = self
            .custom
            .iter()
            .rev()
            .map(|o| o.code)
            .chain([121, 119, 43, 42, 66, 26, 67]);
        for code in order {
            if reply.to_vec().map_or(0, |b| b.len()) <= limit {
                return;
            }
            reply.opts_mut().remove(OptionCode::from(code));
        }
    }
}

/// Codes the server sets itself or that are framing: a custom option may
/// not replace them.
pub const SERVER_OWNED_CODES: &[(u8, &str)] = &[
    (0, "pad"),
    (1, "the subnet mask (from `subnet`)"),
    (3, "the router (the gateway)"),
    (6, "the DNS server (the gateway)"),
    (12, "the host name (from the address entry's `hostname`)"),
    (15, "the domain name (from `domain`)"),
    (28, "the broadcast address (from `subnet`)"),
    (50, "the requested address"),
    (51, "the lease time (from `lease_time`)"),
    (52, "option overload"),
    (53, "the message type"),
    (54, "the server identifier (the gateway)"),
    (55, "the parameter request list"),
    (58, "the renewal time (from `lease_time`)"),
    (59, "the rebinding time (from `lease_time`)"),
    (61, "the client identifier"),
    (255, "end"),
];

/// Codes that have their own `dhcp_options` key.
pub const NAMED_CODES: &[(u8, &str)] = &[
    (26, "mtu"),
    (42, "ntp_servers"),
    (43, "vendor_specific"),
    (66, "tftp_server_name"),
    (67, "boot_file"),
    (119, "domain_search"),
    (121, "static_routes"),
];

fn serialize_hex<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&crate::dhcp::format_hex(bytes))
}

fn serialize_opt_hex<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(b) => serialize_hex(b, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(arch: Option<u16>, vendor: Option<&str>, user: Option<&str>, file: &str) -> BootRule {
        BootRule {
            arch,
            vendor_class: vendor.map(str::to_owned),
            user_class: user.map(str::to_owned),
            boot_file: file.into(),
            next_server: None,
        }
    }

    #[test]
    fn values_encode_in_network_order() {
        assert_eq!(OptionValue::U16(0x1234).encode(), [0x12, 0x34]);
        assert_eq!(OptionValue::U32(1).encode(), [0, 0, 0, 1]);
        assert_eq!(
            OptionValue::Ips(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]).encode(),
            [10, 0, 0, 1, 10, 0, 0, 2]
        );
        assert_eq!(OptionValue::String("ab".into()).encode(), b"ab");
    }

    #[test]
    fn rules_match_on_every_given_condition() {
        let uefi = ClientFacts {
            arch: Some(7),
            vendor_class: Some(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
            ..ClientFacts::default()
        };
        let ipxe = ClientFacts {
            arch: Some(7),
            user_class: Some(b"iPXE".to_vec()),
            ..ClientFacts::default()
        };
        let rfc3004 = ClientFacts {
            user_class: Some(b"\x03abc\x04iPXE".to_vec()),
            ..ClientFacts::default()
        };
        assert!(rule(Some(7), None, None, "x").matches(&uefi));
        assert!(rule(Some(7), Some("PXEClient"), None, "x").matches(&uefi));
        assert!(!rule(Some(0), None, None, "x").matches(&uefi));
        assert!(!rule(Some(7), None, Some("iPXE"), "x").matches(&uefi));
        assert!(rule(Some(7), None, Some("iPXE"), "x").matches(&ipxe));
        assert!(rule(None, None, Some("iPXE"), "x").matches(&rfc3004));
        assert!(!rule(None, None, None, "x").matches(&uefi));
    }

    #[test]
    fn local_ntp_names_the_gateway_unless_the_user_named_servers() {
        let gw = Ipv4Addr::new(192, 168, 100, 1);
        let other = Ipv4Addr::new(10, 0, 0, 123);
        assert_eq!(
            DhcpOptions::default().with_default_ntp(gw).ntp_servers,
            Some(vec![gw])
        );
        let given = DhcpOptions {
            ntp_servers: Some(vec![other]),
            ..DhcpOptions::default()
        };
        assert_eq!(given.with_default_ntp(gw).ntp_servers, Some(vec![other]));
    }

    #[test]
    fn dut_overlays_network_key_by_key() {
        let net = DhcpOptions {
            boot_file: Some("net.bin".into()),
            mtu: Some(1400),
            custom: vec![
                CustomOption {
                    code: 224,
                    value: OptionValue::U8(1),
                },
                CustomOption {
                    code: 225,
                    value: OptionValue::U8(2),
                },
            ],
            boot_rules: vec![rule(Some(7), None, None, "net-uefi.efi")],
            ..DhcpOptions::default()
        };
        let dut = DhcpOptions {
            boot_file: Some("dut.bin".into()),
            custom: vec![CustomOption {
                code: 224,
                value: OptionValue::U8(9),
            }],
            boot_rules: vec![rule(Some(7), None, None, "dut-uefi.efi")],
            ..DhcpOptions::default()
        };
        let both = dut.overlay(&net);
        assert_eq!(both.boot_file.as_deref(), Some("dut.bin"));
        assert_eq!(both.mtu, Some(1400));
        assert_eq!(
            both.custom
                .iter()
                .map(|c| c.encode_pair())
                .collect::<Vec<_>>(),
            [(224, vec![9]), (225, vec![2])]
        );
        let uefi = ClientFacts {
            arch: Some(7),
            ..ClientFacts::default()
        };
        assert_eq!(both.boot_for(&uefi).0, Some("dut-uefi.efi"));
    }

    #[test]
    fn replies_fit_the_client_limit() {
        let big = |code| CustomOption {
            code,
            value: OptionValue::Hex(vec![0xab; 200]),
        };
        let options = DhcpOptions {
            boot_file: Some("pxelinux.0".into()),
            custom: vec![big(224), big(225), big(226)],
            ..DhcpOptions::default()
        };
        let len = |m: &Message| m.to_vec().map_or(0, |b| b.len());
        let mut small = Message::default();
        options.apply(
            &mut small,
            &ClientFacts::default(),
            Ipv4Addr::new(10, 0, 0, 1),
        );
        assert!(len(&small) <= 576 - 28, "{}", len(&small));
        // The first options listed stay, and the boot file.
        assert!(small.opts().get(OptionCode::from(224)).is_some());
        assert!(small.opts().get(OptionCode::from(226)).is_none());
        assert!(small.opts().get(OptionCode::BootfileName).is_some());
        let mut large = Message::default();
        let jumbo = ClientFacts {
            max_message: Some(1500),
            ..ClientFacts::default()
        };
        options.apply(&mut large, &jumbo, Ipv4Addr::new(10, 0, 0, 1));
        assert!(large.opts().get(OptionCode::from(226)).is_some());
    }

    impl CustomOption {
        fn encode_pair(&self) -> (u8, Vec<u8>) {
            (self.code, self.value.encode())
        }
    }
}
