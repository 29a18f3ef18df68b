//! Living with other firewalls: scoped accept rules in the forward chains of
//! other tables whose policy is drop (Docker), journaled before insertion.
//!
//! Done once at start, on both datapaths: on nft every DUT packet crosses
//! the forward hook; on eBPF only the punted ones do, but they need the same
//! rules. A chain created later (Docker started after dutnet), or flushed
//! and recreated (Docker restarted), is not revisited.
use tracing::info;

use crate::{
    datapath::nft::{
        FallbackNetwork,
        docker::{self, DockerError},
    },
    host::journal::{Journal, JournalError, UndoStep},
};

#[derive(Debug, thiserror::Error)]
pub enum CoexistError {
    #[error("opening drop-policy forward chains for DUT traffic: {0}")]
    Nft(#[from] DockerError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Inserts, in every drop-policy forward chain of another table, the accept
/// rules each forwarding network needs. Returns how many chains were found.
pub fn open_drop_policy_chains(
    networks: &[FallbackNetwork],
    journal: &mut Journal,
) -> Result<usize, CoexistError> {
    let chains = docker::find_drop_policy_chains()?;
    for chain in &chains {
        for n in networks {
            let rules = docker::accept_rules(n);
            if rules.is_empty() {
                continue;
            }
            let comment = docker::rule_comment(&n.name);
            journal.record(
                &n.name,
                UndoStep::NftRules {
                    family: chain.family.clone(),
                    table: chain.table.clone(),
                    chain: chain.chain.clone(),
                    comment: comment.clone(),
                },
            )?;
            // Rules a killed dutnet left (same comment) go first, so the
            // chain holds one set.
            docker::delete_rules(chain, &comment)?;
            docker::insert_rules(chain, &comment, &rules)?;
            info!(network = %n.name, %chain, rules = rules.len(), "accept rules inserted in a drop-policy forward chain");
        }
    }
    Ok(chains.len())
}
