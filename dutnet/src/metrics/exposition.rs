//! A `stats` snapshot as OpenMetrics text.
//!
//! The registry is built anew for each scrape from the snapshot: the
//! daemon's counters live in the eBPF maps and the servers, so nothing is
//! kept here between scrapes.
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet, text::encode},
    metrics::{
        MetricType, TypedMetric, counter::Counter, family::Family, gauge::Gauge, info::Info,
    },
    registry::Registry,
};

use crate::{
    control::counters::{InterfaceCounters, NetworkCounters, Traffic},
    dns::latency::{BOUNDS_MICROS, UpstreamLatency},
};

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge>;

/// What the OpenMetrics text is served as.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram counted elsewhere (the DNS server's own, lock-free), shown
/// as it is: prometheus-client's `Histogram` only counts what it observes.
#[derive(Clone, Debug, Default)]
struct CountedHistogram(Arc<Mutex<UpstreamLatency>>);

impl CountedHistogram {
    fn set(&self, latency: UpstreamLatency) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = latency;
    }
}

impl TypedMetric for CountedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for CountedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let latency = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let seconds = |micros: u64| micros as f64 / 1e6;
        let bounds = BOUNDS_MICROS
            .iter()
            .map(|b| seconds(*b))
            .chain(std::iter::once(f64::INFINITY));
        // Per bucket: the encoder adds them up into `le` counts.
        let buckets: Vec<(f64, u64)> = bounds.zip(latency.counts).collect();
        encoder.encode_histogram::<NoLabelSet>(
            seconds(latency.sum_micros),
            latency.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The metric families, registered once per scrape.
#[derive(Default)]
struct Families {
    packets: Counters,
    bytes: Counters,
    dut_packets: Counters,
    dut_bytes: Counters,
    flows_active: Gauges,
    flow_budget: Gauges,
    flows_new: Counters,
    flow_evictions: Counters,
    drops: Counters,
    punts: Counters,
    datapath: Gauges,
    dhcp_leases: Gauges,
    dhcp_pool_size: Gauges,
    dhcp_received: Counters,
    dhcp_replies: Counters,
    dhcp_exhausted: Counters,
    dhcp_malformed: Counters,
    dns_queries: Counters,
    dns_queries_by_type: Counters,
    dns_answers: Counters,
    dns_errors: Counters,
    dns_upstream_seconds: Family<Labels, CountedHistogram>,
    tftp_transfers: Counters,
    tftp_bytes: Counters,
    filter_hits: Counters,
    ntp_requests: Counters,
}

impl Families {
    fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("packets", "Packets of a DUT NIC on the eBPF datapath, by direction (from_dut, to_dut: the NIC's transmit counters, nat_out, nat_in)", self.packets.clone());
        r.register(
            "bytes",
            "Bytes (whole frames) the eBPF datapath saw on a DUT NIC, by direction",
            self.bytes.clone(),
        );
        r.register(
            "dut_packets",
            "Packets of one DUT on the eBPF datapath, by direction (from_dut: every IPv4 packet from its address; to_dut: what the fast path delivered to it); one series per DUT address seen on the NIC, at most 65536 addresses in all",
            self.dut_packets.clone(),
        );
        r.register(
            "dut_bytes",
            "Bytes (whole frames) of one DUT on the eBPF datapath, by direction",
            self.dut_bytes.clone(),
        );
        r.register(
            "flows_active",
            "Flows of the DUT NIC's network in the NAT table now",
            self.flows_active.clone(),
        );
        r.register(
            "flow_budget",
            "Flows the DUT NIC's network may hold (nat_table_size)",
            self.flow_budget.clone(),
        );
        r.register(
            "flows_new",
            "Flows the fast path created",
            self.flows_new.clone(),
        );
        r.register(
            "flow_evictions",
            "Flows evicted to make room for new ones",
            self.flow_evictions.clone(),
        );
        r.register(
            "drops",
            "Packets the eBPF datapath dropped, by reason",
            self.drops.clone(),
        );
        r.register(
            "punts",
            "Packets left to the kernel's NAT, by reason",
            self.punts.clone(),
        );
        r.register(
            "network_datapath",
            "1 for the datapath that carries the network (ebpf, nft; none while its NIC is absent)",
            self.datapath.clone(),
        );
        r.register("dhcp_leases", "Bound DHCP leases", self.dhcp_leases.clone());
        r.register(
            "dhcp_pool_size",
            "Addresses of the dynamic DHCP range",
            self.dhcp_pool_size.clone(),
        );
        r.register(
            "dhcp_received",
            "DHCP client messages, by message type",
            self.dhcp_received.clone(),
        );
        r.register(
            "dhcp_replies",
            "DHCP replies sent, by type (offer, ack, nak)",
            self.dhcp_replies.clone(),
        );
        r.register(
            "dhcp_exhausted",
            "DISCOVERs left unanswered because the pool was full",
            self.dhcp_exhausted.clone(),
        );
        r.register(
            "dhcp_malformed",
            "DHCP packets that did not parse",
            self.dhcp_malformed.clone(),
        );
        r.register(
            "dns_queries",
            "DNS queries received",
            self.dns_queries.clone(),
        );
        r.register(
            "dns_queries_by_type",
            "DNS queries by question type (a, aaaa, ptr, srv, txt, mx, cname, https, other)",
            self.dns_queries_by_type.clone(),
        );
        r.register(
            "dns_answers",
            "DNS queries answered, by source (local, cache, forwarded)",
            self.dns_answers.clone(),
        );
        r.register(
            "dns_errors",
            "DNS error answers, by rcode (servfail: upstreams failing)",
            self.dns_errors.clone(),
        );
        r.register(
            "dns_upstream_seconds",
            "How long the upstream servers took to answer a forwarded query (unanswered ones count in dns_errors as servfail)",
            self.dns_upstream_seconds.clone(),
        );
        r.register(
            "tftp_transfers",
            "TFTP requests by outcome (ok, failed, refused)",
            self.tftp_transfers.clone(),
        );
        r.register(
            "tftp_bytes",
            "File bytes of the finished TFTP transfers",
            self.tftp_bytes.clone(),
        );
        r.register(
            "filter_hits",
            "Flows a filter rule decided, by direction and rule (its position in the file, or `policy`)",
            self.filter_hits.clone(),
        );
        r.register(
            "ntp_requests",
            "NTP requests by outcome (served; kod: RATE kiss-o'-death sent; ignored: other modes or versions, malformed, silenced over the rate)",
            self.ntp_requests.clone(),
        );
    }

    fn interface(&self, i: &InterfaceCounters) {
        let network = i.network.clone().unwrap_or_default();
        let interface = i
            .interface
            .clone()
            .unwrap_or_else(|| format!("#{}", i.ifindex));
        let base: Labels = vec![("network", network), ("interface", interface)];
        let with = |key: &'static str, value: &str| {
            let mut labels = base.clone();
            labels.push((key, value.to_owned()));
            labels
        };
        let traffic: [(&str, Traffic); 4] = [
            ("from_dut", i.from_dut),
            ("to_dut", i.to_dut),
            ("nat_out", i.nat_out),
            ("nat_in", i.nat_in),
        ];
        for (direction, t) in traffic {
            let labels = with("direction", direction);
            self.packets.get_or_create(&labels).inc_by(t.packets);
            self.bytes.get_or_create(&labels).inc_by(t.bytes);
        }
        for dut in &i.duts {
            let mut labels = base.clone();
            labels.extend([
                ("address", dut.address.to_string()),
                ("mac", dut.mac.clone().unwrap_or_default()),
                ("hostname", dut.hostname.clone().unwrap_or_default()),
            ]);
            for (direction, t) in [("from_dut", dut.from_dut), ("to_dut", dut.to_dut)] {
                let mut labels = labels.clone();
                labels.push(("direction", direction.to_owned()));
                self.dut_packets.get_or_create(&labels).inc_by(t.packets);
                self.dut_bytes.get_or_create(&labels).inc_by(t.bytes);
            }
        }
        self.flows_active
            .get_or_create(&base)
            .set(gauge_value(i.active_flows));
        self.flow_budget
            .get_or_create(&base)
            .set(i64::from(i.flow_budget));
        self.flows_new.get_or_create(&base).inc_by(i.new_flows);
        self.flow_evictions.get_or_create(&base).inc_by(i.evictions);
        for (reason, n) in &i.drops {
            self.drops.get_or_create(&with("reason", reason)).inc_by(*n);
        }
        for (reason, n) in &i.punts {
            self.punts.get_or_create(&with("reason", reason)).inc_by(*n);
        }
    }

    fn network(&self, n: &NetworkCounters) {
        let base: Labels = vec![("network", n.network.clone())];
        let with = |key: &'static str, value: &str| {
            let mut labels = base.clone();
            labels.push((key, value.to_owned()));
            labels
        };
        self.datapath
            .get_or_create(&with("datapath", &n.datapath))
            .set(1);
        if let Some(dhcp) = &n.dhcp {
            self.dhcp_leases
                .get_or_create(&base)
                .set(gauge_value(dhcp.leases));
            self.dhcp_pool_size
                .get_or_create(&base)
                .set(gauge_value(dhcp.pool_size));
            for (kind, count) in &dhcp.received {
                self.dhcp_received
                    .get_or_create(&with("type", kind))
                    .inc_by(*count);
            }
            for (kind, count) in [
                ("offer", dhcp.offers),
                ("ack", dhcp.acks),
                ("nak", dhcp.naks),
            ] {
                self.dhcp_replies
                    .get_or_create(&with("type", kind))
                    .inc_by(count);
            }
            self.dhcp_exhausted
                .get_or_create(&base)
                .inc_by(dhcp.exhausted);
            self.dhcp_malformed
                .get_or_create(&base)
                .inc_by(dhcp.malformed);
        }
        if let Some(dns) = &n.dns {
            self.dns_queries.get_or_create(&base).inc_by(dns.queries);
            for (kind, count) in &dns.by_type {
                self.dns_queries_by_type
                    .get_or_create(&with("type", kind))
                    .inc_by(*count);
            }
            for (source, count) in [
                ("local", dns.local_answers),
                ("cache", dns.cache_hits),
                ("forwarded", dns.forwarded),
            ] {
                self.dns_answers
                    .get_or_create(&with("source", source))
                    .inc_by(count);
            }
            for (rcode, count) in [
                ("servfail", dns.servfail),
                ("formerr", dns.formerr),
                ("notimp", dns.notimp),
                ("refused", dns.refused),
            ] {
                self.dns_errors
                    .get_or_create(&with("rcode", rcode))
                    .inc_by(count);
            }
            self.dns_upstream_seconds
                .get_or_create(&base)
                .set(dns.upstream_latency);
        }
        if let Some(tftp) = &n.tftp {
            for (outcome, count) in [
                ("ok", tftp.transfers_ok),
                ("failed", tftp.transfers_failed),
                ("refused", tftp.requests_refused),
            ] {
                self.tftp_transfers
                    .get_or_create(&with("outcome", outcome))
                    .inc_by(count);
            }
            self.tftp_bytes.get_or_create(&base).inc_by(tftp.bytes_sent);
        }
        if let Some(filter) = &n.filter {
            for (direction, d) in [("egress", &filter.egress), ("ingress", &filter.ingress)] {
                let Some(d) = d else { continue };
                let rules = d
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (i.to_string(), r.hits));
                for (rule, hits) in rules.chain([("policy".to_owned(), d.policy_hits)]) {
                    let mut labels = with("direction", direction);
                    labels.push(("rule", rule));
                    self.filter_hits.get_or_create(&labels).inc_by(hits);
                }
            }
        }
        if let Some(ntp) = &n.ntp {
            for (outcome, count) in [
                ("served", ntp.requests_served),
                ("kod", ntp.kod_sent),
                ("ignored", ntp.ignored),
            ] {
                self.ntp_requests
                    .get_or_create(&with("outcome", outcome))
                    .inc_by(count);
            }
        }
    }
}

