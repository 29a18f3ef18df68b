use std::{io, path::PathBuf};

/// What can go wrong in the eBPF datapath, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "cannot mount a bpffs at {path}: {source}; mount one (`mount -t bpf bpf {path}`) or set DUTNET_BPFFS to a bpffs mount point"
    )]
    Bpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create or remove dutnet's pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the upstream interface `{upstream}` has no IPv4 address to masquerade behind; give it one or set `upstream_interface`"
    )]
    NoMasqueradeAddress { upstream: String },
    #[error(
        "cannot read the possible CPUs (/sys/devices/system/cpu/possible), which sizes the per-CPU counters: {source}; mount sysfs at /sys"
    )]
    PossibleCpus {
        #[source]
        source: io::Error,
    },
    #[error(
        "loading dutnet's eBPF programs failed: {source}; dutnet needs root (CAP_BPF and CAP_NET_ADMIN) and a kernel with BTF (>= 5.10), or `datapath: nft`"
    )]
    Load {
        #[source]
        source: aya::EbpfError,
    },
    #[error("the eBPF object has no program {name}: the dutnet binary was built wrongly")]
    MissingProgram { name: &'static str },
    #[error("the eBPF object has no map {name}: the dutnet binary was built wrongly")]
    MissingMap { name: &'static str },
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("interface {iface} does not exist in this network namespace: {source}")]
    NoInterface {
        iface: String,
        #[source]
        source: io::Error,
    },
    #[error("attaching {program} to {iface} failed: {source}")]
    Attach {
        program: &'static str,
        iface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error(
        "public address {public} is already given to a DUT on {iface}; pick another `public_ip`"
    )]
    PublicAddressTaken {
        public: std::net::Ipv4Addr,
        iface: String,
    },
    #[error("NAT is disabled on {iface}: a public address needs `nat_mode: 1to1`")]
    NatDisabled { iface: String },
    #[error(
        "no room in the connection table for {iface}'s {flows} flows ({free} left): the table is sized at start-up for the networks loaded then and {spare} more of the default nat_table_size; restart dutnet with {iface}'s network in the file",
        spare = super::budgets::SPARE_NETWORKS
    )]
    NoFlowCapacity {
        iface: String,
        flows: u32,
        free: u32,
    },
    #[error("the eBPF datapath is not attached to {iface}")]
    NotAttached { iface: String },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "dutnet is not running here: no counters are pinned at {path}. Start it with `dutnet load FILE`, or set DUTNET_BPFFS to the bpffs the daemon uses"
    )]
    NotRunning { path: PathBuf },
    #[error("netlink {call} on interface index {ifindex} failed: {source}")]
    Netlink {
        call: &'static str,
        ifindex: u32,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    LogLevel(#[from] super::log::InvalidLevel),
    #[error(
        "eBPF logging ({env}) needs the eBPF datapath loaded on a tokio runtime: a bug in the caller",
        env = super::log::EBPF_LOG_ENV
    )]
    LogWithoutRuntime,
    #[error("cannot read the eBPF programs' log ring buffer: {source}")]
    LogRing {
        #[source]
        source: aya_log::Error,
    },
    #[error("cannot wait for the eBPF programs' log records: {source}")]
    LogPoll {
        #[source]
        source: io::Error,
    },
}
