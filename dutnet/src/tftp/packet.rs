//! TFTP packets (RFC 1350 5) and option negotiation (RFC 2347): blksize
//! (RFC 2348), timeout and tsize (RFC 2349), windowsize (RFC 7440). Pure:
//! bytes in, values out, and back.

/// The block size without a `blksize` option (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;
/// RFC 2348: 8 to 65464 octets.
pub const MIN_BLKSIZE: u16 = 8;
pub const MAX_BLKSIZE: u16 = 65464;
/// RFC 7440 allows up to 65535 blocks in flight; more than this buys
/// nothing on a lab link and costs memory per transfer.
pub const MAX_WINDOWSIZE: u16 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Rrq = 1,
    Wrq = 2,
    Data = 3,
    Ack = 4,
    Error = 5,
    Oack = 6,
}

/// RFC 1350 5 and RFC 2347 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    IllegalOperation = 4,
    /// RFC 2347: the client refuses the server's options.
    OptionsRefused = 8,
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub write: bool,
    pub filename: String,
    /// Lowercased: `octet`, `netascii` or `mail`.
    pub mode: String,
    pub options: RequestedOptions,
}

/// The options a request carried that this server knows; unknown ones are
/// ignored, as RFC 2347 requires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestedOptions {
    pub blksize: Option<u16>,
    pub timeout: Option<u8>,
    /// A read request sends 0; the server answers with the file size.
    pub tsize: bool,
    pub windowsize: Option<u16>,
}

/// What a client may send once a transfer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ack(u16),
    Error { code: u16, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than an opcode, or a string without its NUL.
    Truncated,
    /// Not a packet a client sends at this point.
    UnexpectedOpcode(u16),
    /// A request without a file name or mode.
    MissingField,
    NotUtf8,
}

fn opcode(bytes: &[u8]) -> Result<u16, ParseError> {
    match bytes {
        [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(ParseError::Truncated),
    }
}

/// Splits NUL-terminated strings; the last must be terminated too.
fn strings(bytes: &[u8]) -> Result<Vec<&str>, ParseError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.last() != Some(&0) {
        return Err(ParseError::Truncated);
    }
    bytes[..bytes.len() - 1]
        .split(|b| *b == 0)
        .map(|s| std::str::from_utf8(s).map_err(|_| ParseError::NotUtf8))
        .collect()
}

/// An RRQ or WRQ.
pub fn parse_request(bytes: &[u8]) -> Result<Request, ParseError> {
    let write = match opcode(bytes)? {
        1 => false,
        2 => true,
        other => return Err(ParseError::UnexpectedOpcode(other)),
    };
    let fields = strings(&bytes[2..])?;
    let (filename, mode) = match fields.as_slice() {
        [f, m, ..] if !f.is_empty() && !m.is_empty() => (*f, *m),
        _ => return Err(ParseError::MissingField),
    };
    let mut options = RequestedOptions::default();
    for pair in fields[2..].chunks(2) {
        let [name, value] = pair else { break };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "blksize" => {
                options.blksize = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= u32::from(MIN_BLKSIZE))
                    .map(|n| n.min(u32::from(MAX_BLKSIZE)) as u16);
            }
            "timeout" => {
                options.timeout = value.parse::<u8>().ok().filter(|n| *n >= 1);
            }
            "tsize" => options.tsize = value.parse::<u64>().is_ok(),
            "windowsize" => {
                options.windowsize = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .map(|n| n.min(u32::from(MAX_WINDOWSIZE)) as u16);
            }
            _ => {}
        }
    }
    Ok(Request {
        write,
        filename: filename.to_owned(),
        mode: mode.to_ascii_lowercase(),
        options,
    })
}

/// An ACK or ERROR from the client of a running read transfer.
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, ParseError> {
    match opcode(bytes)? {
        4 => match bytes.get(2..4) {
            Some([a, b]) => Ok(Reply::Ack(u16::from_be_bytes([*a, *b]))),
            _ => Err(ParseError::Truncated),
        },
        5 => {
            let code = match bytes.get(2..4) {
                Some([a, b]) => u16::from_be_bytes([*a, *b]),
                _ => return Err(ParseError::Truncated),
            };
            // A missing NUL is forgiven: the message is only logged.
            let text = bytes.get(4..).unwrap_or_default();
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            Ok(Reply::Error {
                code,
                message: String::from_utf8_lossy(text).into_owned(),
            })
        }
        other => Err(ParseError::UnexpectedOpcode(other)),
    }
}

/// The options the server accepts, as it will run the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    /// Seconds; `None`: the server's own retransmission timeout.
    pub timeout: Option<u8>,
    /// The file size, when the client asked (tsize).
    pub tsize: Option<u64>,
    /// An OACK is due: the client sent at least one known option.
    pub oack: bool,
}

impl Negotiated {
    pub fn new(requested: &RequestedOptions, file_size: u64) -> Self {
        Self {
            blksize: requested.blksize.unwrap_or(DEFAULT_BLKSIZE),
            windowsize: requested.windowsize.unwrap_or(1),
            timeout: requested.timeout,
            tsize: requested.tsize.then_some(file_size),
            oack: requested.blksize.is_some()
                || requested.windowsize.is_some()
                || requested.timeout.is_some()
                || requested.tsize,
        }
    }
}

