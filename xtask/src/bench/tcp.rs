//! TCP throughput with iperf3: server on the LAN host, client on
//! the DUT, each pinned to its own core (`-A`).
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use dutnet_tests::cmd;

use super::lab::Lab;

const PORT: &str = "5201";

/// Whether the DUT hands the stack 64 KiB segments (GSO/TSO, the default on
/// veth) or one MTU-sized packet at a time, as a real NIC without TSO would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segmentation {
    Offloaded,
    PerPacket,
}

/// Received throughput in Gbit/s over `seconds`, with `streams` parallel
/// connections.
pub fn measure(lab: &Lab, seconds: u32, segmentation: Segmentation, streams: u32) -> Result<f64> {
    let offload = match segmentation {
        Segmentation::Offloaded => "on",
        Segmentation::PerPacket => "off",
    };
    let ethtool = lab
        .dut
        .exec("ethtool", &["-K", "eth0", "gso", offload, "tso", offload]);
    if !ethtool.success() {
        bail!("ethtool -K eth0 gso/tso {offload}: {}", ethtool.stderr);
    }
    let mut server = lab.lan.spawn(
        "iperf3",
        &["-s", "-1", "-B", "10.99.0.1", "-p", PORT, "-A", "1"],
        &[],
        lab.topology.path("iperf3-server.log"),
    );
    let listening = cmd::wait_for(Duration::from_secs(5), || {
        let ss = lab.lan.exec("ss", &["-Hltn", &format!("sport = :{PORT}")]);
        (!ss.stdout.trim().is_empty()).then_some(())
    });
    if listening.is_none() {
        bail!("iperf3 server did not start:\n{}", server.log());
    }
    let seconds_arg = seconds.to_string();
    let streams_arg = streams.to_string();
    let client = cmd::run(
        lab.dut.command(
            "iperf3",
            &[
                "-c",
                "10.99.0.1",
                "-p",
                PORT,
                "-t",
                &seconds_arg,
                "-A",
                "0",
                "-P",
                &streams_arg,
                "-J",
            ],
        ),
        Duration::from_secs(u64::from(seconds) + 15),
    );
    server.terminate();
    let report: serde_json::Value = serde_json::from_str(&client.stdout)
        .with_context(|| format!("iperf3 -J printed no JSON: {}", client.stderr))?;
    if let Some(error) = report["error"].as_str() {
        bail!("iperf3: {error}");
    }
    if !client.success() {
        bail!(
            "iperf3 client failed ({:?}): {}",
            client.code,
            client.stderr
        );
    }
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 JSON has no end.sum_received.bits_per_second")?;
    Ok(bits / 1e9)
}
