//! The CLI's end of the control socket: one request, one reply.
use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::protocol::{
    self, CapturePlan, CaptureRequest, Failure, FailureKind, Reply, Request, Response,
    ResponseFrame,
};

/// How long a reply may take; the daemon answers between reconciles, which
/// take milliseconds unless the kernel is stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "dutnet is not running (no daemon at {}); start it with `dutnet load FILE`",
        socket.display()
    )]
    NotRunning { socket: PathBuf },
    #[error(
        "permission denied on the control socket {}; run this command as root (e.g. with sudo)",
        socket.display()
    )]
    PermissionDenied { socket: PathBuf },
    #[error("control socket {}: {call} failed: {source}", socket.display())]
    Io {
        socket: PathBuf,
        call: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "the daemon's answer is not understood ({reason}); use the dutnet binary of the running daemon"
    )]
    Protocol { reason: String },
    /// The daemon refused or could not carry out the request.
    #[error("{}", .0.message)]
    Refused(Failure),
}

impl ClientError {
    /// The kind of refusal, for the exit code.
    #[must_use]
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            Self::Refused(f) => Some(f.kind),
            _ => None,
        }
    }
}

/// Sends `request` to the daemon listening at `socket` and returns its reply.
pub fn request(socket: &Path, request: &Request) -> Result<Reply, ClientError> {
    let (_, reply) = send(socket, request)?;
    reply
}

/// Starts a capture: the daemon's plan and the pcap stream that follows it
/// (see `control::capture`); the stream ends when the capture does.
pub fn capture(
    socket: &Path,
    request: &CaptureRequest,
) -> Result<(CapturePlan, BufReader<UnixStream>), ClientError> {
    let (reader, reply) = send(socket, &Request::Capture(request.clone()))?;
    match reply? {
        Reply::Capture(plan) => {
            // A capture may see nothing for a long time.
            reader
                .get_ref()
                .set_read_timeout(None)
                .map_err(|source| ClientError::Io {
                    socket: socket.to_owned(),
                    call: "clear the timeout",
                    source,
                })?;
            Ok((plan, reader))
        }
        other => Err(ClientError::Protocol {
            reason: format!("a capture was answered with {other:?}"),
        }),
    }
}

/// Sends `request` and reads the reply line; the reader holds what follows it.
fn send(
    socket: &Path,
    request: &Request,
) -> Result<(BufReader<UnixStream>, Result<Reply, ClientError>), ClientError> {
    let stream = UnixStream::connect(socket).map_err(|source| match source.kind() {
        // No socket, or one a killed daemon left behind.
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
            socket: socket.to_owned(),
        },
        io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            socket: socket.to_owned(),
        },
        _ => ClientError::Io {
            socket: socket.to_owned(),
            call: "connect",
            source,
        },
    })?;
    let io = |call| {
        move |source| ClientError::Io {
            socket: socket.to_owned(),
            call,
            source,
        }
    };
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(io("set a timeout"))?;
    let mut line = protocol::request_line(request);
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .map_err(io("send the request"))?;
    let mut answer = String::new();
    let mut reader = BufReader::new(stream);
    reader
        .read_line(&mut answer)
        .map_err(io("read the reply"))?;
    Ok((reader, parse_response(&answer)))
}

fn parse_response(line: &str) -> Result<Reply, ClientError> {
    if line.is_empty() {
        return Err(ClientError::Protocol {
            reason: "the daemon closed the connection without answering".to_owned(),
        });
    }
    let frame: ResponseFrame = serde_json::from_str(line).map_err(|e| ClientError::Protocol {
        reason: e.to_string(),
    })?;
    match frame.response {
        Response::Ok(reply) => Ok(reply),
        Response::Error(failure) => Err(ClientError::Refused(failure)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_means_not_running() {
        let socket =
            std::env::temp_dir().join(format!("dutnet-no-such-{}.sock", std::process::id()));
        let err = request(&socket, &Request::Status { network: None }).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
        assert!(err.to_string().contains("dutnet load"), "{err}");
    }

    #[test]
    fn a_stale_socket_means_not_running() {
        let dir = std::env::temp_dir().join(format!("dutnet-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("dutnet.sock");
        let _ = std::fs::remove_file(&socket);
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let err = request(&socket, &Request::Status { network: None }).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refusals_keep_their_kind() {
        let err = parse_response(
            r#"{"version":1,"response":{"error":{"kind":"not_found","message":"no lease"}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.failure_kind(), Some(FailureKind::NotFound));
        assert_eq!(err.to_string(), "no lease");
        assert!(matches!(
            parse_response(""),
            Err(ClientError::Protocol { .. })
        ));
    }
}
