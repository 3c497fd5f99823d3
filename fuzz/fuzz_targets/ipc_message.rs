//! The libqb IPC decoder of the local proxy: messages of Pacemaker's tools in either header
//! layout (2.1.x/3.0.0, 3.0.1+ multipart), one connection's sequence at a time. Errors are
//! fine; panics are not (the reader bounds reassembly at MAX_IPC_MESSAGE itself).
#![no_main]

use kubemaker::wire::ipc::{IpcReader, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Messages of one connection, separated by the input's first byte (each is one IPC send).
    let Some((&sep, rest)) = data.split_first() else {
        return;
    };
    let mut reader = IpcReader::default();
    for message in rest.split(|b| *b == sep) {
        let _ = decode(message);
        match reader.push(message) {
            Ok(_) => {}
            Err(_) => return,
        }
    }
});
