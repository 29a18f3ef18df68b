//! nftables: the kernel-side rules that keep what the eBPF fast path leaves
//! to the kernel (fragments, IP options, expiring TTLs, oversize packets,
//! other protocols) translated and isolated like the rest.
//!
//! dutnet owns one table, `ip dutnet`, replaced whole in one `nft -f`
//! transaction and deleted on exit. On the nft datapath (`datapath: nft`, or
//! `auto` when eBPF cannot load) no eBPF program is attached and this same
//! table carries all of a network's traffic. The only change to other
//! tables: scoped accept rules at the top of drop-policy forward chains
//! (Docker's `FORWARD`), see [`docker`].
pub mod docker;
pub mod filter_hits;
mod ruleset;
mod run;
mod table;

pub use self::{
    ruleset::{FallbackNetwork, TABLE, filter_comment, rules_of, ruleset},
    run::{NftError, delete_table, list_table, replace_table, table_exists},
    table::NftTable,
};
