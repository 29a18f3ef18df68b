//! The daemon's end of the control socket.
//!
//! The server parses each request line and hands the request to the
//! daemon's loop through a channel, with a oneshot for the reply: the
//! daemon's state has one owner and requests are applied one at a time,
//! between reconciles.
//!
//! Connections are bounded per client (uid) and in total, and an idle one
//! is closed after [`CONTROL_LIMITS`]' timeout (see `connections`): a
//! script that opens many and never sends a request cannot keep
//! `dutnet status` out.
use std::{
    io,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use super::protocol::{self, Failure, MAX_LINE, Request, Response};
use crate::{
    connections::{Admission, ConnectionTable, Limits, Slot},
    state::private,
};

/// The bounds of control connections. The CLI sends one request and reads
/// one reply, in milliseconds; 32 connections per uid and 64 in total
/// leave room for scripts running many at once, and a connection that
/// sends no request for 10 s is closed.
pub const CONTROL_LIMITS: Limits = Limits {
    total: 64,
    per_client: 32,
    idle_timeout: std::time::Duration::from_secs(10),
};

/// Who is on the other end, for the per-client cap: the uid
/// (`SO_PEERCRED`); `None` when the kernel does not say.
type Client = Option<u32>;

/// A request waiting for the daemon, with where its response goes.
pub type Pending = (Request, oneshot::Sender<Response>);

#[derive(Debug, thiserror::Error)]
#[error("control socket {path}: {call} failed: {source}")]
pub struct ControlError {
    pub path: PathBuf,
    pub call: &'static str,
    #[source]
    pub source: io::Error,
}

/// The listening socket; dropping it stops accepting and removes the file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// Listens at `path` (mode 0600, or 0660 owned by `group` when given; a
    /// socket left there by a killed daemon is replaced) and forwards every request to `requests`. Must be called
    /// inside a tokio runtime.
    pub fn start(
        path: &Path,
        requests: mpsc::Sender<Pending>,
        group: Option<u32>,
    ) -> Result<Self, ControlError> {
        let listener = bind_private(path, group)?;
        let listener = UnixListener::from_std(listener).map_err(|source| ControlError {
            path: path.to_owned(),
            call: "register with the runtime",
            source,
        })?;
        info!(socket = %path.display(), "control socket listening");
        let task = tokio::spawn(accept_loop(listener, requests));
        Ok(Self {
            path: path.to_owned(),
            task,
        })
    }

    /// Where the socket is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(socket = %self.path.display(), error = %e, "removing the control socket failed");
        }
    }
}

/// Binds in a private (0700) directory, sets the mode, then renames the
/// socket into place: no one can connect in the window between `bind` (which
/// honours the umask only) and `chmod`, and no other thread's umask changes.
fn bind_private(
    path: &Path,
    group: Option<u32>,
) -> Result<std::os::unix::net::UnixListener, ControlError> {
    let fail = |call, source| ControlError {
        path: path.to_owned(),
        call,
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    private_directory(dir, group).map_err(|e| fail("make its directory private", e))?;
    let staging = dir.join(format!(".dutnet-sock-{}", std::process::id()));
    // A leftover of an earlier daemon with the same pid (after a reboot).
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| fail("create a private directory", e))?;
    let bound = (|| {
        let tmp = staging.join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&tmp).map_err(|e| fail("bind", e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail("chmod 0600", e))?;
        if let Some(gid) = group {
            // Members of the group may drive dutnet too; nobody else.
            std::os::unix::fs::chown(&tmp, None, Some(gid))
                .map_err(|e| fail("chown to the socket group", e))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
                .map_err(|e| fail("chmod 0660", e))?;
        }
        listener
            .set_nonblocking(true)
            .map_err(|e| fail("set non-blocking", e))?;
        // Replaces the socket of a daemon that was killed (we hold the pid
        // lock, so it is not running).
        std::fs::rename(&tmp, path).map_err(|e| fail("move into place", e))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    bound
}

/// The socket's directory (the run directory, dutnet's own): 0700, or 0710
/// owned by `group` so its members can reach the socket by name (and list
/// nothing).
fn private_directory(dir: &Path, group: Option<u32>) -> io::Result<()> {
    private::ensure_dir(dir)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(dir, None, Some(gid))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))?;
    }
    Ok(())
}

