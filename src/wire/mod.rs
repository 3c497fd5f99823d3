//! Pacemaker's remote message framing, shared by Pacemaker Remote (port 3121) and the remote CIB
//! port: a 40-byte header, then a NUL-terminated XML document.

pub mod envelope;
pub mod frame;
pub mod header;
pub mod ipc;
pub mod xml;

pub use envelope::MsgType;
pub use frame::{EncodedMessage, FrameReader, encode};
pub use xml::Element;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(
        "bad magic 0x{0:08x} in message header (not a Pacemaker remote message, or plaintext on a TLS port?)"
    )]
    BadMagic(u32),
    #[error("unsupported message header version {0} (expected 1)")]
    BadVersion(u32),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u32, limit: u32 },
    #[error(
        "inconsistent header sizes: total {size_total}, payload offset {payload_offset}, payload {payload_len}"
    )]
    BadSizes {
        size_total: u32,
        payload_offset: u32,
        payload_len: u32,
    },
    #[error("compressed payloads are not supported (no Pacemaker sender uses them)")]
    Compressed,
    #[error("payload is not NUL-terminated")]
    MissingNul,
    #[error("malformed XML: {0}")]
    Xml(String),
}