/// OACK with exactly the options the client asked for (RFC 2347).
pub fn oack(n: &Negotiated, requested: &RequestedOptions) -> Vec<u8> {
    let mut out = (Opcode::Oack as u16).to_be_bytes().to_vec();
    let mut put = |name: &str, value: String| {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    };
    if requested.blksize.is_some() {
        put("blksize", n.blksize.to_string());
    }
    if let Some(t) = n.timeout {
        put("timeout", t.to_string());
    }
    if let Some(size) = n.tsize {
        put("tsize", size.to_string());
    }
    if requested.windowsize.is_some() {
        put("windowsize", n.windowsize.to_string());
    }
    out
}

/// A DATA packet header followed by `data`.
pub fn data(block: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + data.len());
    out.extend_from_slice(&(Opcode::Data as u16).to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(data);
    out
}

pub fn error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut out = (Opcode::Error as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&(code as u16).to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rrq(fields: &[&str]) -> Vec<u8> {
        let mut out = vec![0, 1];
        for f in fields {
            out.extend_from_slice(f.as_bytes());
            out.push(0);
        }
        out
    }

    #[test]
    fn request_with_every_option() {
        let r = parse_request(&rrq(&[
            "boot/pxelinux.0",
            "OCTET",
            "blksize",
            "1468",
            "tsize",
            "0",
            "windowsize",
            "8",
            "timeout",
            "3",
            "unknown",
            "x",
        ]))
        .unwrap();
        assert!(!r.write);
        assert_eq!(r.filename, "boot/pxelinux.0");
        assert_eq!(r.mode, "octet");
        assert_eq!(
            r.options,
            RequestedOptions {
                blksize: Some(1468),
                timeout: Some(3),
                tsize: true,
                windowsize: Some(8),
            }
        );
    }

    #[test]
    fn out_of_range_options_are_clamped_or_ignored() {
        let r = parse_request(&rrq(&[
            "f",
            "octet",
            "blksize",
            "70000",
            "windowsize",
            "0",
            "timeout",
            "0",
        ]))
        .unwrap();
        assert_eq!(r.options.blksize, Some(MAX_BLKSIZE));
        assert_eq!(r.options.windowsize, None);
        assert_eq!(r.options.timeout, None);
        let r = parse_request(&rrq(&["f", "octet", "blksize", "7"])).unwrap();
        assert_eq!(r.options.blksize, None);
    }

    #[test]
    fn malformed_requests() {
        assert_eq!(parse_request(&[0]), Err(ParseError::Truncated));
        assert_eq!(
            parse_request(&[0, 1, b'f', 0, b'o']),
            Err(ParseError::Truncated)
        );
        assert_eq!(parse_request(&rrq(&["f"])), Err(ParseError::MissingField));
        assert_eq!(
            parse_request(&rrq(&["", "octet"])),
            Err(ParseError::MissingField)
        );
        assert_eq!(
            parse_request(&[0, 3, 0, 1]),
            Err(ParseError::UnexpectedOpcode(3))
        );
    }

    #[test]
    fn oack_lists_only_requested_options() {
        let requested = RequestedOptions {
            blksize: Some(1468),
            tsize: true,
            ..RequestedOptions::default()
        };
        let n = Negotiated::new(&requested, 20_000_000);
        assert!(n.oack);
        assert_eq!(
            oack(&n, &requested),
            b"\x00\x06blksize\x001468\x00tsize\x0020000000\x00"
        );
        let plain = Negotiated::new(&RequestedOptions::default(), 5);
        assert!(!plain.oack);
        assert_eq!(plain.blksize, 512);
    }

    #[test]
    fn replies_parse() {
        assert_eq!(parse_reply(&[0, 4, 1, 2]), Ok(Reply::Ack(0x0102)));
        assert_eq!(
            parse_reply(b"\x00\x05\x00\x08no\x00"),
            Ok(Reply::Error {
                code: 8,
                message: "no".into()
            })
        );
        assert_eq!(parse_reply(&[0, 4, 1]), Err(ParseError::Truncated));
        assert_eq!(data(258, b"ab"), [0, 3, 1, 2, b'a', b'b']);
        assert_eq!(error(ErrorCode::FileNotFound, "x"), [0, 5, 0, 1, b'x', 0]);
    }

    proptest! {
        /// Any bytes: parsing never panics.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_request(&bytes);
            let _ = parse_reply(&bytes);
        }

        /// A request built from any name and option values parses back.
        #[test]
        fn requests_round_trip(
            name in "[a-zA-Z0-9/._-]{1,100}",
            blksize in 8u32..=65464,
            window in 1u32..=64,
        ) {
            let bytes = rrq(&[&name, "octet", "blksize", &blksize.to_string(), "windowsize", &window.to_string()]);
            let r = parse_request(&bytes).unwrap();
            prop_assert_eq!(r.filename, name);
            prop_assert_eq!(r.options.blksize, Some(blksize as u16));
            prop_assert_eq!(r.options.windowsize, Some(window as u16));
        }
    }
}
