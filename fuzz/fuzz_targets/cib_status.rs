//! The CIB status reader (RemoteNode status, `kubemaker cib status`) on any CIB the parser
//! accepts: a cluster of another version or a damaged CIB must not panic the controller.
#![no_main]

use kubemaker::cib::status::read_status;
use kubemaker::wire::Element;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cib) = Element::parse(text) {
        let _ = read_status(&cib);
    }
});
