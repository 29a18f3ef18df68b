//! Living with other firewalls: scoped accept rules in the forward chains of
//! other tables whose policy is drop (Docker), journaled before insertion.
//!
//! Done at start, on both datapaths: on nft every DUT packet crosses the
//! forward hook; on eBPF only the punted ones do, but they need the same
//! rules. Docker may start, or restart and recreate its chain, after dutnet:
//! the daemon's tick calls [`Coexistence::revisit`], which costs one `nft -j
//! list chains` and opens a chain it has not opened yet (a new name, or a
//! new handle: deleted and created again). A chain flushed in place
//! (`iptables -F FORWARD`) keeps its handle; every [`VERIFY_EVERY`]th visit
//! also lists the opened chains' rules to catch that.
use tracing::info;

use crate::{
    datapath::nft::{
        FallbackNetwork,
        docker::{self, DockerError, ForeignChain},
    },
    host::{HostError, LocalChange, journal::Journal},
};

/// One visit in this many also checks the opened chains still hold the
/// rules (one `nft -j -a list chain` per opened chain).
pub const VERIFY_EVERY: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum CoexistError {
    #[error("opening drop-policy forward chains for DUT traffic: {0}")]
    Nft(#[from] DockerError),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// The drop-policy forward chains dutnet has opened, and the networks it
/// opens them for.
#[derive(Debug, Default)]
pub struct Coexistence {
    networks: Vec<FallbackNetwork>,
    opened: Vec<ForeignChain>,
    visits: u32,
}

impl Coexistence {
    /// Inserts, in every drop-policy forward chain of another table, the
    /// accept rules each forwarding network of `networks` needs (again, at
    /// a runtime change: each chain then holds the new set). Returns how
    /// many chains were found.
    pub fn open_all(
        &mut self,
        networks: Vec<FallbackNetwork>,
        journal: &mut Journal,
    ) -> Result<usize, CoexistError> {
        self.networks = networks;
        self.opened.clear();
        let chains = docker::find_drop_policy_chains()?;
        for chain in chains {
            open_chain(&chain, &self.networks, journal)?;
            self.opened.push(chain);
        }
        Ok(self.opened.len())
    }

    /// Opens the drop-policy forward chains that appeared (or were
    /// recreated, or flushed) since the last visit; returns them.
    pub fn revisit(&mut self, journal: &mut Journal) -> Result<Vec<ForeignChain>, CoexistError> {
        if self
            .networks
            .iter()
            .all(|n| docker::accept_rules(n).is_empty())
        {
            return Ok(Vec::new());
        }
        self.visits = self.visits.wrapping_add(1);
        let found = docker::find_drop_policy_chains()?;
        let mut todo: Vec<ForeignChain> = unopened(&found, &self.opened);
        if self.visits.is_multiple_of(VERIFY_EVERY) {
            for chain in &found {
                if !todo.contains(chain) && !self.holds_rules(chain)? {
                    todo.push(chain.clone());
                }
            }
        }
        for chain in &todo {
            open_chain(chain, &self.networks, journal)?;
            info!(%chain, handle = chain.handle, "a drop-policy forward chain appeared after dutnet started; opened it for DUT traffic");
        }
        // Chains that are gone need nothing: their rules went with them.
        self.opened = found;
        Ok(todo)
    }

    /// True when `chain` still holds the rules of every forwarding network.
    fn holds_rules(&self, chain: &ForeignChain) -> Result<bool, CoexistError> {
        for n in &self.networks {
            if docker::accept_rules(n).is_empty() {
                continue;
            }
            if docker::rules_with_comment(chain, &docker::rule_comment(&n.name))?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The chains of `found` dutnet has not opened: new ones, and recreated
/// ones (same name, new handle).
fn unopened(found: &[ForeignChain], opened: &[ForeignChain]) -> Vec<ForeignChain> {
    found
        .iter()
        .filter(|c| !opened.contains(c))
        .cloned()
        .collect()
}

/// Inserts in `chain` the accept rules of every forwarding network, each
/// set journaled first and replacing any set of the same network (see
/// `host::change`).
fn open_chain(
    chain: &ForeignChain,
    networks: &[FallbackNetwork],
    journal: &mut Journal,
) -> Result<(), CoexistError> {
    for n in networks {
        let rules = docker::accept_rules(n);
        if rules.is_empty() {
            continue;
        }
        let change = LocalChange::ForeignChainRules {
            chain: chain.clone(),
            comment: docker::rule_comment(&n.name),
            rules,
        };
        journal.apply_local(&n.name, &change)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(name: &str, handle: u64) -> ForeignChain {
        ForeignChain {
            family: "ip".to_owned(),
            table: "filter".to_owned(),
            chain: name.to_owned(),
            handle,
        }
    }

    #[test]
    fn a_new_chain_and_a_recreated_one_are_opened_and_a_known_one_is_not() {
        let opened = [chain("FORWARD", 1), chain("OTHER", 2)];
        let found = [chain("FORWARD", 1), chain("OTHER", 5), chain("LATE", 3)];
        assert_eq!(
            unopened(&found, &opened),
            [chain("OTHER", 5), chain("LATE", 3)]
        );
        assert!(unopened(&opened, &opened).is_empty());
        assert!(unopened(&[], &opened).is_empty());
    }
}
