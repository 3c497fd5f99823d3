//! Where the PSK server gets its key, handshake by handshake.

/// Supplies the PSK for each server handshake (called from GnuTLS's
/// credentials callback, once per handshake, on the task driving the handshake).
///
/// Implementations should be quick (no blocking I/O) and must not log the key.
pub trait PskKeySource: Send + Sync + 'static {
    /// The current key, or `None` to refuse the handshake ([`super::TlsError::NoKey`]).
    fn current_key(&self) -> Option<Vec<u8>>;
}
