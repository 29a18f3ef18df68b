//! The eBPF datapath loaded in a namespace of its own, with two DUT NICs
//! that share a subnet and an upstream NIC, for `BPF_PROG_TEST_RUN` over
//! crafted frames: shared by nat_frames.rs and frame_fuzz.rs
//! (`#[path]`-included, not a test target of its own).
//!
//! One namespace holds a DUT NIC pair (`dut0`), a second DUT NIC with the
//! same subnet (`dut1`) and an upstream NIC (`up0`, 10.99.0.2) whose peer sits
//! in a "lan" namespace (10.99.0.1) that routes 10.98.0.0/24.
#![allow(
    dead_code,
    reason = "each including test uses its own part of the bench"
)]
use std::net::Ipv4Addr;

use dutnet::{
    datapath::{Datapath as _, DutNetwork, FlowLimits, NatPlan, PublicAddress, ebpf::EbpfDatapath},
    state::paths::Paths,
};
use dutnet_common::programs::{DUT_INGRESS, UPSTREAM_INGRESS};
use dutnet_tests::{
    Topology,
    bpf_test_run::{self, TestRun},
    frames::{self, Parsed},
};

pub const TC_ACT_UNSPEC: i32 = -1;
pub const TC_ACT_SHOT: i32 = 2;
pub const TC_ACT_REDIRECT: i32 = 7;

pub const DUT: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 10);
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);
pub const EXTERNAL: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const FAR: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 5);
/// A DUT on dut0 with a public address of its own (1:1), beside the
/// masqueraded ones.
pub const MAPPED: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 20);
pub const PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 50);
/// 1:1 DUTs whose traffic a policy rule of the bench sends out of `dut1`,
/// standing in for a VLAN sub-interface (the CI kernel has no 802.1Q):
/// `ROUTED`'s mapping names that way out (and VLAN 905), `UNROUTED`'s none.
pub const ROUTED: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 22);
pub const ROUTED_PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 61);
pub const UNROUTED: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 23);
pub const UNROUTED_PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 62);
pub const VLAN: u16 = 905;

pub const DUT0_MAC: [u8; 6] = [0x02, 0xd0, 0, 0, 0, 0x01];
pub const DUT1_MAC: [u8; 6] = [0x02, 0xd1, 0, 0, 0, 0x01];
pub const UP0_MAC: [u8; 6] = [0x02, 0xe0, 0, 0, 0, 0x01];
pub const BOARD_A: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x0a];
pub const BOARD_B: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x0a];
pub const ROUTER_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x01];

pub const NAT_PORTS: std::ops::RangeInclusive<u16> = 61000..=64511;

/// The datapath loaded in the test namespace, with the ifindexes of its NICs.
pub struct Bench {
    pub datapath: EbpfDatapath,
    pub dut0: u32,
    pub dut1: u32,
    pub up0: u32,
}

impl Bench {
    pub fn outbound(&self, nic: u32, frame: &[u8]) -> TestRun {
        let fd = self.datapath.program_fd(DUT_INGRESS).unwrap();
        bpf_test_run::run_on(fd, frame, nic).unwrap()
    }

    pub fn inbound(&self, frame: &[u8]) -> TestRun {
        let fd = self.datapath.program_fd(UPSTREAM_INGRESS).unwrap();
        bpf_test_run::run_on(fd, frame, self.up0).unwrap()
    }
}

/// A masquerade network on `iface`; 1:1 when `public` maps any DUT.
pub fn network(iface: &str, public: Vec<PublicAddress>) -> DutNetwork {
    let upstream = "up0".to_owned();
    let nat = if public.is_empty() {
        NatPlan::Masquerade {
            upstream,
            external: EXTERNAL,
            ports: NAT_PORTS,
        }
    } else {
        NatPlan::OneToOne {
            upstream,
            external: EXTERNAL,
            ports: NAT_PORTS,
            public,
        }
    };
    DutNetwork {
        iface: iface.to_owned(),
        gateway: GATEWAY,
        subnet: "192.168.100.0/24".parse().unwrap(),
        nat,
        reply_mark: 0,
        flows: FlowLimits::new(1024),
        filter: None,
        local_ntp: false,
    }
}

/// Builds the namespaces, loads the datapath in "run" and calls `test` there.
pub fn with_bench(test: impl FnOnce(&Bench) + Send + 'static) {
    let mut topology = Topology::new();
    let run = topology.netns("run");
    let lan = topology.netns("lan");
    let peer = topology.netns("peer");
    topology.veth((&run, "dut0"), (&peer, "board0"));
    topology.veth((&run, "dut1"), (&peer, "board1"));
    topology.veth((&run, "up0"), (&lan, "eth0"));
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    run.ip(&format!("link set dut0 address {}", mac(DUT0_MAC)));
    run.ip(&format!("link set dut1 address {}", mac(DUT1_MAC)));
    run.ip(&format!("link set up0 address {}", mac(UP0_MAC)));
    run.ip("addr add 192.168.100.1/24 dev dut0");
    run.ip("addr add 192.168.100.1/24 dev dut1");
    run.ip("addr add 10.99.0.2/24 dev up0");
    for link in ["dut0", "dut1", "up0"] {
        run.ip(&format!("link set {link} up"));
    }
    run.ip("route add 10.98.0.0/24 via 10.99.0.1");
    for dut in [ROUTED, UNROUTED] {
        run.ip(&format!("rule add from {dut} iif dut0 lookup 905"));
    }
    run.ip("route add default via 192.168.100.99 dev dut1 onlink table 905");
    run.sysctl("net.ipv4.conf.all.forwarding=1");
    lan.ip("addr add 10.99.0.1/24 dev eth0");
    lan.ip("link set eth0 up");
    let paths = Paths {
        bpffs: topology.bpffs(),
        ..Paths::from_env()
    };
    run.enter(move || {
        let mut datapath = EbpfDatapath::load(&paths, &[FlowLimits::new(1024); 2]).unwrap();
        let index = |name: &str| dutnet::datapath::interface_index(name).unwrap();
        let routed = PublicAddress {
            vlan_id: Some(VLAN),
            out_ifindex: index("dut1"),
            ..PublicAddress::new(ROUTED, ROUTED_PUBLIC)
        };
        let dut0 = network(
            "dut0",
            vec![
                PublicAddress::new(MAPPED, PUBLIC),
                routed,
                PublicAddress::new(UNROUTED, UNROUTED_PUBLIC),
            ],
        );
        datapath.attach(&dut0).unwrap();
        datapath.attach(&network("dut1", Vec::new())).unwrap();
        let mut bench = Bench {
            dut0: index("dut0"),
            dut1: index("dut1"),
            up0: index("up0"),
            datapath,
        };
        test(&bench);
        bench.datapath.shutdown().unwrap();
    });
}

/// A frame from board `board` to its gateway's MAC on `nic_mac`.
pub fn from_board(mut frame: Vec<u8>, board: [u8; 6], nic_mac: [u8; 6]) -> Vec<u8> {
    frames::set_macs(&mut frame, nic_mac, board);
    frame
}

/// A frame from the router to the upstream NIC.
pub fn from_router(mut frame: Vec<u8>) -> Vec<u8> {
    frames::set_macs(&mut frame, UP0_MAC, ROUTER_MAC);
    frame
}

pub fn parsed(run: &TestRun) -> Parsed {
    frames::parse(frames::ip_packet(&run.frame))
}

pub fn assert_checksums(p: &Parsed) {
    assert!(p.ip_checksum_ok, "IPv4 header checksum: {p:?}");
    assert!(p.l4_checksum_ok, "L4 checksum: {p:?}");
}
