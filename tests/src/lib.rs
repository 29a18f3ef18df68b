//! The harness of dutnet's privileged integration tests.
//!
//! Every test builds its own lab from network namespaces and veth pairs with a
//! unique name prefix ([`Topology`]), runs real programs in it ([`Netns`]),
//! and checks results where a user would see them. Everything is removed when
//! the topology drops, also when the test panics; a topology whose owner died
//! is removed by the next one with the same prefix.
#![expect(
    clippy::unwrap_used,
    reason = "the harness runs only inside tests, where a panic is the failure report"
)]
pub mod bpf_test_run;
pub mod cli;
pub mod clients;
pub mod cmd;
pub mod far_end;
pub mod frames;
pub mod generator;
pub mod lab;
pub mod nat;
pub mod netns;
pub mod prereq;
pub mod topology;
pub mod upstream_dns;

pub use cmd::Output;
pub use netns::Netns;
pub use topology::Topology;
