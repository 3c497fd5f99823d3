//! GnuTLS-backed TLS for the Pacemaker-facing links.
//!
//! - [`PskServer`]: the Pacemaker Remote listener side (TCP 3121): PSK with
//!   identity `"lrmd"`, the key being the raw bytes of the authkey file.
//! - [`connect_psk`]: the matching client (used by tests and tooling).
//! - [`connect_anon`]: anonymous-DH client for Pacemaker's remote CIB port.
//!
//! Framing rule the C peers depend on: they read one TLS record per
//! `gnutls_record_recv` and cannot see data buffered inside GnuTLS, so each
//! [`TlsStream::write_record`] goes out as its own record(s), never merged with
//! the next write. [`TlsStream`] implements `wire::RecordTransport`, so `wire::Connection`
//! frames messages over it (the only arrow from `tls` to another module: `wire` knows nothing of
//! TLS).

pub mod ffi;
mod session;
mod stream;

use std::time::Duration;

pub use stream::{PskServer, TlsStream, connect_anon, connect_psk};

/// Environment variable Pacemaker reads for the base priority string.
pub const PRIORITIES_ENV: &str = "PCMK_tls_priorities";
/// Base priority string when [`PRIORITIES_ENV`] is unset (Pacemaker's default).
pub const DEFAULT_PRIORITIES: &str = "NORMAL";

/// Errors from the TLS layer. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A GnuTLS call failed; `message` is `gnutls_strerror(code)` (plus the
    /// received alert's name for GNUTLS_E_FATAL_ALERT_RECEIVED).
    #[error("{op} failed: {message} (GnuTLS error {code})")]
    Gnutls {
        op: &'static str,
        code: i32,
        message: String,
    },
    /// GnuTLS rejected the priority string.
    #[error("invalid TLS priority string {priorities:?}: {message}")]
    InvalidPriority { priorities: String, message: String },
    /// Socket error outside GnuTLS (e.g. while waiting for readiness).
    #[error("TLS socket I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not finish within the caller's deadline.
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// No usable pre-shared key (empty client key, or the server's key source had none).
    #[error("no TLS pre-shared key available")]
    NoKey,
    /// An earlier `write_record` future was dropped mid-send; GnuTLS would
    /// otherwise resend that half-sent record in place of new data.
    #[error("an earlier TLS write was cancelled part-way; the stream can no longer be written")]
    WriteInterrupted,
}

/// Supplies the PSK for each server handshake (called from GnuTLS's
/// credentials callback, once per handshake, on the task driving the handshake).
///
/// Implementations should be quick (no blocking I/O) and must not log the key.
pub trait PskKeySource: Send + Sync + 'static {
    /// The current key, or `None` to refuse the handshake ([`TlsError::NoKey`]).
    fn current_key(&self) -> Option<Vec<u8>>;
}

/// Pacemaker Remote priorities: `$PCMK_tls_priorities` (or `NORMAL`) + `:+DHE-PSK:+PSK`.
pub fn priorities_psk() -> String {
    with_suffix(env_base().as_deref(), ":+DHE-PSK:+PSK")
}

/// Remote CIB priorities: `$PCMK_tls_priorities` (or `NORMAL`) + `:+ANON-DH`.
pub fn priorities_anon() -> String {
    with_suffix(env_base().as_deref(), ":+ANON-DH")
}

fn env_base() -> Option<String> {
    std::env::var(PRIORITIES_ENV).ok()
}

/// An empty value falls back to the default too: Pacemaker would pass
/// `":+DHE-PSK:+PSK"` to GnuTLS, which is always rejected.
fn with_suffix(base: Option<&str>, suffix: &str) -> String {
    let base = base.filter(|b| !b.is_empty()).unwrap_or(DEFAULT_PRIORITIES);
    format!("{base}{suffix}")
}

/// Bound on [`TlsStream::shutdown`]'s close_notify.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_strings() {
        assert_eq!(with_suffix(None, ":+DHE-PSK:+PSK"), "NORMAL:+DHE-PSK:+PSK");
        assert_eq!(with_suffix(Some(""), ":+ANON-DH"), "NORMAL:+ANON-DH");
        assert_eq!(
            with_suffix(Some("SECURE128:+SECURE192"), ":+DHE-PSK:+PSK"),
            "SECURE128:+SECURE192:+DHE-PSK:+PSK"
        );
        // Whatever the environment holds, the suffixes are appended.
        assert!(priorities_psk().ends_with(":+DHE-PSK:+PSK"));
        assert!(priorities_anon().ends_with(":+ANON-DH"));
    }

    #[test]
    fn errors_display_text() {
        let e = TlsError::Gnutls {
            op: "gnutls_handshake",
            code: -110,
            message: "The TLS connection was non-properly terminated.".into(),
        };
        assert_eq!(
            e.to_string(),
            "gnutls_handshake failed: The TLS connection was non-properly terminated. (GnuTLS error -110)"
        );
        assert_eq!(
            TlsError::HandshakeTimeout.to_string(),
            "TLS handshake timed out"
        );
    }
}
