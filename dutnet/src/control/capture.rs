//! The one streaming request: a packet capture.
//!
//! The client sends a `capture` request line as usual. The daemon plans it
//! ([`CapturePlan`]: interface and filter) and the server checks the
//! client may capture, takes one of [`MAX_CAPTURES`] places and opens the
//! capture, compiling the filter. Any failure is one error line, as for
//! every request, and the connection closes. Otherwise the answer is the
//! `{"reply":"capture",...}` line, then the capture as a pcap stream
//! (libpcap's savefile format, microsecond times, Ethernet) until it ends:
//! the daemon closes the connection after `count` packets, the duration,
//! [`MAX_BYTES`], or when the client closes its end. Nothing follows the
//! stream: its end is the connection's.
use std::{io::Write as _, time::Duration};

use tokio::{
    io::{AsyncWriteExt as _, BufReader},
    net::unix::{OwnedReadHalf, OwnedWriteHalf},
    sync::mpsc,
};
use tracing::{info, warn};

use super::{
    protocol::{self, CapturePlan, CaptureRequest, Failure, Reply, Request, Response},
    server::{Pending, forward},
};
use crate::capture::{
    MAX_BYTES, MAX_CAPTURES,
    live::{Live, Place},
};

/// Serves a capture request on its connection, to the capture's end.
pub(super) async fn serve(
    reader: BufReader<OwnedReadHalf>,
    mut write: OwnedWriteHalf,
    uid: Option<u32>,
    request: CaptureRequest,
    requests: mpsc::Sender<Pending>,
) {
    let refused = |failure: Failure| {
        let mut line = protocol::response_line(Response::Error(failure));
        line.push('\n');
        line
    };
    let plan = match forward(Request::Capture(request.clone()), &requests).await {
        Response::Ok(Reply::Capture(plan)) => plan,
        Response::Ok(_) => return,
        Response::Error(failure) => {
            let _ = write.write_all(refused(failure).as_bytes()).await;
            return;
        }
    };
    if uid != Some(0) && !plan.any_user {
        let failure = Failure::denied(format!(
            "only root may capture on network `{}`; run as root, or set `enable_tcpdump: true` in its config to let every user of the control socket capture",
            plan.network
        ));
        let _ = write.write_all(refused(failure).as_bytes()).await;
        return;
    }
    let Some(place) = Place::claim() else {
        let failure = Failure::invalid(format!(
            "{MAX_CAPTURES} captures run already, the most one dutnet runs; end one first"
        ));
        let _ = write.write_all(refused(failure).as_bytes()).await;
        return;
    };
    let Ok(stream) = reader.into_inner().reunite(write) else {
        return;
    };
    let Ok(stream) = stream.into_std() else {
        return;
    };
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let runtime = tokio::runtime::Handle::current();
    // A thread of its own, not the runtime's blocking pool: the runtime
    // would wait for a capture of up to an hour when the daemon stops.
    let spawned = std::thread::Builder::new()
        .name("dutnet-capture".to_owned())
        .spawn(move || {
            let _place = place;
            stream_capture(&stream, &plan, &request, &runtime, &requests, uid);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "starting a capture thread failed");
    }
}

fn stream_capture(
    mut stream: &std::os::unix::net::UnixStream,
    plan: &CapturePlan,
    request: &CaptureRequest,
    runtime: &tokio::runtime::Handle,
    requests: &mpsc::Sender<Pending>,
    uid: Option<u32>,
) {
    let mut live = match Live::open(&plan.interface, &plan.filter) {
        Ok(live) => live,
        Err(e) => {
            let kind = match e {
                crate::capture::live::CaptureError::Filter { .. } => Failure::invalid,
                crate::capture::live::CaptureError::Open { .. } => Failure::failed,
            };
            let mut line = protocol::response_line(Response::Error(kind(e.to_string())));
            line.push('\n');
            let _ = stream.write_all(line.as_bytes());
            return;
        }
    };
    let mut line = protocol::response_line(Response::Ok(Reply::Capture(plan.clone())));
    line.push('\n');
    if stream.write_all(line.as_bytes()).is_err() {
        return;
    }
    info!(network = %plan.network, interface = %plan.interface, filter = %plan.filter, ?uid, "capture started");
    // Only a DUT's upstream scope changes while it runs (its flows).
    let follows_flows = request.upstream && request.dut.is_some();
    let refresh = || {
        if !follows_flows {
            return None;
        }
        match runtime.block_on(forward(Request::Capture(request.clone()), requests)) {
            Response::Ok(Reply::Capture(again)) => Some(again.filter),
            _ => None,
        }
    };
    let (end, packets) = live.run(
        stream,
        plan.count,
        Duration::from_millis(plan.duration_ms),
        refresh,
    );
    info!(network = %plan.network, interface = %plan.interface, packets, end = ?end, max_bytes = MAX_BYTES, "capture ended");
}
