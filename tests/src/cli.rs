//! Running the dutnet binary under test.
use std::{path::PathBuf, time::Duration};

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

/// The environment that points dutnet at the topology's own bpffs, state
/// and run directories, so its pins, leases, journal, PID lock and control
/// socket stay private to the test (and survive a restart of dutnet in it).
#[must_use]
pub fn env(topology: &Topology) -> Vec<(&'static str, String)> {
    vec![
        ("DUTNET_BPFFS", topology.bpffs().display().to_string()),
        ("DUTNET_LOG", "debug".to_owned()),
        (
            "DUTNET_STATE_DIR",
            topology.path("state").display().to_string(),
        ),
        ("DUTNET_RUN_DIR", topology.path("run").display().to_string()),
    ]
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

/// The control socket of a dutnet run with [`env`]`(topology)`.
#[must_use]
pub fn control_socket(topology: &Topology) -> PathBuf {
    topology.path("run").join("dutnet.sock")
}

/// True once `daemon` (`dutnet load` with [`env`]`(topology)`) has brought
/// its networks up ("network up" is logged per network, "dutnet is up"
/// after the last one) and its control socket exists.
#[must_use]
pub fn is_up(topology: &Topology, daemon: &Process) -> bool {
    let log = daemon.log();
    log.contains("network up") && log.contains("dutnet is up") && control_socket(topology).exists()
}

/// Waits until [`is_up`]; a daemon that is not up within 15 s fails the
/// test with its log.
#[track_caller]
pub fn wait_until_up(topology: &Topology, daemon: &Process) {
    let up = cmd::wait_for(Duration::from_secs(15), || {
        is_up(topology, daemon).then_some(())
    });
    assert!(up.is_some(), "dutnet did not come up:\n{}", daemon.log());
}
