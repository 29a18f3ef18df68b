//! dutnet: an isolated network behind each DUT NIC of a lab exporter.
//!
//! Packet path: `dutnet-common` (the map ABI) -> `dutnet-ebpf` (TC programs) ->
//! [`datapath::ebpf`] (loading, attaching, pinning). Control path: the daemon,
//! its servers and the host settings it changes, in the other modules.
pub mod capture;
pub mod config;
pub mod connections;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod dhcp;
pub mod dns;
pub mod host;
pub mod log_limit;
pub mod metrics;
pub mod netlink;
pub mod ntp;
pub mod sock;
pub mod state;
pub mod tftp;
