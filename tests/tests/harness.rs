//! The harness itself: leftovers of a dead owner are removed, panics clean up.
use std::process::Command;

use dutnet_tests::{Topology, cmd};

fn netns_names() -> Vec<String> {
    let out = cmd::run(
        {
            let mut c = Command::new("ip");
            c.args(["netns", "list"]);
            c
        },
        std::time::Duration::from_secs(10),
    )
    .ok();
    out.stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn leftovers_of_a_dead_owner_are_removed_by_the_next_topology() {
    let prefix = format!("dnleak{}", std::process::id());
    let mut leaked = Topology::with_prefix(&prefix);
    let a = leaked.netns("a");
    let b = leaked.netns("b");
    leaked.veth((&a, "eth0"), (&b, "eth0"));
    let _ = leaked.bpffs();
    let dir = leaked.dir.clone();
    // The owner dies without cleaning up.
    std::mem::forget(leaked);
    assert!(
        netns_names().contains(&a.name),
        "setup: namespace should exist"
    );

    let fresh = Topology::with_prefix(&prefix);
    let names = netns_names();
    assert!(
        !names.contains(&a.name) && !names.contains(&b.name),
        "leftovers remain: {names:?}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&dir.join("bpffs").display().to_string()),
        "bpffs still mounted"
    );
    drop(fresh);
    assert!(!dir.exists(), "topology directory remains");
}

#[test]
fn a_panicking_test_still_removes_its_namespaces() {
    let handle = std::thread::spawn(|| {
        let mut topology = Topology::new();
        let ns = topology.netns("p");
        let name = ns.name.clone();
        std::panic::panic_any(name);
    });
    let name = *handle.join().unwrap_err().downcast::<String>().unwrap();
    assert!(
        !netns_names().contains(&name),
        "namespace {name} survived the panic"
    );
}
