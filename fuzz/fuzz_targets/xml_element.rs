//! The owned XML element parser. Whatever it accepts, it writes back as XML it parses again to the
//! same element (what the daemon relays must survive a round trip).
#![no_main]

use kubemaker::wire::Element;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(element) = Element::parse(text) else {
        return;
    };
    let written = element.to_xml();
    let again = Element::parse(&written)
        .unwrap_or_else(|e| panic!("our own output does not parse: {e}\n{written}"));
    assert_eq!(element, again, "round trip changed the element: {written}");
});
