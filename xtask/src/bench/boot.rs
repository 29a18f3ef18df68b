//! Network boot: TFTP throughput of one 20 MB file (blksize 1468, as
//! tests/tftp.rs fetches it) from dutnet's server and from tftpd-hpa on the
//! same topology, fetched by curl in the DUT namespace.
//!
//! ```text
//! dut  eth0 192.168.100.10/24 ── dn-dut1 192.168.100.1/24  exporter (TFTP :69)
//! ```
use std::{
    collections::BTreeMap,
    path::Path as FsPath,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use dutnet_tests::{Netns, Topology, cmd};
use serde_json::json;

use super::control;
use super::report::{Spread, cell, samples_json};

const GATEWAY: &str = "192.168.100.1";
const FILE_MIB: usize = 20;
/// tftpd-hpa's daemon; the Debian package `tftpd-hpa` installs it.
const TFTPD: &str = "in.tftpd";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Server {
    Dutnet,
    TftpdHpa,
}

impl Server {
    pub const ALL: [Self; 2] = [Self::Dutnet, Self::TftpdHpa];

    fn key(self) -> &'static str {
        match self {
            Self::Dutnet => "dutnet",
            Self::TftpdHpa => "tftpd_hpa",
        }
    }

    fn tag(self) -> char {
        match self {
            Self::Dutnet => 'd',
            Self::TftpdHpa => 'h',
        }
    }
}

/// MiB/s of one fetch of the file, sha256 checked.
pub fn measure(server: Server, dutnet: &FsPath, run: usize, limit: Duration) -> Result<f64> {
    let tftpd = match server {
        Server::TftpdHpa => Some(tftpd_hpa()?),
        Server::Dutnet => None,
    };
    let mut topology = Topology::with_prefix(&format!("dnbench-tf{}{run}", server.tag()));
    let exporter = topology.netns("exporter");
    let dut = topology.netns("dut");
    topology.veth((&exporter, "dn-dut1"), (&dut, "eth0"));
    dut.ip("addr add 192.168.100.10/24 dev eth0");
    let root = topology.path("tftp");
    std::fs::create_dir_all(&root)?;
    let content: Vec<u8> = (0..FILE_MIB << 20).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("kernel"), &content)?;

    let _server = match server {
        Server::Dutnet => {
            let yaml = format!(
                "interface: dn-dut1\nsubnet: 192.168.100.0/24\ngateway_ip: {GATEWAY}\nnat_mode: disabled\ndhcp_enabled: false\ntftp_root: {}\n",
                root.display()
            );
            control::start_dutnet(&topology, &exporter, dutnet, &yaml, Duration::from_secs(20))?.0
        }
        Server::TftpdHpa => {
            exporter.ip(&format!("addr add {GATEWAY}/24 dev dn-dut1"));
            let address = format!("{GATEWAY}:69");
            let root_arg = root.display().to_string();
            let tftpd = tftpd.context("tftpd-hpa's path")?;
            // An unpacked tftpd-hpa finds libwrap beside it.
            let libraries = tftpd
                .ancestors()
                .nth(2)
                .map(|root| root.join("lib/x86_64-linux-gnu").display().to_string())
                .unwrap_or_default();
            let process = exporter.spawn(
                &tftpd.to_string_lossy(),
                &[
                    "--listen",
                    "--foreground",
                    "--address",
                    &address,
                    "--secure",
                    &root_arg,
                ],
                &[("LD_LIBRARY_PATH", libraries)],
                topology.path("tftpd.log"),
            );
            if cmd::wait_for(Duration::from_secs(5), || {
                control::listens_udp(&exporter, 69).then_some(())
            })
            .is_none()
            {
                bail!("tftpd-hpa did not start:\n{}", process.log());
            }
            process
        }
    };
    let out = topology.path("kernel.out");
    let took = fetch(&dut, &out, limit)?;
    let got = std::fs::read(&out)?;
    if got != content {
        bail!(
            "the fetched file differs ({} of {} bytes)",
            got.len(),
            content.len()
        );
    }
    Ok(FILE_MIB as f64 / took.as_secs_f64())
}

fn fetch(dut: &Netns, out: &FsPath, limit: Duration) -> Result<Duration> {
    let url = format!("tftp://{GATEWAY}/kernel");
    let out_arg = out.display().to_string();
    let started = Instant::now();
    let result = cmd::run(
        dut.command(
            "curl",
            &["-sS", "--tftp-blksize", "1468", "-o", &out_arg, &url],
        ),
        limit,
    );
    let took = started.elapsed();
    if !result.success() {
        bail!("curl failed: {result:#?}");
    }
    Ok(took)
}

