//! Errors from the TLS layer. Never contains key material.

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
    /// X.509 material GnuTLS would not load (`what`: "CA certificates", "CRL",
    /// "certificate and private key", ...). Never contains key bytes.
    #[error("invalid {what}: {message}")]
    Credentials { what: &'static str, message: String },
    /// The peer's certificate did not verify against the configured CA (and CRL):
    /// `reason` is GnuTLS's text, e.g. "The certificate issuer is unknown."; `status` its bits.
    #[error("peer certificate{} rejected: {reason}", subject.as_ref().map(|s| format!(" {s:?}")).unwrap_or_default())]
    CertificateRejected {
        reason: String,
        status: u32,
        subject: Option<String>,
    },
    /// The handshake needed a certificate that was not presented (a client without one, or
    /// a server that required one we do not have).
    #[error("no certificate presented: {message}")]
    NoPeerCertificate { message: String },
    /// An earlier `write_record` future was dropped mid-send; GnuTLS would
    /// otherwise resend that half-sent record in place of new data.
    #[error("an earlier TLS write was cancelled part-way; the stream can no longer be written")]
    WriteInterrupted,
}

#[cfg(test)]
mod tests {
    use super::*;

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
