//! The node daemon's control socket on arbitrary bytes (from any local
//! client): `control::Request::parse` of a request line, and
//! `frame::ForwardRequest::decode` of a `forward` request's change (the same
//! bytes a `Forward` message carries to the primary). Neither panics;
//! whatever either accepts is written back as bytes that read the same.

#![no_main]

use ckpt_core::control::Request;
use ckpt_core::frame::ForwardRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(change) = ForwardRequest::decode(bytes) {
        let mut again = Vec::new();
        change.encode(&mut again);
        assert_eq!(again, bytes);
    }
    let Ok(request) = Request::parse(bytes) else {
        return;
    };
    let line = request.line();
    assert!(line.ends_with('\n') && line.len() <= ckpt_core::control::REQUEST_BYTES_MAX);
    assert_eq!(Request::parse(line.as_bytes()), Ok(request));
});
