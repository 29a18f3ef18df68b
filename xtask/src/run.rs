//! Running commands from xtask, loudly.
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Prints and runs `command`, failing on a non-zero exit.
pub fn checked(command: &mut Command) -> Result<()> {
    let description = describe(command);
    eprintln!("+ {description}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{description}`"))?;
    if !status.success() {
        bail!("`{description}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` quietly; true when it exits 0.
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `command` and returns its stdout (it must exit 0).
pub fn stdout(command: &mut Command) -> Result<String> {
    let description = describe(command);
    let out = command
        .output()
        .with_context(|| format!("cannot start `{description}`"))?;
    if !out.status.success() {
        bail!(
            "`{description}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn describe(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `cargo`, the one that runs xtask.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The workspace's root directory (where README.md is).
pub fn workspace_root() -> Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Ok(root.canonicalize()?)
}
