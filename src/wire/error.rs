//! What can be wrong with a message on the wire, and whether the stream survives it.

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
