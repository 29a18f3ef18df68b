//! nftables: the kernel-side rules that keep what the eBPF fast path leaves
//! to the kernel (fragments, IP options, expiring TTLs, oversize packets,
//! other protocols) translated and isolated like the rest.
//!
//! dutnet owns one table, `ip dutnet`, replaced whole in one `nft -f`
//! transaction and deleted on exit. It never edits anybody else's table
//! (Docker's `FORWARD` chain included): the fast path does not cross
//! netfilter's forward hook, so it needs no exception there.
mod ruleset;
mod run;

pub use self::{
    ruleset::{FallbackNetwork, TABLE, ruleset},
    run::{NftError, delete_table, replace_table},
};