fn on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// tftpd-hpa's daemon: the installed one, else one unpacked from Debian's
/// package under target/tools. Installing the package would start a
/// host-wide TFTP service on port 69; unpacking it starts nothing.
fn tftpd_hpa() -> Result<std::path::PathBuf> {
    if let Some(path) = on_path(TFTPD) {
        return Ok(path);
    }
    let tools = FsPath::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .join("target/tools/tftpd-hpa");
    let unpacked = tools.join("usr/sbin").join(TFTPD);
    if unpacked.is_file() {
        return Ok(unpacked);
    }
    std::fs::create_dir_all(&tools)?;
    // The daemon and the TCP wrappers library it links.
    crate::run::checked(
        std::process::Command::new("apt-get")
            .args(["download", "tftpd-hpa", "libwrap0"])
            .current_dir(&tools),
    )
    .context("apt-get download tftpd-hpa (run `apt-get update` first if it is not found)")?;
    let debs: Vec<_> = std::fs::read_dir(&tools)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    for deb in debs {
        crate::run::checked(
            std::process::Command::new("dpkg")
                .arg("-x")
                .arg(&deb)
                .arg(&tools),
        )?;
    }
    if unpacked.is_file() {
        Ok(unpacked)
    } else {
        bail!("the tftpd-hpa package has no {}", unpacked.display())
    }
}

/// The network-boot table's samples.
#[derive(Debug, Default)]
pub struct BootResults {
    samples: BTreeMap<Server, Vec<f64>>,
    failures: BTreeMap<Server, String>,
}

impl BootResults {
    pub fn add(&mut self, server: Server, value: f64) {
        self.samples.entry(server).or_default().push(value);
    }

    pub fn fail(&mut self, server: Server, reason: String) {
        self.failures.insert(server, reason);
    }

    fn spread(&self, server: Server) -> Option<Spread> {
        Spread::of(self.samples.get(&server)?)
    }

    fn ratio(&self) -> Option<f64> {
        let d = self.spread(Server::Dutnet)?.median;
        let h = self.spread(Server::TftpdHpa)?.median;
        (h > 0.0).then(|| d / h)
    }

    pub fn markdown(&self, runs: usize) -> String {
        if self.samples.is_empty() && self.failures.is_empty() {
            return String::new();
        }
        let cells: Vec<String> = Server::ALL
            .iter()
            .map(|&s| match cell(self.spread(s), 1.0, runs) {
                text if self.failures.contains_key(&s) && text == "–" => "**fails**".to_owned(),
                text => text,
            })
            .collect();
        let ratio = self
            .ratio()
            .map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"));
        let mut out = format!(
            "| network boot | dutnet | tftpd-hpa | dutnet / tftpd-hpa |\n|---|---:|---:|---:|\n| TFTP, {FILE_MIB} MiB, blksize 1468 (MiB/s) | {} | {ratio} |\n",
            cells.join(" | ")
        );
        out.extend(
            self.failures
                .iter()
                .map(|(s, reason)| format!("- TFTP on {}: {reason}\n", s.key())),
        );
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let servers: serde_json::Map<_, _> = Server::ALL
            .iter()
            .filter_map(|&s| Some((s.key().to_owned(), samples_json(self.samples.get(&s)?)?)))
            .collect();
        let failures: BTreeMap<_, _> = self.failures.iter().map(|(s, r)| (s.key(), r)).collect();
        json!({
            "key": "tftp_mib_per_s_20_mib_blksize_1468",
            "servers": servers,
            "dutnet_over_tftpd_hpa": self.ratio(),
            "failures": failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_compares_with_tftpd_hpa() {
        let mut results = BootResults::default();
        results.add(Server::Dutnet, 60.0);
        results.add(Server::TftpdHpa, 40.0);
        let table = results.markdown(1);
        assert!(table.contains("| 60.00 | 40.00 | 1.50× |"), "{table}");
        let mut missing = BootResults::default();
        missing.add(Server::Dutnet, 60.0);
        missing.fail(Server::TftpdHpa, "in.tftpd not found".into());
        let table = missing.markdown(1);
        assert!(table.contains("**fails**"), "{table}");
        assert!(table.contains("in.tftpd not found"), "{table}");
    }
}
