//! `dutnet capture` (alias `tcpdump`, jumpstarter's verb): the daemon
//! captures on the network's DUT NIC (or its upstream NIC) and streams pcap;
//! this writes it to a file or standard output (`-w`), or prints one line
//! per packet like `tcpdump -n`.
use std::{
    fs::File,
    io::{self, Write},
    path::PathBuf,
};

use anyhow::{Context as _, Result, bail};
use dutnet::{
    capture::text,
    config::duration,
    control::{self, protocol::CaptureRequest},
    state::paths::Paths,
};
use pcap_file::pcap::{PcapReader, PcapWriter};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The network whose packets to capture.
    network: String,
    /// Only this DUT's packets (its IPv4 address or MAC).
    #[arg(long, value_name = "IP|MAC")]
    dut: Option<String>,
    /// Capture on the upstream NIC, after NAT: the network's (or the DUT's)
    /// translated packets.
    #[arg(long)]
    upstream: bool,
    /// Write pcap to FILE (`-` for standard output, e.g. into `wireshark -k -i -`)
    /// instead of printing a line per packet.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Stop after N packets.
    #[arg(short = 'c', long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this long (`30s`, `5m`; at most 60 minutes, the default).
    #[arg(long, value_name = "DURATION")]
    duration: Option<String>,
    /// Accepted for tcpdump's habit: addresses are always printed as numbers.
    #[arg(short = 'n', hide = true)]
    numeric: bool,
    /// A pcap-filter(7) expression, as tcpdump takes it (`icmp`, `port 53`).
    #[arg(value_name = "FILTER EXPRESSION", trailing_var_arg = true)]
    filter: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let duration_ms = args
        .duration
        .as_deref()
        .map(|d| {
            duration::parse(d)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .map_err(|m| anyhow::anyhow!("--duration {m}; write e.g. 30s or 5m"))
        })
        .transpose()?;
    let request = CaptureRequest {
        network: Some(args.network.clone()),
        dut: args.dut.clone(),
        upstream: args.upstream,
        count: args.count,
        duration_ms,
        filter: (!args.filter.is_empty()).then(|| args.filter.join(" ")),
    };
    let (plan, stream) = control::client::capture(&Paths::from_env().control_socket(), &request)?;
    let mut stderr = io::stderr();
    let _ = writeln!(
        stderr,
        "dutnet: capturing on {} (network {}){}",
        plan.interface,
        plan.network,
        if plan.filter.is_empty() {
            String::new()
        } else {
            format!(", filter: {}", plan.filter)
        }
    );
    let mut reader = PcapReader::new(stream).context("reading the capture stream's header")?;
    let mut packets = 0_u64;
    let outcome = match &args.write {
        Some(path) => {
            let out: Box<dyn Write> = if path.as_os_str() == "-" {
                Box::new(io::stdout().lock())
            } else {
                Box::new(
                    File::create(path).with_context(|| format!("creating {}", path.display()))?,
                )
            };
            // Each packet in full, as it comes: a live reader (wireshark -k)
            // sees it now, an interrupted file is whole.
            let mut writer = PcapWriter::with_header(Flushed(out), reader.header())
                .context("writing the pcap header")?;
            copy(&mut reader, &mut packets, |p| {
                writer.write_packet(p).map(drop).map_err(into_io)
            })
        }
        None => {
            let mut out = io::stdout().lock();
            copy(&mut reader, &mut packets, |p| {
                writeln!(out, "{}", text::line(p.timestamp, &p.data))?;
                out.flush()
            })
        }
    };
    let _ = writeln!(stderr, "dutnet: {packets} packets captured");
    match outcome {
        // The reader of our output went away (`| head`, wireshark closed).
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => bail!("the capture stopped: {e}"),
        Ok(()) => Ok(()),
    }
}

/// Hands each packet of the stream to `each` until the daemon ends it.
fn copy<R: io::Read>(
    reader: &mut PcapReader<R>,
    packets: &mut u64,
    mut each: impl FnMut(&pcap_file::pcap::PcapPacket) -> io::Result<()>,
) -> io::Result<()> {
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(into_io)?;
        each(&packet)?;
        *packets += 1;
    }
    Ok(())
}

/// Flushes after every write (a packet is two: its header and its bytes).
struct Flushed<W: Write>(W);

impl<W: Write> Write for Flushed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.0.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// pcap-file's error as the I/O error it wraps (a broken pipe stays one).
fn into_io(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::other(other),
    }
}
