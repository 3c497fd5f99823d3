//! Where the PSK server gets its key, handshake by handshake.

/// Supplies the PSK for each server handshake (called from GnuTLS's
/// credentials callback, once per handshake, on the task driving the handshake).
///
/// Implementations should be quick (no blocking I/O) and must not log the key.
pub trait PskKeySource: Send + Sync + 'static {
    /// The current key, or `None` to refuse the handshake ([`super::TlsError::NoKey`]).
    fn current_key(&self) -> Option<Vec<u8>>;

    /// The key for the PSK identity the client presented. Pacemaker Remote ignores the identity
    /// (clients send "lrmd"), and so does the default; a source keyed by user, like the remote
    /// CIB's `cib-credentials` file (Pacemaker 3.0.2), overrides this.
    fn key_for_identity(&self, identity: &str) -> Option<Vec<u8>> {
        let _ = identity;
        self.current_key()
    }
}
