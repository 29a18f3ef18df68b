//! The daemon's network logic against a fake host and a fake datapath: no
//! root, no interfaces, every decision visible in what the fakes were asked.
use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use super::{
    DaemonError,
    exporter::{Exporter, TakenOver},
    network::NetworkContext,
    servers::Servers,
};
use crate::{
    config::{Network, wire::AddressWire},
    datapath::{NatPlan, PublicAddress, fake::FakeDatapath},
    host::{HostError, InterfaceProblem},
    netlink::Link,
    state::{
        paths::Paths,
        runtime::{self, RuntimeChanges},
    },
};

/// A host whose DUT interface is `dut` (or missing), recording each call.
#[derive(Default)]
struct FakeExporter {
    dut: Option<Link>,
    calls: Vec<String>,
    fail_alias: bool,
    /// The upstream's address (10.0.0.2 when unset) and index (100).
    external: Option<Ipv4Addr>,
    upstream_index: Option<u32>,
}

fn link(name: &str, index: u32) -> Link {
    Link {
        index,
        name: name.to_owned(),
        up: true,
    }
}

impl Exporter for FakeExporter {
    async fn take_over(
        &mut self,
        network: &Network,
        _known: Option<u32>,
    ) -> Result<Option<TakenOver>, DaemonError> {
        self.calls.push(format!("take_over {}", network.interface));
        Ok(self.dut.clone().map(|link| TakenOver {
            link,
            upstream: Some(self::link("dn-up", self.upstream_index.unwrap_or(100))),
        }))
    }

    async fn route_replies(&mut self, _: &Network, mark: u32, _: u32) -> Result<(), DaemonError> {
        self.calls.push(format!("route_replies {mark:#x}"));
        Ok(())
    }

    async fn masquerade_address(&self, _: &Link) -> Result<Option<Ipv4Addr>, DaemonError> {
        Ok(Some(self.external.unwrap_or(Ipv4Addr::new(10, 0, 0, 2))))
    }

    async fn add_public_aliases(
        &mut self,
        network: &Network,
        _: Option<&Link>,
    ) -> Result<(), DaemonError> {
        let public: Vec<String> = network
            .addresses
            .iter()
            .filter_map(|a| a.public_ip.map(|p| p.to_string()))
            .collect();
        self.calls.push(format!("aliases {}", public.join(",")));
        if self.fail_alias {
            let missing = InterfaceProblem::PublicMissing {
                name: "dn-pub".to_owned(),
            };
            return Err(
                HostError::new("adding public addresses", Some("dn-pub"), missing)
                    .for_network(&network.name)
                    .into(),
            );
        }
        Ok(())
    }

    async fn policy_links(
        &mut self,
        _: &Network,
        _: Option<&Link>,
    ) -> Result<Vec<super::nat::PolicyRoute>, DaemonError> {
        Ok(Vec::new())
    }

    async fn remove_policy_rule(&mut self, _: &str, _: Ipv4Addr) {}

    async fn remove_public_alias(&mut self, _: &str, public: Ipv4Addr) {
        self.calls.push(format!("remove alias {public}"));
    }

    async fn resolve_upstream(&self, _: &Network) -> Option<Link> {
        Some(link("dn-up", 100))
    }

    async fn start_servers(&self, _: &Network, _: &Paths) -> Result<Servers, DaemonError> {
        Ok(Servers::default())
    }
}

/// A state directory of its own, removed when the test ends.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dutnet-daemon-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn paths(&self) -> Paths {
        Paths {
            bpffs: self.0.join("bpffs"),
            state_dir: self.0.join("state"),
            run_dir: self.0.join("run"),
        }
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ONE_TO_ONE: &str = "interface: dn-a\nsubnet: 192.168.100.0/24\nnat_mode: 1to1\nupstream_interface: dn-up\naddresses:\n  - {ip: 192.168.100.10, mac: '02:00:00:00:00:10', public_ip: 10.0.0.10}\n";

fn context(yaml: &str) -> NetworkContext {
    let config = crate::config::parse_str(yaml).unwrap().networks.remove(0);
    let (changes, _) = tokio::sync::mpsc::unbounded_channel();
    NetworkContext::new(config, None, changes)
}

/// A network of `yaml` brought up on DUT NIC `dn-a` (ifindex 7), with its
/// own state directory.
struct Up {
    _dir: StateDir,
    paths: Paths,
    net: NetworkContext,
    host: FakeExporter,
    datapath: FakeDatapath,
}

