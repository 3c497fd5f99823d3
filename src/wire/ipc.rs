//! Pacemaker's message header inside libqb IPC (the 2.1.x layout, what Debian 12's tools speak):
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 24 | libqb's response header: `id` at 0, `size` at 8, `error` at 16 (each 8-aligned) |
//! | 24 | u32 | `size_uncompressed` (XML + NUL) |
//! | 28 | u32 | `size_compressed` (bzip2 payload length when flag 0x1 is set) |
//! | 32 | u32 | `flags` |
//! | 36 | u8 | `version` = 1 |
//!
//! then the NUL-terminated XML (or its bzip2 compression). Requests use the same layout.

use std::io::Read;

use super::xml::Element;

pub const IPC_HEADER_LEN: usize = 40;
/// `PCMK__IPC_VERSION` of Pacemaker 2.1.x.
pub const IPC_VERSION: u8 = 1;

/// `enum crm_ipc_flags` bits used here.
pub mod flags {
    pub const COMPRESSED: u32 = 0x1;
    pub const PROXIED: u32 = 0x100;
    pub const CLIENT_RESPONSE: u32 = 0x200;
    pub const SERVER_EVENT: u32 = 0x10000;
    pub const PROXIED_RELAY_RESPONSE: u32 = 0x40000;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpcWireError {
    #[error("IPC message of {0} bytes is shorter than Pacemaker's 40-byte header")]
    Short(usize),
    #[error(
        "IPC header version {0} is not Pacemaker 2.1.x's (1): the tool on this node speaks an IPC layout kubemaker remoted does not support (Pacemaker 3.x tools?)"
    )]
    Version(u8),
    #[error("IPC header sizes do not match the message ({0})")]
    Sizes(String),
    #[error("cannot decompress IPC payload: {0}")]
    Decompress(String),
    #[error("IPC payload is not UTF-8 XML: {0}")]
    Payload(String),
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcMessage {
    pub id: u32,
    pub flags: u32,
    pub xml: Element,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Decodes one message as libqb delivered it (header included).
pub fn decode(data: &[u8]) -> Result<IpcMessage, IpcWireError> {
    if data.len() < IPC_HEADER_LEN {
        return Err(IpcWireError::Short(data.len()));
    }
    let version = data[36];
    if version != IPC_VERSION {
        return Err(IpcWireError::Version(version));
    }
    let id = u32_at(data, 0);
    let uncompressed = u32_at(data, 24) as usize;
    let compressed = u32_at(data, 28) as usize;
    let msg_flags = u32_at(data, 32);
    let body = &data[IPC_HEADER_LEN..];
    let text: Vec<u8> = if msg_flags & flags::COMPRESSED != 0 {
        let input = body.get(..compressed).ok_or_else(|| {
            IpcWireError::Sizes(format!("compressed {compressed} > body {}", body.len()))
        })?;
        let mut out = Vec::with_capacity(uncompressed.min(64 << 20));
        bzip2::read::BzDecoder::new(input)
            .take(uncompressed as u64)
            .read_to_end(&mut out)
            .map_err(|e| IpcWireError::Decompress(e.to_string()))?;
        out
    } else {
        body.get(..uncompressed)
            .ok_or_else(|| {
                IpcWireError::Sizes(format!("payload {uncompressed} > body {}", body.len()))
            })?
            .to_vec()
    };
    let text = text.split(|b| *b == 0).next().unwrap_or_default();
    let text = std::str::from_utf8(text).map_err(|e| IpcWireError::Payload(e.to_string()))?;
    let xml = Element::parse(text).map_err(|e| IpcWireError::Payload(e.to_string()))?;
    Ok(IpcMessage {
        id,
        flags: msg_flags,
        xml,
    })
}

/// Encodes a message; payloads that would not fit in `max_size` are bzip2-compressed, as
/// Pacemaker does, so large CIBs still reach tools with the default 128 KiB buffers.
pub fn encode(id: u32, msg_flags: u32, xml: &Element, max_size: usize) -> Vec<u8> {
    let mut payload = xml.to_xml().into_bytes();
    payload.push(0);
    let uncompressed = payload.len();
    let mut msg_flags = msg_flags;
    let mut compressed_len = 0usize;
    if IPC_HEADER_LEN + uncompressed > max_size {
        let mut enc = bzip2::read::BzEncoder::new(&payload[..], bzip2::Compression::best());
        let mut out = Vec::new();
        if enc.read_to_end(&mut out).is_ok() {
            compressed_len = out.len();
            payload = out;
            msg_flags |= flags::COMPRESSED;
        }
    }
    let total = IPC_HEADER_LEN + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(id as i32).to_ne_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(total as i32).to_ne_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&0i32.to_ne_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(uncompressed as u32).to_ne_bytes());
    out.extend_from_slice(&(compressed_len as u32).to_ne_bytes());
    out.extend_from_slice(&msg_flags.to_ne_bytes());
    out.extend_from_slice(&[IPC_VERSION, 0, 0, 0]);
    out.extend_from_slice(&payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_and_compressed() {
        let xml = Element::new("cib_command")
            .with_attr("cib_op", "cib_query")
            .with_attr("x", "a&b");
        let bytes = encode(7, flags::CLIENT_RESPONSE, &xml, 128 * 1024);
        assert_eq!(bytes.len(), IPC_HEADER_LEN + xml.to_xml().len() + 1);
        assert_eq!(&bytes[8..12], &(bytes.len() as i32).to_ne_bytes());
        assert_eq!(
            decode(&bytes).unwrap(),
            IpcMessage {
                id: 7,
                flags: flags::CLIENT_RESPONSE,
                xml: xml.clone()
            }
        );

        let big = Element::new("cib").with_attr("data", "x".repeat(300_000));
        let bytes = encode(1, 0, &big, 128 * 1024);
        assert!(bytes.len() < 128 * 1024, "compressed to fit");
        let back = decode(&bytes).unwrap();
        assert_eq!(back.flags & flags::COMPRESSED, flags::COMPRESSED);
        assert_eq!(back.xml, big);
    }

    #[test]
    fn rejects_short_foreign_and_inconsistent_messages() {
        assert_eq!(decode(&[0; 10]), Err(IpcWireError::Short(10)));
        let mut bytes = encode(1, 0, &Element::new("x"), 1 << 20);
        bytes[36] = 2;
        assert_eq!(decode(&bytes), Err(IpcWireError::Version(2)));
        let mut bytes = encode(1, 0, &Element::new("x"), 1 << 20);
        bytes[24] = 200;
        assert!(matches!(decode(&bytes), Err(IpcWireError::Sizes(_))));
        let mut bytes = encode(1, 0, &Element::new("x"), 1 << 20);
        bytes[32] |= 1;
        bytes[28] = 3;
        assert!(matches!(decode(&bytes), Err(IpcWireError::Decompress(_))));
    }
}
