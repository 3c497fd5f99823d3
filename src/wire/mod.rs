//! Pacemaker's remote message framing, shared by Pacemaker Remote (port 3121) and the remote CIB
//! port: a 40-byte header, then a NUL-terminated XML document.
//!
//! - [`header`], [`frame`]: the bytes, and a sans-I/O reassembler ([`FrameReader`])
//! - [`connection`]: one framed [`Connection`] (read a message, write a message) over any
//!   [`RecordTransport`]: TLS, plain TCP, or an in-memory pair for tests
//! - [`envelope`], [`xml`]: the message envelope and a small owned XML element
//! - [`ipc`]: the same XML inside libqb IPC messages

pub mod connection;
pub mod envelope;
pub mod frame;
pub mod header;
pub mod ipc;
pub mod xml;

pub use connection::{Connection, MemoryTransport, ReadError, RecordTransport, memory_pair};
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

impl WireError {
    /// Whether the bad message was consumed whole, so the next one can still be read. Header
    /// errors leave no way to find the next message: the connection must be closed.
    pub fn stream_in_sync(&self) -> bool {
        matches!(self, WireError::Xml(_) | WireError::MissingNul)
    }
}
