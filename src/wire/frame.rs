//! Whole messages: header + NUL-terminated XML payload, and a byte-stream reassembler.

use super::error::WireError;
use super::header::{HEADER_LEN, Header};
use super::xml::Element;

/// Cap on one message, header included: `PCMK__REMOTE_MSG_MAX_SIZE` (20 MiB), which Pacemaker
/// 2.1.11 and 3.0.3 apply since the fix for CVE-2026-10649. Checked on the header, before anything
/// is buffered.
pub const DEFAULT_MAX_MESSAGE: u32 = 20 * 1024 * 1024;

/// One encoded message. Header and payload are kept apart because they must go out as separate
/// TLS records: the C peers lose or stall on anything else.
pub struct EncodedMessage {
    pub header: [u8; HEADER_LEN],
    pub payload: Vec<u8>,
}

/// Serializes `el` as message number `id`.
pub fn encode(id: u64, el: &Element) -> EncodedMessage {
    let mut payload = el.to_xml().into_bytes();
    payload.push(0);
    let header = Header::for_payload(id, payload.len() as u32).to_bytes();
    EncodedMessage { header, payload }
}

/// Reassembles messages from arbitrary chunks of a byte stream.
pub struct FrameReader {
    buf: Vec<u8>,
    header: Option<Header>,
    max_size: u32,
}

impl FrameReader {
    pub fn new(max_size: u32) -> FrameReader {
        FrameReader {
            buf: Vec::with_capacity(4096),
            header: None,
            max_size,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a complete message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, if one is buffered. After an error the stream cannot be
    /// resynchronised and the connection should be closed.
    pub fn next_message(&mut self) -> Result<Option<Element>, WireError> {
        let header = match self.header {
            Some(h) => h,
            None => {
                if self.buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let mut raw = [0u8; HEADER_LEN];
                raw.copy_from_slice(&self.buf[..HEADER_LEN]);
                let h = Header::parse(&raw, self.max_size)?;
                self.header = Some(h);
                h
            }
        };
        let total = header.size_total as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let start = header.payload_offset as usize;
        let payload = &self.buf[start..total];
        let parsed = decode_payload(payload);
        self.buf.drain(..total);
        self.header = None;
        parsed.map(Some)
    }
}

fn decode_payload(payload: &[u8]) -> Result<Element, WireError> {
    let text = match payload.split_last() {
        Some((0, text)) => text,
        _ => return Err(WireError::MissingNul),
    };
    // A C string ends at its first NUL; anything after it is not part of the document.
    let text = text.split(|b| *b == 0).next().unwrap_or_default();
    let text =
        std::str::from_utf8(text).map_err(|_| WireError::Xml("payload is not UTF-8".into()))?;
    Element::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Element {
        Element::new("lrmd_command")
            .with_attr("lrmd_op", "lrmd_rsc_poke")
            .with_attr("v", "<&>")
    }

    #[test]
    fn encode_then_read_in_odd_chunks() {
        let mut stream = Vec::new();
        for id in 1..=3u64 {
            let m = encode(id, &sample());
            assert_eq!(m.payload.last(), Some(&0));
            stream.extend_from_slice(&m.header);
            stream.extend_from_slice(&m.payload);
        }
        for chunk in [1usize, 7, 40, 41, 1000] {
            let mut r = FrameReader::new(DEFAULT_MAX_MESSAGE);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                r.push(piece);
                while let Some(el) = r.next_message().unwrap() {
                    got.push(el);
                }
            }
            assert_eq!(
                got,
                vec![sample(), sample(), sample()],
                "chunk size {chunk}"
            );
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn sizes_match_pacemaker() {
        // The transcript's 129-byte reply: payload length counts the trailing NUL.
        let reply = Element::parse(r#"<lrmd_reply lrmd_origin="process_lrmd_message" lrmd_rc="0" lrmd_callid="2" lrmd_remote_msg_id="2" lrmd_remote_msg_type="reply"/>"#).unwrap();
        let m = encode(2, &reply);
        assert_eq!(m.payload.len(), 129);
        let h = Header::parse(&m.header, DEFAULT_MAX_MESSAGE).unwrap();
        assert_eq!(h.size_total, 169);
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        let cases: Vec<Vec<u8>> = vec![
            b"<a/>".to_vec(),
            b"<a\0".to_vec(),
            b"\xff\xfe\0".to_vec(),
            b"\0".to_vec(),
        ];
        for payload in cases {
            let h = Header::for_payload(1, payload.len() as u32).to_bytes();
            let mut r = FrameReader::new(DEFAULT_MAX_MESSAGE);
            r.push(&h);
            r.push(&payload);
            assert!(r.next_message().is_err(), "{payload:?}");
        }
    }

    #[test]
    fn oversized_header_is_refused_before_buffering_payload() {
        let h = Header::for_payload(1, 10_000).to_bytes();
        let mut r = FrameReader::new(1024);
        r.push(&h);
        assert!(matches!(r.next_message(), Err(WireError::TooLarge { .. })));
    }
}
