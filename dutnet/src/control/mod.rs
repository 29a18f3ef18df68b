//! The daemon's control socket: a local Unix socket that the CLI verbs
//! (`status`, `leases`, `add-address`, ...) talk to.
//!
//! - [`protocol`]: the requests and responses, one JSON line each, versioned;
//! - [`server`]: the listener in the daemon; it only moves requests to the
//!   daemon's loop and replies back, so the daemon stays the single owner of
//!   its state (the handlers are in `daemon::control`);
//! - [`counters`]: the datapath's counters as `stats` carries them;
//! - [`client`]: what the CLI uses: connect, send one request, read the reply
//!   (or, for `capture`, the reply line and the pcap stream after it).
//!
//! Access control is the socket's mode: 0600, owned by the user that runs
//! the daemon (root), so only root can change a network at run time (0660
//! with a socket group). A capture needs root too, unless the network has
//! `enable_tcpdump: true` (the peer's uid, `SO_PEERCRED`, is checked).
mod capture;
pub mod client;
pub mod counters;
pub mod protocol;
pub mod server;

pub use client::{ClientError, request};
pub use protocol::{Failure, FailureKind, Reply, Request, Response, VERSION};
