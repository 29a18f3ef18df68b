//! Test fixtures shared by the DNS unit tests: names, queries, the lab zone
//! and the negative-answer SOA, built one way everywhere.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::zone::Zone;

/// The custom record of [`lab_zone`] and its address.
pub const CONTROLLER: &str = "controller.lab.local";
pub const CONTROLLER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The static DUT of [`lab_zone`] (domain `lab`) and its address.
pub const DUT1: &str = "dut1";
pub const DUT1_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 10);

/// A name from presentation format; panics on a bad one (test input).
pub fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// A question for `qname`/`qtype`.
pub fn question(qname: &str, qtype: RecordType) -> Query {
    Query::query(name(qname), qtype)
}

/// A standard query with id 0x1234 and RD set.
pub fn query_msg(qname: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.metadata.recursion_desired = true;
    m.add_query(question(qname, qtype));
    m
}

/// Domain `lab`, [`CONTROLLER`] as a custom record, [`DUT1`] as a static
/// DUT hostname.
pub fn lab_zone() -> Zone {
    let mut zone = Zone::new(Some("lab")).unwrap();
    zone.upsert_entry(CONTROLLER, CONTROLLER_IP).unwrap();
    zone.set_static_hosts(vec![(DUT1.into(), DUT1_IP)]);
    zone
}

/// The `example.` SOA that a negative answer carries in its authority
/// section (RFC 2308 §3: its TTL and MINIMUM bound the negative TTL).
pub fn example_soa(ttl: u32, minimum: u32) -> Record {
    let soa = SOA::new(
        name("ns.example."),
        name("hostmaster.example."),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    Record::from_rdata(name("example."), ttl, RData::SOA(soa))
}
