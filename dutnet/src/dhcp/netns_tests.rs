//! A real client against the real server, in two network namespaces joined
//! by a veth pair. Needs root, `ip`, `unshare` and ISC `dhclient`; run by hand:
//!
//! ```text
//! cargo test -p dutnet --lib dhcp::netns_tests -- --ignored --nocapture
//! ```

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use super::{DhcpConfig, DhcpServer, Lease};

/// Two namespaces named after this process; deleted on drop, even when the
/// test fails (deleting a namespace also deletes the veth end inside it).
struct Topology {
    server_ns: String,
    client_ns: String,
    server_if: String,
    client_if: String,
    dir: PathBuf,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {args:?} failed");
}

impl Topology {
    fn new() -> Self {
        let id = std::process::id();
        let t = Topology {
            server_ns: format!("dutnet-dhcpt-{id}-s"),
            client_ns: format!("dutnet-dhcpt-{id}-c"),
            server_if: format!("dh{}s", id % 1_000_000),
            client_if: format!("dh{}c", id % 1_000_000),
            dir: std::env::temp_dir().join(format!("dutnet-dhcpt-{id}")),
        };
        let _ = std::fs::remove_dir_all(&t.dir);
        std::fs::create_dir_all(&t.dir).unwrap();
        ip(&["netns", "add", &t.server_ns]);
        ip(&["netns", "add", &t.client_ns]);
        ip(&[
            "link",
            "add",
            &t.server_if,
            "netns",
            &t.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &t.client_if,
            "netns",
            &t.client_ns,
        ]);
        ip(&[
            "-n",
            &t.server_ns,
            "addr",
            "add",
            "192.168.77.1/24",
            "dev",
            &t.server_if,
        ]);
        ip(&["-n", &t.server_ns, "link", "set", &t.server_if, "up"]);
        ip(&["-n", &t.client_ns, "link", "set", &t.client_if, "up"]);
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.server_ns])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client_ns])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the server on a thread that entered `ns`, until `stop` fires.
/// Returns the leases it held when stopped.
fn serve_in(
    ns: &str,
    config: DhcpConfig,
    ready: mpsc::Sender<()>,
    stop: mpsc::Receiver<()>,
) -> Vec<Lease> {
    let f = std::fs::File::open(Path::new("/var/run/netns").join(ns)).unwrap();
    // SAFETY: a valid netns fd; setns only affects this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let server = DhcpServer::start(config).await.unwrap();
        ready.send(()).unwrap();
        while stop.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let leases = server.leases();
        server.shutdown().await;
        leases
    })
}

#[test]
#[ignore = "needs root, ip netns and dhclient"]
fn dhclient_gets_a_lease() {
    let t = Topology::new();
    let lease_file = t.dir.join("state").join("leases");
    let config = DhcpConfig {
        network: "nstest".into(),
        interface: t.server_if.clone(),
        subnet: "192.168.77.0/24".parse().unwrap(),
        server_ip: Ipv4Addr::new(192, 168, 77, 1),
        range_start: Ipv4Addr::new(192, 168, 77, 100),
        range_end: Ipv4Addr::new(192, 168, 77, 150),
        lease_time: Duration::from_secs(600),
        domain: Some("lab.test".into()),
        static_leases: vec![],
        reserved: vec![],
        lease_file: lease_file.clone(),
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let ns = t.server_ns.clone();
    let server = std::thread::spawn(move || serve_in(&ns, config, ready_tx, stop_rx));
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let client_lease = t.dir.join("dhclient.leases");
    let pid = t.dir.join("dhclient.pid");
    // unshare --uts: dhclient's hostname handling must not touch the host's.
    let out = Command::new("timeout")
        .args([
            "40",
            "ip",
            "netns",
            "exec",
            &t.client_ns,
            "unshare",
            "--uts",
            "dhclient",
            "-1",
            "-v",
            "-sf",
            "/bin/true",
        ])
        .arg("-lf")
        .arg(&client_lease)
        .arg("-pf")
        .arg(&pid)
        .arg(&t.client_if)
        .output()
        .unwrap();
    let _ = stop_tx.send(());
    let leases = server.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dhclient failed: {stderr}");
    let got = std::fs::read_to_string(&client_lease).unwrap();
    eprintln!("dhclient:\n{stderr}\nlease file:\n{got}");
    assert!(
        got.contains("fixed-address 192.168.77.100;"),
        "{got}\n{stderr}"
    );
    assert!(got.contains("option routers 192.168.77.1;"), "{got}");
    assert!(
        got.contains("option domain-name-servers 192.168.77.1;"),
        "{got}"
    );
    assert!(got.contains("option domain-name \"lab.test\";"), "{got}");
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].ip, Ipv4Addr::new(192, 168, 77, 100));
    // Persisted where the next start will find it.
    let persisted = super::store::load(&lease_file).unwrap();
    assert_eq!(persisted.len(), 1);
    assert_eq!(persisted[0].mac, leases[0].mac);
}
