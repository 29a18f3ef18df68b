//! `dutnet capture` (and its `tcpdump` alias) against real traffic: while a
//! DUT pings the LAN host, the daemon's capture must hold the DUT's echo
//! requests as `tcpdump -r` reads them (the file format is checked by the
//! tool users open it with), with the DUT's own address on the DUT NIC and
//! the translated one `--upstream`; `-w -` must stream through a pipe; the
//! filter expression, `--count` and `--duration` must bound it; a bad
//! expression must capture nothing; and a user other than root must be
//! refused unless the network has `enable_tcpdump: true`. On both datapaths:
//! the eBPF one redirects packets between NICs, and the capture must still
//! see them.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    time::{Duration, Instant},
};

use dutnet_tests::{
    Output, cli, cmd,
    lab::Lab,
    nat::{DUT_IP, EXPORTER_UP, LAN_IP},
    netns::Process,
    prereq,
};

/// DUT 1 pinging the LAN host five times a second, for the whole test.
fn ping(lab: &Lab) -> Process {
    lab.dut(1).spawn(
        "ping",
        &["-n", "-i", "0.2", "-c", "600", &LAN_IP.to_string()],
        &[],
        lab.topology.path("ping.log"),
    )
}

/// `tcpdump -r FILE -n`: one line per packet.
fn read_pcap(file: &Path) -> Vec<String> {
    let out = cmd::run(
        {
            let mut c = std::process::Command::new("tcpdump");
            c.args(["-r", &file.to_string_lossy(), "-n"]);
            c
        },
        dutnet_tests::netns::COMMAND_LIMIT,
    );
    assert!(
        out.success(),
        "tcpdump cannot read {}: {out:#?}",
        file.display()
    );
    out.stdout.lines().map(str::to_owned).collect()
}

fn echo_request(from: impl std::fmt::Display) -> String {
    format!("IP {from} > {LAN_IP}: ICMP echo request")
}

/// `dutnet args...` as uid/gid 65534 (nobody/nogroup), from a copy of the
/// binary anybody may run (as tests/control.rs does).
fn dutnet_as_nobody(lab: &Lab, args: &[&str]) -> Output {
    let bin = lab.topology.path("dutnet-bin");
    std::fs::copy(cli::binary(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(args);
    command.envs(cli::env(&lab.topology));
    cmd::run(command, dutnet_tests::netns::COMMAND_LIMIT)
}

fn captures_what_the_dut_sends(datapath: &str) {
    prereq::require("tcpdump", "tcpdump");
    prereq::require("setpriv", "util-linux");
    let mut lab = Lab::builder().upstream().static_duts(1).build();
    lab.load_nat_on(datapath, "");
    let _ping = ping(&lab);

    // On the DUT NIC: the DUT's own address.
    let file = lab.topology.path("dut.pcap");
    let path = file.to_string_lossy().into_owned();
    lab.ok(&["capture", "dut1", "-w", &path, "--count", "10"]);
    let lines = read_pcap(&file);
    assert_eq!(lines.len(), 10, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains(&echo_request(DUT_IP))),
        "{lines:#?}"
    );

    // Upstream: the same requests after masquerade, from the exporter's
    // address only; for the network, and on the eBPF datapath (whose
    // connection table says which flows are the DUT's) for the DUT.
    let dut = DUT_IP.to_string();
    let mut upstream_runs = vec![vec!["capture", "dut1", "--upstream"]];
    if datapath == "ebpf" {
        upstream_runs.push(vec!["capture", "dut1", "--upstream", "--dut", &dut]);
    }
    for args in upstream_runs {
        let file = lab.topology.path("up.pcap");
        let path = file.to_string_lossy().into_owned();
        let mut all = args.clone();
        all.extend(["-w", &path, "--count", "6", "icmp"]);
        lab.ok(&all);
        let lines = read_pcap(&file);
        assert_eq!(lines.len(), 6, "{args:?}: {lines:#?}");
        assert!(
            lines.iter().any(|l| l.contains(&echo_request(EXPORTER_UP))),
            "{args:?}: {lines:#?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains(&DUT_IP.to_string())),
            "{args:?}: the DUT's private address upstream: {lines:#?}"
        );
    }

    // `-w -` into a pipe, read by tcpdump as a stream.
    let script = format!(
        "{} capture dut1 -w - --count 4 icmp | tcpdump -r - -n",
        cli::binary().display()
    );
    let mut piped = lab.exporter.command("sh", &["-c", &script]);
    piped.envs(cli::env(&lab.topology));
    let piped = cmd::run(piped, dutnet_tests::netns::COMMAND_LIMIT);
    assert!(piped.success(), "{piped:#?}");
    assert_eq!(piped.stdout.lines().count(), 4, "{piped:#?}");
    assert!(piped.stdout.contains("ICMP echo"), "{piped:#?}");

    // Text mode, through jumpstarter's verb name.
    let text = lab.ok(&["tcpdump", "dut1", "-n", "-c", "4", "icmp"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines.iter().all(|l| l.contains("ICMP echo")),
        "the filter did not apply: {text}"
    );
    assert!(text.contains(&echo_request(DUT_IP)), "{text}");

    // A bad expression: a clear refusal, and no capture.
    let bad = lab.dutnet(&["capture", "dut1", "--count", "1", "icmp", "and", "and"]);
    assert_eq!(bad.code, Some(4), "{bad:#?}");
    assert!(
        bad.stderr.contains("`icmp and and` is not valid") && bad.stderr.contains("pcap-filter"),
        "{bad:#?}"
    );
    assert!(bad.stdout.is_empty(), "{bad:#?}");

    // --duration ends a capture that sees nothing.
    let file = lab.topology.path("quiet.pcap");
    let path = file.to_string_lossy().into_owned();
    let started = Instant::now();
    lab.ok(&[
        "capture",
        "dut1",
        "--duration",
        "1s",
        "-w",
        &path,
        "udp port 9",
    ]);
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(10)).contains(&took),
        "{took:?}"
    );
    assert!(read_pcap(&file).is_empty());

    // Another user: refused without enable_tcpdump, allowed with it.
    {
        lab.restart_with(&["--socket-group", "nogroup"]);
        let refused = dutnet_as_nobody(&lab, &["capture", "dut1", "--count", "1"]);
        assert!(!refused.success(), "{refused:#?}");
        assert!(
            refused.stderr.contains("only root may capture")
                && refused.stderr.contains("enable_tcpdump: true"),
            "{refused:#?}"
        );
        lab.stop();
        lab.write_config(
            &lab.nat_config(|_| format!("datapath: {datapath}\nenable_tcpdump: true\n")),
        );
        lab.start_with(&["--socket-group", "nogroup"]);
        let allowed = dutnet_as_nobody(&lab, &["capture", "dut1", "--count", "2", "icmp"]);
        assert!(allowed.success(), "{allowed:#?}\n{}", lab.log());
        assert_eq!(allowed.stdout.lines().count(), 2, "{allowed:#?}");
    }
}

#[test]
fn captures_on_the_ebpf_datapath() {
    captures_what_the_dut_sends("ebpf");
}

#[test]
fn captures_on_the_nft_datapath() {
    captures_what_the_dut_sends("nft");
}
