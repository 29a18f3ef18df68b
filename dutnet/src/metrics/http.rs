//! The `/metrics` endpoint: a minimal HTTP/1.1 responder on the daemon's
//! runtime (one request per connection, then close).
//!
//! Prometheus only ever sends `GET /metrics`; anything else gets a short
//! error. Bounds keep a stray client from costing the daemon much: a
//! request head of at most [`MAX_REQUEST`] bytes read within
//! [`REQUEST_TIMEOUT`], and at most [`MAX_CONNECTIONS`] at once (more are
//! closed at once).
use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use super::exposition::{self, CONTENT_TYPE};
use crate::control::{Reply, Request, Response, server::Pending};

/// The longest request head read (a scrape's is a few hundred bytes).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a client may take to send its request and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error(
    "metrics endpoint {addr}: {call} failed: {source}; pick a free ADDR:PORT for metrics_listen / --metrics-listen, or leave it out"
)]
pub struct MetricsError {
    pub addr: SocketAddr,
    pub call: &'static str,
    #[source]
    pub source: io::Error,
}

/// The listening endpoint; dropping it stops serving.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `addr` and answers each scrape with a `stats` snapshot
    /// asked of the daemon's loop through `requests`.
    pub async fn start(
        addr: SocketAddr,
        requests: mpsc::Sender<Pending>,
    ) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError {
                addr,
                call: "bind",
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(addr);
        info!(%addr, "metrics endpoint listening on /metrics");
        let task = tokio::spawn(accept_loop(listener, requests));
        Ok(Self { addr, task })
    }

    /// Where it listens (the port the kernel picked for port 0).
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, requests: mpsc::Sender<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Over the limit: close at once rather than queue.
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    debug!(%peer, "metrics connection refused: too many at once");
                    continue;
                };
                let requests = requests.clone();
                tokio::spawn(async move {
                    let served = tokio::time::timeout(REQUEST_TIMEOUT, serve(stream, &requests));
                    if served.await.is_err() {
                        debug!(%peer, "metrics client too slow; closed");
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                warn!(error = %e, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What one request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Metrics,
    /// Status line and body of an error answer.
    Refuse(&'static str, &'static str),
}

/// Reads the request head: up to the blank line, at most [`MAX_REQUEST`].
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if head.len() > MAX_REQUEST {
            return Ok(None);
        }
    }
    Ok(Some(head))
}

fn parse(head: Option<&[u8]>) -> Ask {
    let Some(head) = head else {
        return Ask::Refuse(
            "431 Request Header Fields Too Large",
            "request too large or incomplete\n",
        );
    };
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let (method, target, version) = (words.next(), words.next(), words.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Ask::Refuse("400 Bad Request", "not an HTTP/1.x request\n");
    }
    // Query strings are ignored: Prometheus may add some.
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    match (method, path) {
        (Some("GET"), Some("/metrics")) => Ask::Metrics,
        (Some("GET"), _) => Ask::Refuse("404 Not Found", "only /metrics is served\n"),
        _ => Ask::Refuse("405 Method Not Allowed", "only GET /metrics is served\n"),
    }
}

async fn serve(mut stream: TcpStream, requests: &mpsc::Sender<Pending>) {
    let head = match read_head(&mut stream).await {
        Ok(head) => head,
        Err(e) => {
            debug!(error = %e, "metrics connection closed");
            return;
        }
    };
    let (status, content_type, body) = match parse(head.as_deref()) {
        Ask::Refuse(status, body) => (status, "text/plain; charset=utf-8", body.to_owned()),
        Ask::Metrics => match crate::control::server::forward(Request::Stats, requests).await {
            Response::Ok(Reply::Stats {
                interfaces,
                networks,
                uptime_seconds,
                ..
            }) => (
                "200 OK",
                CONTENT_TYPE,
                exposition::render(&interfaces, &networks, uptime_seconds),
            ),
            Response::Ok(_) => (
                "500 Internal Server Error",
                "text/plain; charset=utf-8",
                "the daemon answered stats with another reply\n".to_owned(),
            ),
            Response::Error(failure) => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                format!("{}\n", failure.message),
            ),
        },
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(answer.as_bytes()).await {
        debug!(error = %e, "metrics client went away");
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            parse(Some(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")),
            Ask::Metrics
        );
        assert_eq!(
            parse(Some(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")),
            Ask::Metrics
        );
        for (head, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
            (b"POST /metrics HTTP/1.1\r\n\r\n", "405"),
            (b"hello\r\n\r\n", "400"),
        ] {
            match parse(Some(head)) {
                Ask::Refuse(s, _) => assert!(s.starts_with(status), "{s}"),
                Ask::Metrics => panic!("{head:?} was served"),
            }
        }
        assert!(matches!(parse(None), Ask::Refuse(s, _) if s.starts_with("431")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_gets_the_daemons_stats_as_openmetrics() {
        let (tx, mut rx) = mpsc::channel::<Pending>(1);
        tokio::spawn(async move {
            while let Some((_, reply)) = rx.recv().await {
                let _ = reply.send(Response::Ok(Reply::Stats {
                    datapath: "nft".into(),
                    interfaces: vec![],
                    networks: vec![],
                    uptime_seconds: 42,
                }));
            }
        });
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), tx)
            .await
            .unwrap();
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("dutnet_uptime_seconds 42"), "{answer}");
        assert!(answer.ends_with("# EOF\n"), "{answer}");

        // A head that never ends is cut at MAX_REQUEST, without asking the
        // daemon.
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        let endless = vec![b'x'; MAX_REQUEST + 1];
        stream.write_all(&endless).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    }
}
