//! The remote (TLS) stream decoder: bytes as a cluster or an attacker sends them, in chunks of
//! the sizes the input picks. Whatever arrives, the reader returns messages or an error, never
//! panics, and never holds more than the message cap plus one chunk.
#![no_main]

use kubemaker::wire::frame::{DEFAULT_MAX_MESSAGE, FrameReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses the chunk size, so split headers and payloads are covered.
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut reader = FrameReader::new(DEFAULT_MAX_MESSAGE);
    for piece in rest.chunks(chunk) {
        reader.push(piece);
        loop {
            match reader.next_message() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                // After an error the connection is closed: nothing more to read.
                Err(_) => return,
            }
        }
        assert!(reader.buffered() <= DEFAULT_MAX_MESSAGE as usize + chunk);
    }
});
