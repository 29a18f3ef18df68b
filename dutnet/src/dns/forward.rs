//! Asking the upstream resolvers (`dns_servers`).
//!
//! One forwarded question has one time budget, the configured timeout.
//! Upstreams are asked in order: upstream `i` is asked at `i * timeout / n`
//! unless the ones before it already failed outright (ICMP unreachable,
//! REFUSED), in which case it is asked at once. Earlier upstreams keep
//! their chance: the first valid answer from any asked upstream wins, so a
//! slow first resolver is not wasted. When the budget runs out the caller
//! answers SERVFAIL.
//!
//! Spoofing resistance (RFC 5452 §9): each attempt uses a fresh random id
//! (hickory's `Message::query`, backed by `rand`'s thread RNG) and a fresh
//! socket on a kernel-chosen ephemeral port, connected to the upstream so
//! the kernel drops datagrams from any other source; an answer must also
//! echo our id and question or it is ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::handler::EDNS_PAYLOAD;

/// Why no upstream gave a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Every upstream failed or stayed silent within the budget.
    #[error("no answer from {asked} of {total} upstream(s) within {timeout:?}")]
    NoAnswer {
        asked: usize,
        total: usize,
        timeout: Duration,
    },
    /// The query could not be encoded (a name hickory cannot write back).
    #[error("cannot encode the upstream query: {source}")]
    Encode {
        #[source]
        source: hickory_proto::ProtoError,
    },
}

/// Why one upstream attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{op} failed: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("TCP answer did not match our query")]
    TcpMismatch,
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> AttemptError {
    move |source| AttemptError::Io { op, source }
}

/// The upstreams of one network and the time budget per question.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    /// A forwarder over `upstreams` (in order of preference; non-empty in
    /// practice, an empty list just times out).
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self { upstreams, timeout }
    }

    /// Resolves one question; the answer's id and question are ours, not the
    /// client's: the caller rewrites them.
    pub async fn resolve(
        &self,
        question: &Query,
        dnssec_ok: bool,
        checking_disabled: bool,
    ) -> Result<Message, ForwardError> {
        let total = self.upstreams.len();
        let deadline = Instant::now() + self.timeout;
        let slice = self.timeout / u32::try_from(total.max(1)).unwrap_or(u32::MAX);
        let mut inflight = FuturesUnordered::new();
        let mut next = 0usize;
        let mut next_launch = Instant::now();
        // A REFUSED is about us, not the name: try the next upstream, but
        // pass it on if nobody does better.
        let mut fallback: Option<Message> = None;

        loop {
            if next < total && (inflight.is_empty() || Instant::now() >= next_launch) {
                let upstream = self.upstreams[next];
                let request = build_request(question, dnssec_ok, checking_disabled);
                let bytes = request
                    .to_vec()
                    .map_err(|source| ForwardError::Encode { source })?;
                inflight.push(async move {
                    let result = ask(upstream, &bytes, &request).await;
                    (upstream, result)
                });
                next += 1;
                next_launch = Instant::now() + slice;
            }
            let no_answer = || ForwardError::NoAnswer {
                asked: next,
                total,
                timeout: self.timeout,
            };
            if inflight.is_empty() {
                return fallback.ok_or_else(no_answer);
            }
            tokio::select! {
                Some((upstream, result)) = inflight.next() => match result {
                    Ok(answer) if answer.metadata.response_code == ResponseCode::Refused => {
                        tracing::debug!(%upstream, "upstream refused, trying the next one");
                        fallback = Some(answer);
                    }
                    Ok(answer) => return Ok(answer),
                    Err(error) => {
                        tracing::debug!(%upstream, %error, "upstream failed");
                        // Nothing pending any more: ask the next at once.
                        next_launch = Instant::now();
                    }
                },
                () = tokio::time::sleep_until(next_launch), if next < total => {}
                () = tokio::time::sleep_until(deadline) => {
                    return fallback.ok_or_else(no_answer);
                }
            }
        }
    }
}

/// The query we send: our own random id, RD set (we are a forwarder, the
/// upstream recurses), the client's DO/CD bits, and EDNS so a normal
/// answer comes back over UDP without a TCP round trip.
fn build_request(question: &Query, dnssec_ok: bool, checking_disabled: bool) -> Message {
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.metadata.checking_disabled = checking_disabled;
    request.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(dnssec_ok);
    request.set_edns(edns);
    request
}

/// Whether `answer` answers `request`: response bit, id and the question
/// (name case-insensitively, type and class).
fn matches(request: &Message, answer: &Message) -> bool {
    answer.metadata.message_type == MessageType::Response
        && answer.metadata.id == request.metadata.id
        && answer.queries.len() == 1
        && request.queries.first().is_some_and(|q| {
            let a = &answer.queries[0];
            a.name() == q.name()
                && a.query_type() == q.query_type()
                && a.query_class() == q.query_class()
        })
}