async fn up(yaml: &str) -> Up {
    let dir = StateDir::new();
    let paths = dir.paths();
    let mut net = context(yaml);
    let mut host = FakeExporter {
        dut: Some(link("dn-a", 7)),
        ..FakeExporter::default()
    };
    let mut datapath = FakeDatapath::default();
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    Up {
        _dir: dir,
        paths,
        net,
        host,
        datapath,
    }
}

fn mapping(private: [u8; 4], public: [u8; 4]) -> PublicAddress {
    PublicAddress::new(private.into(), public.into())
}

fn wire(ip: &str, public_ip: Option<&str>) -> AddressWire {
    AddressWire {
        ip: Some(ip.to_owned()),
        mac: None,
        hostname: None,
        public_ip: public_ip.map(str::to_owned),
        dhcp_options: None,
        ..AddressWire::default()
    }
}

#[tokio::test]
async fn a_network_comes_up_once_and_again_after_a_replug() {
    let dir = StateDir::new();
    let paths = dir.paths();
    let mut net = context(ONE_TO_ONE);
    let mut host = FakeExporter::default();
    let mut datapath = FakeDatapath::default();

    // No NIC yet: nothing attached, nothing aliased; waiting.
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert!(datapath.attached.is_empty());
    assert_eq!(net.ifindex(), None);

    host.dut = Some(link("dn-a", 7));
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert_eq!(net.ifindex(), Some(7));
    let plan = &datapath.attached["dn-a"];
    match &plan.nat {
        NatPlan::OneToOne {
            upstream,
            external,
            public,
            ..
        } => {
            assert_eq!(upstream, "dn-up");
            assert_eq!(*external, Ipv4Addr::new(10, 0, 0, 2));
            assert_eq!(public, &[mapping([192, 168, 100, 10], [10, 0, 0, 10])]);
        }
        other => panic!("1to1 network planned as {other:?}"),
    }
    assert!(host.calls.contains(&"aliases 10.0.0.10".to_owned()));

    // Nothing changed: nothing is redone.
    let calls = datapath.calls.len();
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert_eq!(datapath.calls.len(), calls);

    // Re-plugged (a new ifindex): detached, then attached again.
    host.dut = Some(link("dn-a", 8));
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert_eq!(datapath.calls[calls..], ["detach dn-a", "attach dn-a"]);
    assert_eq!(net.ifindex(), Some(8));

    // Unplugged: detached, and waiting again.
    host.dut = None;
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert_eq!(datapath.calls.last().unwrap(), "detach dn-a");
    assert!(datapath.attached.is_empty());
    assert_eq!(net.ifindex(), None);
}

#[tokio::test]
async fn a_failing_attach_leaves_the_network_down_and_the_next_event_retries() {
    let dir = StateDir::new();
    let paths = dir.paths();
    let mut net = context(ONE_TO_ONE);
    let mut host = FakeExporter {
        dut: Some(link("dn-a", 7)),
        ..FakeExporter::default()
    };
    let mut datapath = FakeDatapath {
        fail_attach: true,
        ..FakeDatapath::default()
    };
    let e = net
        .reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("network `dn-a`: attaching the datapath failed"),
        "{e}"
    );
    assert_eq!(net.ifindex(), None);
    assert!(
        !host.calls.iter().any(|c| c.starts_with("aliases")),
        "aliases added for a network that did not attach: {:?}",
        host.calls
    );

    datapath.fail_attach = false;
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert_eq!(net.ifindex(), Some(7));
    assert!(datapath.attached.contains_key("dn-a"));
}

#[tokio::test]
async fn a_failing_alias_detaches_what_it_attached() {
    let dir = StateDir::new();
    let paths = dir.paths();
    let mut net = context(ONE_TO_ONE);
    let mut host = FakeExporter {
        dut: Some(link("dn-a", 7)),
        fail_alias: true,
        ..FakeExporter::default()
    };
    let mut datapath = FakeDatapath::default();
    assert!(
        net.reconfigure(&mut host, &mut datapath, &paths)
            .await
            .is_err()
    );
    assert_eq!(datapath.calls, ["attach dn-a", "detach dn-a"]);
    assert_eq!(net.ifindex(), None);
}

