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
    nft_stdin(&["-f", "-"], script).map(drop)
}

/// Runs `nft -j -f -` with the JSON `script` on stdin.
pub(super) fn nft_json(script: &str) -> Result<(), NftError> {
    nft_stdin(&["-j", "-f", "-"], script).map(drop)
}

/// Runs `nft args...`; returns its stdout.
pub(super) fn nft_args(args: &[&str]) -> Result<String, NftError> {
    nft_stdin(args, "")
}

/// True when dutnet's table exists (a daemon is running, on any datapath).
#[must_use]
pub fn table_exists() -> bool {
    let (family, name) = TABLE.split_once(' ').unwrap_or(("ip", "dutnet"));
    nft_args(&["list", "table", family, name]).is_ok()
}

/// dutnet's table as `nft list table` prints it (what `dutnet nat-rules`
/// shows).
pub fn list_table() -> Result<String, NftError> {
    let (family, name) = TABLE.split_once(' ').unwrap_or(("ip", "dutnet"));
    nft_args(&["list", "table", family, name])
}

/// Runs `nft args...` with `script` on stdin; returns its stdout.
fn nft_stdin(args: &[&str], script: &str) -> Result<String, NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
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
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
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

/// Deletes `table` (`family name`, e.g. [`TABLE`], as the undo journal
/// recorded it) if it exists.
pub fn delete_table(table: &str) -> Result<(), NftError> {
    nft(&format!("add table {table}\ndelete table {table}\n"))
}
