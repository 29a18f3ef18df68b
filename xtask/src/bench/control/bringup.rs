//! Bring-up: how long `dutnet load` takes from its start to "dutnet is up"
//! with N DUT networks (one veth pair each, distinct subnets, DHCP on), and
//! how much memory the daemon holds once up.
use std::{path::Path as FsPath, time::Duration};

use anyhow::Result;
use dutnet_tests::Topology;

use super::{resident_mib, start_dutnet};

#[derive(Clone, Copy, Debug)]
pub struct BringUp {
    pub millis: f64,
    pub rss_mib: f64,
}

pub fn measure(dutnet: &FsPath, run: usize, networks: usize) -> Result<BringUp> {
    let mut topology = Topology::with_prefix(&format!("dnbench-up{networks}x{run}"));
    let (exporter, _lan) = topology.exporter_and_lan();
    let duts = topology.netns("duts");
    let (mut in_exporter, mut in_duts) = (String::new(), String::new());
    for k in 0..networks {
        in_exporter.push_str(&format!(
            "link add dn-d{k} type veth peer name p{k} netns {}\nlink set dn-d{k} up\n",
            duts.name
        ));
        in_duts.push_str(&format!("link set p{k} up\n"));
    }
    for (ns, batch, name) in [
        (&exporter, in_exporter, "exporter.batch"),
        (&duts, in_duts, "duts.batch"),
    ] {
        let file = topology.path(name);
        std::fs::write(&file, batch)?;
        ns.ip(&format!("-batch {}", file.display()));
    }
    let (daemon, took) = start_dutnet(
        &topology,
        &exporter,
        dutnet,
        &config(networks),
        Duration::from_secs(30),
    )?;
    let rss_mib = resident_mib(daemon.pid())?;
    Ok(BringUp {
        millis: took.as_secs_f64() * 1e3,
        rss_mib,
    })
}

/// `networks` networks on `dn-d<k>`, 172.16.<k>.0/24 (k < 256), masquerading
/// to `dn-up`, DHCP and DNS on.
fn config(networks: usize) -> String {
    let mut yaml = String::from("networks:\n");
    for k in 0..networks {
        yaml.push_str(&format!(
            "  - name: n{k}\n    interface: dn-d{k}\n    subnet: 172.16.{k}.0/24\n    gateway_ip: 172.16.{k}.1\n    upstream_interface: dn-up\n    nat_mode: masquerade\n    dhcp_enabled: true\n    dns_servers: [\"10.99.0.1\"]\n"
        ));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_network_has_its_own_subnet() {
        let yaml = config(64);
        assert_eq!(yaml.matches("- name: ").count(), 64);
        assert!(yaml.contains("subnet: 172.16.63.0/24") && yaml.contains("interface: dn-d63"));
    }
}
