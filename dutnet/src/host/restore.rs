//! Putting the host back: replaying undo journal entries, newest first (each
//! step's undo is beside its change, in `host::change`).
use tracing::warn;

use super::{
    error::HostError,
    journal::{Entry, UndoStep},
};
use crate::netlink::Netlink;

/// Undoes `entries` newest first. Best effort: a step that fails is logged and
/// returned, the others still run (an interface that is gone has nothing to
/// restore).
pub async fn undo(entries: &[Entry], netlink: &Netlink) -> Vec<HostError> {
    let mut problems = Vec::new();
    for entry in entries.iter().rev() {
        if let Err(problem) = undo_step(&entry.step, netlink).await {
            let problem = problem.for_network(&entry.network);
            warn!(network = %entry.network, step = ?entry.step, %problem, "undo step failed");
            problems.push(problem);
        }
    }
    problems
}

/// Undoes one step (also used at run time, e.g. to take a public alias away).
pub async fn undo_step(step: &UndoStep, netlink: &Netlink) -> Result<(), HostError> {
    step.undo(netlink).await
}
