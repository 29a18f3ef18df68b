//! The daemon's log as a service manager reads it: one JSON object per
//! line when asked, syslog priorities for the journal, a warning that
//! every DUT query can trigger written once per period, not per query, and
//! the eBPF programs' own records only when `DUTNET_EBPF_LOG` asks.
use std::{os::unix::fs::MetadataExt as _, process::Stdio, time::Duration};

use dutnet_tests::{
    cli, cmd,
    lab::{
        Dut, Lab,
        config::{GATEWAY, LAN_IP, Network, dut_nic},
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

/// How the text log names the target of a forwarded eBPF record.
const EBPF_TARGET: &str = "dutnet::ebpf:";

/// The ifindex of DUT NIC `n` in the exporter, as the programs see it.
fn dut_nic_ifindex(lab: &Lab, n: usize) -> u32 {
    let out = lab.exporter.ip(&format!("-o link show {}", dut_nic(n)));
    out.stdout
        .split(':')
        .next()
        .and_then(|index| index.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex in {out:#?}"))
}

/// A ping with TTL 1 from DUT 1 to the LAN host: the fast path punts it
/// (`ttl_expired`, reason 2), the kernel answers with time-exceeded.
fn ping_with_ttl_1(lab: &Lab) {
    let out = lab.dut(1).exec(
        "ping",
        &["-c", "1", "-t", "1", "-W", "1", &LAN_IP.to_string()],
    );
    assert!(
        out.stdout.contains("Time to live exceeded"),
        "the kernel did not answer the punted ping: {out:#?}"
    );
}

#[test]
fn with_dutnet_ebpf_log_a_punted_packet_shows_in_the_daemons_log() {
    prereq::require("ping", "iputils-ping");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.set_env("DUTNET_EBPF_LOG", "debug");
    lab.load_nat_on("ebpf", "");
    let ifindex = dut_nic_ifindex(&lab, 1);
    ping_with_ttl_1(&lab);
    let wanted = format!("punted to the kernel: ifindex={ifindex} reason=2");
    let record = cmd::wait_for(Duration::from_secs(5), || {
        lab.log()
            .lines()
            .find(|l| l.contains(EBPF_TARGET) && l.contains(&wanted))
            .map(str::to_owned)
    });
    let record = record.unwrap_or_else(|| panic!("no `{wanted}` record:\n{}", lab.log()));
    assert!(record.contains("DEBUG"), "{record}");
    assert!(
        lab.log().contains("ebpf_log=debug"),
        "the load does not say eBPF logging is on:\n{}",
        lab.log()
    );
}

#[test]
fn without_dutnet_ebpf_log_the_programs_log_nothing() {
    prereq::require("ping", "iputils-ping");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on("ebpf", "");
    ping_with_ttl_1(&lab);
    // A record would be forwarded within milliseconds (the reader wakes on
    // the ring buffer); the stats show the punt happened.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        lab.total("/punts/ttl_expired") >= 1,
        "the ping was not punted:\n{}",
        lab.report()
    );
    let log = lab.log();
    assert!(
        !log.contains(EBPF_TARGET),
        "eBPF records without DUTNET_EBPF_LOG:\n{log}"
    );
    assert!(log.contains("ebpf_log=off"), "{log}");
}

#[test]
fn an_invalid_dutnet_ebpf_log_stops_the_start_naming_the_accepted_values() {
    let lab = Lab::builder().upstream().static_duts(1).build();
    let config = lab.write_config(&lab.nat_config(|_| String::new()));
    let mut command = lab.exporter.command(
        &cli::binary().to_string_lossy(),
        &["load", &config.display().to_string()],
    );
    command
        .envs(cli::env(&lab.topology))
        .env("DUTNET_EBPF_LOG", "loud");
    let out = cmd::run(command, Duration::from_secs(15));
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("DUTNET_EBPF_LOG=\"loud\" is not an eBPF log level: set it to error, warn, info, debug, trace or 1 (debug)"),
        "{out:#?}"
    );
    assert!(
        !out.stderr.contains("network up"),
        "it started anyway: {out:#?}"
    );
}
