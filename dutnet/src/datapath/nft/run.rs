//! Running `nft`.
use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use super::TABLE;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(
        "cannot run `nft`: {0}; install nftables (`apt-get install nftables`): dutnet needs it for the packets its fast path leaves to the kernel"
    )]
    Spawn(std::io::Error),
    #[error("nft rejected dutnet's rules: {stderr}")]
    Rejected { stderr: String },
}

/// Runs `nft -f -` with `script` on stdin.
fn nft(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let output = child.wait_with_output().map_err(NftError::Spawn)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NftError::Rejected {
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Replaces dutnet's table with `ruleset` in one transaction: the old rules
/// stay until the new ones are in.
pub fn replace_table(ruleset: &str) -> Result<(), NftError> {
    // `add` first so `delete` cannot fail on a missing table.
    nft(&format!(
        "add table {TABLE}\ndelete table {TABLE}\n{ruleset}"
    ))
}

/// Deletes dutnet's table if it exists.
pub fn delete_table() -> Result<(), NftError> {
    nft(&format!("add table {TABLE}\ndelete table {TABLE}\n"))
}