#[tokio::test]
async fn a_public_address_added_and_removed_at_run_time_reaches_datapath_host_and_file() {
    let Up {
        _dir,
        paths,
        mut net,
        mut host,
        mut datapath,
    } = up(ONE_TO_ONE).await;

    let applied = net
        .add_address(
            wire("192.168.100.11", Some("10.0.0.11")),
            &mut host,
            &mut datapath,
            &paths,
        )
        .await
        .unwrap();
    assert!(applied.public_changed);
    let added = mapping([192, 168, 100, 11], [10, 0, 0, 11]);
    assert_eq!(
        datapath.calls.last().unwrap(),
        &format!("set_public dn-a Add({added:?})")
    );
    assert_eq!(host.calls.last().unwrap(), "aliases 10.0.0.10,10.0.0.11");
    let saved = RuntimeChanges::load(&runtime::file(&paths, "dn-a")).unwrap();
    assert_ne!(
        saved,
        RuntimeChanges::default(),
        "the runtime change was not saved"
    );
    assert_eq!(net.config.addresses.len(), 2);

    let applied = net
        .remove_address("192.168.100.11", &mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert!(applied.public_changed);
    assert_eq!(
        datapath.calls.last().unwrap(),
        &format!("set_public dn-a Remove({added:?})")
    );
    assert_eq!(host.calls.last().unwrap(), "remove alias 10.0.0.11");
    assert_eq!(net.config.addresses.len(), 1);
}

#[tokio::test]
async fn a_runtime_add_whose_alias_fails_changes_nothing() {
    let Up {
        _dir,
        paths,
        mut net,
        mut host,
        mut datapath,
    } = up(ONE_TO_ONE).await;
    let file = runtime::file(&paths, "dn-a");
    let before = RuntimeChanges::load(&file).unwrap();

    host.fail_alias = true;
    let failure = net
        .add_address(
            wire("192.168.100.11", Some("10.0.0.11")),
            &mut host,
            &mut datapath,
            &paths,
        )
        .await
        .err()
        .unwrap();
    assert!(failure.message.contains("does not exist"), "{failure:?}");
    // The mapping went in, and out again; config and file are as before.
    let added = mapping([192, 168, 100, 11], [10, 0, 0, 11]);
    assert_eq!(
        datapath.calls[datapath.calls.len() - 2..],
        [
            format!("set_public dn-a Add({added:?})"),
            format!("set_public dn-a Remove({added:?})")
        ]
    );
    assert_eq!(net.config.addresses.len(), 1);
    assert_eq!(RuntimeChanges::load(&file).unwrap(), before);
}

#[tokio::test]
async fn a_public_address_on_a_masquerade_network_is_refused_and_changes_nothing() {
    let Up {
        _dir,
        paths,
        mut net,
        mut host,
        mut datapath,
    } = up("interface: dn-a\nsubnet: 192.168.100.0/24\nupstream_interface: dn-up\n").await;
    let calls = datapath.calls.clone();
    let failure = net
        .add_address(
            wire("192.168.100.11", Some("10.0.0.11")),
            &mut host,
            &mut datapath,
            &paths,
        )
        .await
        .err()
        .unwrap();
    assert!(failure.message.contains("1to1"), "{failure:?}");
    assert_eq!(datapath.calls, calls);
    assert!(net.config.addresses.is_empty());
    assert_eq!(
        RuntimeChanges::load(&runtime::file(&paths, "dn-a")).unwrap(),
        RuntimeChanges::default()
    );
}

#[tokio::test]
async fn masquerade_follows_an_upstream_that_got_a_new_address_or_came_back() {
    let Up {
        _dir,
        paths,
        mut net,
        mut host,
        mut datapath,
    } = up(ONE_TO_ONE).await;
    let external = |d: &FakeDatapath| match &d.attached["dn-a"].nat {
        NatPlan::OneToOne { external, .. } => *external,
        other => panic!("{other:?}"),
    };
    assert_eq!(external(&datapath), Ipv4Addr::new(10, 0, 0, 2));

    // DHCP on the uplink handed out a new address.
    host.external = Some(Ipv4Addr::new(10, 0, 0, 9));
    let calls = datapath.calls.len();
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert_eq!(datapath.calls[calls..], ["detach dn-a", "attach dn-a"]);
    assert_eq!(external(&datapath), Ipv4Addr::new(10, 0, 0, 9));
    assert_eq!(net.ifindex(), Some(7), "the DUT NIC stays taken over");

    // The uplink was re-plugged (new index), same address.
    host.upstream_index = Some(101);
    let calls = datapath.calls.len();
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert_eq!(datapath.calls[calls..], ["detach dn-a", "attach dn-a"]);

    // Nothing changed since: nothing redone.
    let calls = datapath.calls.len();
    net.reconfigure(&mut host, &mut datapath, &paths)
        .await
        .unwrap();
    assert_eq!(datapath.calls.len(), calls);
}
