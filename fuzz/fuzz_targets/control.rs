//! The control protocol's request parser, on any line: a request or the
//! error to send back, never a panic. A request that parses is written
//! back as a line that parses as the same request.
#![no_main]

use dutnet::control::protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = protocol::parse_request(line) {
        let again = protocol::parse_request(&protocol::request_line(&request))
            .expect("a request line the client writes parses");
        assert_eq!(again, request);
    }
});