async fn accept_loop(listener: UnixListener, requests: mpsc::Sender<Pending>) {
    let table = ConnectionTable::new(CONTROL_LIMITS);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let uid = stream.peer_cred().ok().map(|c| c.uid());
                match table.admit(uid) {
                    Admission::Admitted {
                        slot,
                        closed_for_room,
                    } => {
                        if !closed_for_room.is_empty() {
                            debug!(
                                ?uid,
                                "control connections full: closed the longest idle for room"
                            );
                        }
                        let requests = requests.clone();
                        tokio::spawn(async move {
                            serve_connection(stream, &slot, uid, requests).await;
                        });
                    }
                    Admission::Refused => {
                        warn!(
                            ?uid,
                            open = table.open(),
                            "every control connection in the way is busy with a request, closing the new one"
                        );
                    }
                }
            }
            Err(e) => {
                // EMFILE and the like: wait instead of spinning.
                warn!(error = %e, "accepting a control connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers request lines on one connection until the client closes it, it
/// stays idle too long or it is closed to make room.
async fn serve_connection(
    stream: UnixStream,
    slot: &Slot<Client>,
    uid: Client,
    requests: mpsc::Sender<Pending>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX);
        // The whole line within the idle timeout: a client trickling bytes
        // is idle too. Bytes, not a String: a line that is not UTF-8 gets
        // an answer saying so instead of a closed connection.
        match slot
            .next_request((&mut reader).take(limit).read_until(b'\n', &mut line))
            .await
        {
            Some(Ok(0)) => return,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                debug!(error = %e, "control connection closed");
                return;
            }
            None => {
                debug!("control connection idle too long or closed for room");
                return;
            }
        }
        let too_long = !line.ends_with(b"\n") && line.len() >= MAX_LINE;
        let response = if too_long {
            Response::Error(Failure::invalid(format!(
                "the request is longer than {MAX_LINE} bytes"
            )))
        } else if let Ok(line) = std::str::from_utf8(&line) {
            match protocol::parse_request(line.trim_end()) {
                Ok(Request::Capture(capture)) => {
                    // The connection is the capture's from here on.
                    super::capture::serve(reader, write, uid, capture, requests).await;
                    return;
                }
                Ok(request) => forward(request, &requests).await,
                Err(failure) => Response::Error(failure),
            }
        } else {
            Response::Error(Failure::invalid(
                "the request is not UTF-8 text: send one JSON object per line",
            ))
        };
        let mut out = protocol::response_line(response);
        out.push('\n');
        if write.write_all(out.as_bytes()).await.is_err() || too_long {
            return;
        }
    }
}

/// Hands `request` to the daemon's loop and waits for its response (the
/// metrics endpoint asks the same way a control connection does).
pub async fn forward(request: Request, requests: &mpsc::Sender<Pending>) -> Response {
    let stopping = || {
        Response::Error(Failure::failed(
            "dutnet is stopping; run the command again once it is back up",
        ))
    };
    let (reply, response) = oneshot::channel();
    if requests.send((request, reply)).await.is_err() {
        return stopping();
    }
    response.await.unwrap_or_else(|_| stopping())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::control::{
        client::{self, ClientError},
        protocol::{FailureKind, Reply},
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_reach_the_loop_and_replies_come_back() {
        let dir = std::env::temp_dir().join(format!("dutnet-ctl-{}", std::process::id()));
        let path = dir.join("run").join("dutnet.sock");
        let (tx, mut rx) = mpsc::channel::<Pending>(1);
        let server = ControlServer::start(&path, tx, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The stand-in daemon: statuses are fine, everything else is unknown.
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let response = match request {
                    Request::Status { .. } => Response::Ok(Reply::Status { networks: vec![] }),
                    _ => Response::Error(Failure::not_found("nothing here")),
                };
                let _ = reply.send(response);
            }
        });
        let ask = |request: Request| {
            let path = path.clone();
            tokio::task::spawn_blocking(move || client::request(&path, &request))
        };
        let status = ask(Request::Status { network: None }).await.unwrap();
        assert_eq!(status.unwrap(), Reply::Status { networks: vec![] });
        let missing = ask(Request::RemoveDns {
            network: None,
            hostname: "x".into(),
        })
        .await
        .unwrap()
        .unwrap_err();
        assert_eq!(missing.failure_kind(), Some(FailureKind::NotFound));
        drop(server);
        assert!(!path.exists(), "the socket outlived the server");
        let gone = ask(Request::Status { network: None }).await.unwrap();
        assert!(
            matches!(gone, Err(ClientError::NotRunning { .. })),
            "{gone:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
