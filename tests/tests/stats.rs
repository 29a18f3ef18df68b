//! `dutnet stats` asks the daemon: every namespace sees the daemon's
//! interface names, and once the daemon is gone there are no numbers, only
//! the documented exit code (5) — or, asked for explicitly, the pins.
use std::process::Command;

use dutnet_tests::{Output, Topology, cli, cmd, lab::Lab, netns::COMMAND_LIMIT};
use serde_json::Value;

/// `dutnet stats ARGS` run in the root namespace (not the daemon's).
fn stats_from_root(topology: &Topology, args: &[&str]) -> Output {
    let mut command = Command::new(cli::binary());
    command.arg("stats").args(args).envs(cli::env(topology));
    cmd::run(command, COMMAND_LIMIT)
}

/// The interface names, in ifindex order.
fn names(out: &Output) -> Vec<String> {
    assert!(out.success(), "{out:#?}");
    let stats: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stats --json is not JSON ({e}): {out:#?}"));
    stats["interfaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no interfaces: {out:#?}"))
        .iter()
        .map(|i| i["interface"].as_str().unwrap_or("(none)").to_owned())
        .collect()
}

#[test]
fn every_namespace_sees_the_daemons_names_and_nothing_once_it_is_gone() {
    let mut lab = Lab::builder().upstream().static_duts(2).build();
    lab.load_nat_on("ebpf", "");
    let expected = vec!["dn-dut1".to_owned(), "dn-dut2".to_owned()];

    let in_exporter = cli::run(&lab.topology, &lab.exporter, &["stats", "--json"]);
    assert_eq!(names(&in_exporter), expected, "{}", lab.log());
    let from_root = stats_from_root(&lab.topology, &["--json"]);
    assert_eq!(names(&from_root), expected, "{}", lab.log());
    // A namespace of its own, where those ifindexes are other interfaces
    // or none at all.
    let dut = cli::run(&lab.topology, &lab.duts[0], &["stats", "--json"]);
    assert_eq!(names(&dut), expected, "{}", lab.log());
    let table = stats_from_root(&lab.topology, &[]);
    assert!(
        table.success() && table.stdout.contains("dn-dut1") && table.stdout.contains("dn-dut2"),
        "{table:#?}"
    );

    lab.kill();
    for (out, place) in [
        (stats_from_root(&lab.topology, &["--json"]), "root"),
        (stats_from_root(&lab.topology, &[]), "root (table)"),
        (
            cli::run(&lab.topology, &lab.exporter, &["stats", "--json"]),
            "exporter",
        ),
    ] {
        assert_eq!(out.code, Some(5), "{place}: {out:#?}");
        assert!(out.stdout.is_empty(), "{place}: numbers printed: {out:#?}");
        assert!(out.stderr.contains("not running"), "{place}: {out:#?}");
    }

    // The pins a killed daemon left, when asked for by name: with their age.
    let offline = cli::run(&lab.topology, &lab.exporter, &["stats", "--offline"]);
    assert!(offline.success(), "{offline:#?}");
    assert!(
        offline.stdout.starts_with("offline:") && offline.stdout.contains("s ago"),
        "{offline:#?}"
    );
    let offline_json = cli::run(
        &lab.topology,
        &lab.exporter,
        &["stats", "--offline", "--json"],
    );
    let json: Value = serde_json::from_str(&offline_json.stdout).unwrap();
    assert!(json["offline"]["pinned_seconds_ago"].is_u64(), "{json:#}");

    let down = cli::run(&lab.topology, &lab.exporter, &["down"]);
    assert!(down.success(), "{down:#?}");
    let after_down = cli::run(&lab.topology, &lab.exporter, &["stats", "--offline"]);
    assert_eq!(after_down.code, Some(5), "{after_down:#?}");
}
