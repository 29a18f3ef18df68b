//! Running the dutnet binary under test.
use std::path::PathBuf;

use crate::{Netns, Output, Topology, cmd, netns::Process};

/// The dutnet binary: `$DUTNET_BIN` (set by `cargo xtask test`), else the
/// workspace's debug build.
#[must_use]
pub fn binary() -> PathBuf {
    let path = std::env::var_os("DUTNET_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/dutnet"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "dutnet binary not found at {}: run the tests through `cargo xtask test` (it builds it)",
        path.display()
    );
    path
}

/// The environment that points dutnet at the topology's own directories.
#[must_use]
pub fn env(topology: &Topology) -> Vec<(&'static str, String)> {
    vec![
        ("DUTNET_BPFFS", topology.bpffs().display().to_string()),
        ("DUTNET_LOG", "debug".to_owned()),
    ]
}

/// [`env`] plus state and run directories inside the topology, so dutnet's
/// leases, journal and PID lock stay private to the test and survive a
/// restart of dutnet in it.
#[must_use]
pub fn env_with_state(topology: &Topology) -> Vec<(&'static str, String)> {
    let mut env = env(topology);
    env.push((
        "DUTNET_STATE_DIR",
        topology.path("state").display().to_string(),
    ));
    env.push(("DUTNET_RUN_DIR", topology.path("run").display().to_string()));
    env
}

/// Runs `dutnet args...` to completion inside `ns`.
pub fn run(topology: &Topology, ns: &Netns, args: &[&str]) -> Output {
    let bin = binary();
    let mut command = ns.command(&bin.to_string_lossy(), args);
    command.envs(env(topology));
    cmd::run(command, crate::netns::COMMAND_LIMIT)
}

/// Starts a long-running `dutnet args...` inside `ns`, logging to `<log>.log`.
pub fn spawn(topology: &Topology, ns: &Netns, args: &[&str], log: &str) -> Process {
    let bin = binary();
    ns.spawn(
        &bin.to_string_lossy(),
        args,
        &env(topology),
        topology.path(&format!("{log}.log")),
    )
}
