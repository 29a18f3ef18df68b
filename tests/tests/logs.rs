//! The daemon's log as a service manager reads it: one JSON object per
//! line when asked, syslog priorities for the journal, and a warning that
//! every DUT query can trigger written once per period, not per query.
use std::{os::unix::fs::MetadataExt as _, process::Stdio, time::Duration};

use dutnet_tests::{
    cli, cmd,
    lab::{
        Dut, Lab,
        config::{GATEWAY, Network},
    },
    prereq,
};

#[test]
fn json_logs_are_one_object_per_line() {
    let mut lab = Lab::builder().upstream().dut(Dut::on(1)).build();
    lab.set_env("DUTNET_LOG_FORMAT", "json");
    lab.load(&Network::services().single());
    let log = lab.log();
    let mut up = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{log}"));
        assert!(value["level"].is_string(), "{line}");
        up |= value["fields"]["message"] == "network up";
    }
    assert!(up, "no `network up` record:\n{log}");
}

#[test]
fn under_the_journal_each_line_carries_its_priority() {
    let lab = Lab::builder().upstream().dut(Dut::on(1)).build();
    let config = lab.write_config(&Network::services().single());
    let path = lab.topology.path("journal-stream.log");
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let mut command = lab.exporter.command(
        &cli::binary().to_string_lossy(),
        &["load", &config.display().to_string()],
    );
    command
        .envs(cli::env(&lab.topology))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    let mut child = command.spawn().unwrap();
    let up = cmd::wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|l| l.contains("dutnet is up"))
    });
    // SAFETY: SIGTERM to the PID of the daemon this test started.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let code = cmd::wait_with_limit(&mut child, Duration::from_secs(15));
    let log = up.unwrap_or_else(|| panic!("not up: {:?}", std::fs::read_to_string(&path)));
    assert_eq!(code, Some(0));
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "a line without its priority: {line}\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.starts_with("<6>") && l.contains("network up")),
        "{log}"
    );
    // The journal stamps lines itself.
    assert!(
        !log.contains("Z  INFO"),
        "timestamps in journal lines:\n{log}"
    );
}

#[test]
fn a_dead_dns_upstream_is_warned_about_once_per_period_not_per_query() {
    prereq::require("dig", "dnsutils");
    let mut lab = Lab::builder()
        .upstream()
        .dut(Dut::on(1).ip("192.168.100.50".parse().unwrap()).routed())
        .build();
    // The LAN host runs no DNS server: every forwarded query fails.
    lab.load(&Network::services().set("dns_timeout: 1s").single());
    let dut = lab.dut(1).clone();
    for n in 0..12 {
        let out = dut.exec(
            "dig",
            &[
                "+time=4",
                "+tries=1",
                &format!("@{GATEWAY}"),
                &format!("name{n}.example.com"),
            ],
        );
        assert!(out.stdout.contains("SERVFAIL"), "{out:#?}");
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = lab.log();
    let warnings = log.matches("forwarding failed").count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} warnings for 12 failed queries:\n{log}"
    );
}
