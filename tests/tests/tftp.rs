//! The TFTP server (issue #21) from a DUT namespace: curl fetches a 20 MB
//! file with blksize 1468 and its sha256 matches, a raw client does the same
//! with windowsize 8, paths out of the root are refused, and 20 transfers at
//! once all complete.
#![expect(
    clippy::unwrap_used,
    reason = "a test: a panic is the failure report (clippy allows unwrap only inside #[test] functions)"
)]
use std::{
    net::{Ipv4Addr, UdpSocket},
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use dutnet_tests::{
    cli, cmd,
    lab::{Dut, Lab, config::GATEWAY},
    prereq,
};

const BIG: usize = 20 * 1024 * 1024;

/// A DUT NIC `dn-dut1` without NAT serving [`root`] over TFTP: a 20 MB
/// `boot/kernel`, a small file and a symlink out of the root; the DUT has
/// 192.168.100.50.
fn start() -> Lab {
    prereq::require("curl", "curl");
    prereq::require("sha256sum", "coreutils");
    let mut lab = Lab::builder()
        .dut(Dut::on(1).ip(Ipv4Addr::new(192, 168, 100, 50)))
        .build();
    let tftp = root(&lab);
    std::fs::create_dir_all(tftp.join("boot")).unwrap();
    std::fs::write(tftp.join("boot/kernel"), content(BIG)).unwrap();
    std::fs::write(tftp.join("small"), content(512 * 1024)).unwrap();
    // A symlink that leads out of the root.
    std::os::unix::fs::symlink("/etc/hostname", tftp.join("escape")).unwrap();
    lab.load(&format!(
        "interface: dn-dut1\nsubnet: 192.168.100.0/24\ngateway_ip: {GATEWAY}\nnat_mode: disabled\ntftp_root: {}\n",
        tftp.display()
    ));
    assert!(lab.log().contains("TFTP server listening"), "{}", lab.log());
    lab
}

/// The TFTP root.
fn root(lab: &Lab) -> PathBuf {
    lab.topology.path("tftp")
}

/// `curl tftp://gateway/<path>` into `out`; curl's exit code (with its
/// message on failure, for the assertion).
fn curl(lab: &Lab, path: &str, out: &std::path::Path, extra: &[&str]) -> Option<i32> {
    let url = format!("tftp://{GATEWAY}/{path}");
    let out_arg = out.display().to_string();
    let mut args = vec!["-sS", "--path-as-is", "--max-time", "60", "-o", &out_arg];
    args.extend(extra);
    args.push(&url);
    let out = cmd::run(lab.dut(1).command("curl", &args), Duration::from_secs(70));
    if !out.success() {
        eprintln!("{}: {}", out.command, out.stderr.trim());
    }
    out.code
}

fn sha256(lab: &Lab, path: &std::path::Path) -> String {
    let out = lab
        .dut(1)
        .exec("sha256sum", &[&path.display().to_string()])
        .ok();
    out.stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Content where a misplaced or repeated block shows.
fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 7 % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

#[test]
fn curl_fetches_20_mb_with_blksize_1468_and_the_sha256_matches() {
    let lab = start();
    let out = lab.topology.path("kernel.out");
    let status = curl(&lab, "boot/kernel", &out, &["--tftp-blksize", "1468"]);
    assert_eq!(status, Some(0), "{}", lab.log());
    assert_eq!(
        sha256(&lab, &out),
        sha256(&lab, &root(&lab).join("boot/kernel"))
    );
    // `dutnet status --json` counts it.
    let out = cli::run(&lab.topology, &lab.exporter, &["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let tftp = &status["networks"][0]["boot"]["tftp"];
    assert_eq!(tftp["transfers_ok"], 1, "{status}");
    assert_eq!(tftp["bytes_sent"], BIG, "{status}");
    let text = cli::run(&lab.topology, &lab.exporter, &["status"]).ok();
    assert!(
        text.stdout
            .contains(&format!("1 ok, 0 failed, 0 refused, {BIG} bytes")),
        "{}",
        text.stdout
    );
    // ...and so does `dutnet stats --json`, per network.
    let out = cli::run(&lab.topology, &lab.exporter, &["stats", "--json"]).ok();
    let stats: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let tftp = &stats["networks"][0]["tftp"];
    assert_eq!(tftp["transfers_ok"], 1, "{stats}");
    assert_eq!(tftp["bytes_sent"], BIG, "{stats}");
}

#[test]
fn a_raw_client_with_windowsize_8_gets_the_same_bytes() {
    let lab = start();
    let sock = lab
        .dut(1)
        .enter(|| UdpSocket::bind("192.168.100.50:0").unwrap());
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let got = windowed_fetch(&sock, "boot/kernel", 1468, 8);
    assert!(
        got == content(BIG),
        "the file differs ({} bytes)",
        got.len()
    );
}

#[test]
fn paths_out_of_the_root_are_refused() {
    let lab = start();
    let out = lab.topology.path("refused.out");
    // curl: 68 "file not found", 69 "permission problem" (TFTP errors 1, 2).
    for (path, want) in [
        ("../../../etc/hostname", 69),
        ("boot/../../etc/hostname", 69),
        ("/etc/hostname", 68),
        ("escape", 69),
    ] {
        let status = curl(&lab, path, &out, &[]);
        assert_eq!(status, Some(want), "{path}: {}", lab.log());
    }
    // The file itself is served with a leading slash (the root, not the host's).
    assert_eq!(curl(&lab, "/small", &out, &[]), Some(0));
}

#[test]
fn twenty_concurrent_transfers_all_complete() {
    let lab = start();
    let started = Instant::now();
    let mut children: Vec<_> = (0..20)
        .map(|i| {
            let out = lab.topology.path(&format!("c{i}.out"));
            let url = format!("tftp://{GATEWAY}/boot/kernel");
            lab.dut(1)
                .command(
                    "curl",
                    &[
                        "-sS",
                        "--max-time",
                        "120",
                        "--tftp-blksize",
                        "1468",
                        "-o",
                        &out.display().to_string(),
                        &url,
                    ],
                )
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.iter_mut().enumerate() {
        let status = cmd::wait_with_limit(child, Duration::from_secs(150));
        assert_eq!(status, Some(0), "transfer {i}: {}", lab.log());
    }
    let expected = sha256(&lab, &root(&lab).join("boot/kernel"));
    for i in 0..20 {
        let out = lab.topology.path(&format!("c{i}.out"));
        assert_eq!(sha256(&lab, &out), expected, "transfer {i}");
    }
    eprintln!("20 x 20 MB in {:?}", started.elapsed());
}

/// RRQ with blksize and windowsize; ACKs the last block of each window.
fn windowed_fetch(sock: &UdpSocket, name: &str, blksize: usize, window: u16) -> Vec<u8> {
    let mut rrq = vec![0, 1];
    for field in [
        name,
        "octet",
        "blksize",
        &blksize.to_string(),
        "windowsize",
        &window.to_string(),
    ] {
        rrq.extend_from_slice(field.as_bytes());
        rrq.push(0);
    }
    sock.send_to(&rrq, (GATEWAY, 69)).unwrap();
    let mut buf = vec![0u8; blksize + 4];
    let (n, tid) = sock.recv_from(&mut buf).expect("an OACK");
    assert_eq!(&buf[..2], [0, 6], "OACK expected: {:?}", &buf[..n]);
    let oack = String::from_utf8_lossy(&buf[2..n]).replace('\0', " ");
    assert_eq!(
        oack.trim(),
        format!("blksize {blksize} windowsize {window}")
    );
    sock.connect(tid).unwrap();
    sock.send(&[0, 4, 0, 0]).unwrap();
    let mut out = Vec::with_capacity(BIG);
    let mut expected: u16 = 1;
    let mut in_window = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let n = sock.recv(&mut buf).expect("DATA within 3 s");
        assert_eq!(&buf[..2], [0, 3], "DATA expected");
        let block = u16::from_be_bytes([buf[2], buf[3]]);
        if block != expected {
            // Out of order: ask again from the last good block (RFC 7440 4).
            sock.send(&[
                0,
                4,
                (expected.wrapping_sub(1) >> 8) as u8,
                expected.wrapping_sub(1) as u8,
            ])
            .unwrap();
            in_window = 0;
            continue;
        }
        out.extend_from_slice(&buf[4..n]);
        in_window += 1;
        let last = n - 4 < blksize;
        if in_window == window || last {
            sock.send(&[0, 4, (block >> 8) as u8, block as u8]).unwrap();
            in_window = 0;
        }
        if last {
            return out;
        }
        expected = expected.wrapping_add(1);
    }
    panic!("the transfer took over 60 s");
}
