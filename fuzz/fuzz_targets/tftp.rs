//! The TFTP server's packet parsers, on any datagram: a request (with the
//! options it negotiates) or a reply from a client, or the reason it is
//! neither; never a panic. A request's negotiated options encode.
#![no_main]

use dutnet::tftp::packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = packet::parse_request(data) {
        let negotiated = packet::Negotiated::new(&request.options, 1 << 20);
        let _ = packet::oack(&negotiated, &request.options);
    }
    let _ = packet::parse_reply(data);
});