/// The OpenMetrics text of one snapshot (the parts of a `stats` reply).
#[must_use]
pub fn render(
    interfaces: &[InterfaceCounters],
    networks: &[NetworkCounters],
    uptime_seconds: u64,
) -> String {
    let mut registry = Registry::with_prefix("dutnet");
    registry.register(
        "build",
        "The dutnet build that serves these metrics",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    let uptime = Gauge::<i64>::default();
    uptime.set(gauge_value(uptime_seconds));
    registry.register(
        "uptime_seconds",
        "Seconds since dutnet load started",
        uptime,
    );
    let families = Families::default();
    families.register(&mut registry);
    for i in interfaces {
        families.interface(i);
    }
    for n in networks {
        families.network(n);
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    use dutnet_common::stats::{DirCounters, IfaceCounters, drop};

    use super::*;
    use crate::{
        control::counters::DhcpStats,
        datapath::InterfaceStats,
        dhcp::{DhcpCounters, message_type},
    };

    #[test]
    fn a_snapshot_becomes_labelled_families() {
        let mut counters = IfaceCounters {
            ingress: DirCounters {
                packets: 12,
                bytes: 1200,
            },
            ..IfaceCounters::default()
        };
        counters.drops[drop::TABLE_FULL] = 3;
        let stats = InterfaceStats {
            ifindex: 4,
            name: Some("dn-dut1".into()),
            counters,
            active_flows: 2,
            flow_budget: 64,
            evictions: 0,
            filter: None,
            duts: Vec::new(),
        };
        let mut dhcp = DhcpCounters::default();
        dhcp.received[message_type::REQUEST] = 5;
        dhcp.naks = 1;
        let network = NetworkCounters {
            network: "lab".into(),
            interface: "dn-dut1".into(),
            datapath: "ebpf".into(),
            dhcp: Some(DhcpStats::new(&dhcp, 1, 101)),
            dns: None,
            tftp: Some(crate::tftp::TftpCounters {
                transfers_ok: 2,
                bytes_sent: 4096,
                ..Default::default()
            }),
            filter: Some(crate::control::counters::FilterCounters {
                egress: Some(crate::control::counters::DirectionCounters {
                    rules: vec![crate::control::counters::RuleCounter {
                        rule: "accept 10.0.0.1".into(),
                        hits: 3,
                    }],
                    policy: "drop".into(),
                    policy_hits: 5,
                }),
                ingress: None,
            }),
            ntp: Some(crate::ntp::NtpCounters {
                requests_served: 9,
                kod_sent: 1,
                ignored: 0,
            }),
        };
        let mut interface = InterfaceCounters::new(&stats, Some("lab".into()));
        interface.duts.push(crate::control::counters::DutCounters {
            address: [192, 168, 100, 10].into(),
            mac: Some("02:00:00:00:00:01".into()),
            hostname: Some("board1".into()),
            from_dut: Traffic {
                packets: 9,
                bytes: 900,
            },
            to_dut: Traffic::default(),
        });
        let text = render(&[interface], &[network], 7);
        for line in [
            r#"dutnet_packets_total{network="lab",interface="dn-dut1",direction="from_dut"} 12"#,
            r#"dutnet_drops_total{network="lab",interface="dn-dut1",reason="table_full"} 3"#,
            r#"dutnet_flow_budget{network="lab",interface="dn-dut1"} 64"#,
            r#"dutnet_dhcp_received_total{network="lab",type="request"} 5"#,
            r#"dutnet_tftp_transfers_total{network="lab",outcome="ok"} 2"#,
            r#"dutnet_tftp_bytes_total{network="lab"} 4096"#,
            r#"dutnet_filter_hits_total{network="lab",direction="egress",rule="0"} 3"#,
            r#"dutnet_filter_hits_total{network="lab",direction="egress",rule="policy"} 5"#,
            r#"dutnet_ntp_requests_total{network="lab",outcome="kod"} 1"#,
            r#"dutnet_dhcp_replies_total{network="lab",type="nak"} 1"#,
            r#"dutnet_dhcp_pool_size{network="lab"} 101"#,
            r#"dutnet_network_datapath{network="lab",datapath="ebpf"} 1"#,
            "dutnet_uptime_seconds 7",
            r#"dutnet_dut_packets_total{network="lab",interface="dn-dut1",address="192.168.100.10",mac="02:00:00:00:00:01",hostname="board1",direction="from_dut"} 9"#,
            r#"dutnet_dut_bytes_total{network="lab",interface="dn-dut1",address="192.168.100.10",mac="02:00:00:00:00:01",hostname="board1",direction="to_dut"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.contains("dutnet_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
