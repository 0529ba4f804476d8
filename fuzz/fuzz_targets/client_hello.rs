//! The ClientHello parser of TLS passthrough listeners (the first bytes a stranger
//! sends; seeds: ClientHellos from `make fuzz-seeds`). Never panics, and agrees with
//! itself as the buffer grows, which `read_client_hello` relies on when it re-parses
//! after every read: once a prefix is a whole ClientHello more bytes do not change it,
//! and once a prefix is an error it stays one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_proxy::fuzzing::client_hello;

fuzz_target!(|data: &[u8]| {
    let whole = client_hello(data);
    // At most 32 prefixes, so that long inputs stay cheap.
    let step = (data.len() / 32).max(1);
    for end in (0..data.len()).step_by(step) {
        match client_hello(&data[..end]) {
            Ok(None) => {}
            Ok(Some(hello)) => assert_eq!(
                whole,
                Ok(Some(hello)),
                "a whole ClientHello in the first {end} bytes changed with more bytes"
            ),
            Err(e) => assert!(
                whole.is_err(),
                "the first {end} bytes are an error ({e}) but all {} are not",
                data.len()
            ),
        }
    }
});