/// One upstream over UDP, falling back to TCP when the answer is truncated
/// (RFC 7766 §5). Runs until a matching answer or an error; the caller
/// bounds it in time.
async fn ask(
    upstream: SocketAddr,
    bytes: &[u8],
    request: &Message,
) -> Result<Message, AttemptError> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io("bind"))?;
    socket.connect(upstream).await.map_err(io("connect"))?;
    socket.send(bytes).await.map_err(io("send"))?;
    let mut buf = vec![0u8; 65_535];
    loop {
        // A connected UDP socket reports an ICMP port unreachable here as
        // ECONNREFUSED, which ends this attempt early.
        let n = socket.recv(&mut buf).await.map_err(io("recv"))?;
        let answer = match Message::from_vec(&buf[..n]) {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(%upstream, %error, "undecodable upstream answer ignored");
                continue;
            }
        };
        if !matches(request, &answer) {
            tracing::warn!(
                %upstream,
                expected_id = request.metadata.id,
                got_id = answer.metadata.id,
                "upstream answer does not match the query (late or spoofed), ignored"
            );
            continue;
        }
        if answer.metadata.truncation {
            return ask_tcp(upstream, bytes, request).await;
        }
        return Ok(answer);
    }
}

async fn ask_tcp(
    upstream: SocketAddr,
    bytes: &[u8],
    request: &Message,
) -> Result<Message, AttemptError> {
    let mut stream = TcpStream::connect(upstream)
        .await
        .map_err(io("tcp connect"))?;
    let len = u16::try_from(bytes.len()).map_err(|_| AttemptError::TcpMismatch)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(io("tcp write"))?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io("tcp read"))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.map_err(io("tcp read"))?;
    match Message::from_vec(&buf) {
        Ok(answer) if matches(request, &answer) => Ok(answer),
        _ => Err(AttemptError::TcpMismatch),
    }
}

/// Splits the configured upstreams into usable ones and ones that would
/// send queries back to dutnet (RFC 5452-style loop protection).
///
/// An upstream loops if it has our port and is the listen address, an
/// unspecified address, or any non-loopback address of this host (another
/// network's gateway: its dutnet may forward back to us). Loopback
/// addresses are not dutnet's (it only listens on gateway IPs), so a host
/// resolver such as systemd-resolved's 127.0.0.53 stays usable, unless a
/// test listens on loopback itself, which the first rule covers.
pub fn split_looping(
    upstreams: &[SocketAddr],
    listen: SocketAddr,
    host_addrs: &[IpAddr],
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    upstreams.iter().partition(|up| {
        let ip = up.ip();
        let loops = up.port() == listen.port()
            && (ip == listen.ip()
                || ip.is_unspecified()
                || (!ip.is_loopback() && host_addrs.contains(&ip)));
        !loops
    })
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::RecordType;

    use super::*;
    use crate::dns::fixtures::question;

    fn q(name: &str) -> Query {
        question(name, RecordType::A)
    }

    #[test]
    fn requests_get_fresh_ids_and_edns() {
        let ids: std::collections::HashSet<u16> = (0..64)
            .map(|_| build_request(&q("a."), true, false).metadata.id)
            .collect();
        assert!(ids.len() > 48, "ids look predictable: {ids:?}");
        let r = build_request(&q("a."), true, true);
        assert!(r.metadata.recursion_desired);
        assert!(r.metadata.checking_disabled);
        let edns = r.edns.as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
    }

    #[test]
    fn answers_must_match_id_and_question() {
        let request = build_request(&q("www.example."), false, false);
        let mut answer = Message::response(request.metadata.id, OpCode::Query);
        answer.add_query(q("WWW.example."));
        assert!(matches(&request, &answer));

        let mut wrong_id = answer.clone();
        wrong_id.metadata.id = request.metadata.id.wrapping_add(1);
        assert!(!matches(&request, &wrong_id));

        let mut wrong_name = answer.clone();
        wrong_name.queries = vec![q("evil.example.")];
        assert!(!matches(&request, &wrong_name));

        let mut wrong_type = answer.clone();
        wrong_type.queries = vec![question("www.example.", RecordType::AAAA)];
        assert!(!matches(&request, &wrong_type));

        let mut not_response = answer.clone();
        not_response.metadata.message_type = MessageType::Query;
        assert!(!matches(&request, &not_response));

        let mut no_question = answer;
        no_question.queries.clear();
        assert!(!matches(&request, &no_question));
    }

    #[test]
    fn looping_upstreams_are_split_off() {
        let listen: SocketAddr = "192.168.100.1:53".parse().unwrap();
        let host: Vec<IpAddr> = vec![
            "192.168.100.1".parse().unwrap(),
            "10.26.28.5".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ];
        let ups: Vec<SocketAddr> = [
            "8.8.8.8:53",
            "192.168.100.1:53",
            "10.26.28.5:53",
            "0.0.0.0:53",
            "127.0.0.53:53",
            "127.0.0.1:53",
            "10.26.28.5:5353",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let (ok, looping) = split_looping(&ups, listen, &host);
        let s = |v: &[SocketAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            s(&ok),
            [
                "8.8.8.8:53",
                "127.0.0.53:53",
                "127.0.0.1:53",
                "10.26.28.5:5353"
            ]
        );
        assert_eq!(
            s(&looping),
            ["192.168.100.1:53", "10.26.28.5:53", "0.0.0.0:53"]
        );
        // Listening on loopback (tests): loopback with our port loops too.
        let listen: SocketAddr = "127.0.0.1:5300".parse().unwrap();
        let (ok, looping) = split_looping(&["127.0.0.1:5300".parse().unwrap()], listen, &host);
        assert!(ok.is_empty());
        assert_eq!(looping.len(), 1);
    }
}
