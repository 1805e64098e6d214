//! `control::Request::parse` on arbitrary bytes (a request line on the node
//! daemon's control socket, from any local client): it never panics, and
//! whatever it accepts is written back as a line that parses to the same
//! request.

#![no_main]

use ckpt_core::control::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(request) = Request::parse(bytes) else {
        return;
    };
    let line = request.line();
    assert!(line.ends_with('\n') && line.len() <= ckpt_core::control::REQUEST_BYTES_MAX);
    assert_eq!(Request::parse(line.as_bytes()), Ok(request));
});
