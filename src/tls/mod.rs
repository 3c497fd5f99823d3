//! GnuTLS-backed TLS for the Pacemaker-facing links.
//!
//! - [`PskServer`]: the Pacemaker Remote listener side (TCP 3121): PSK with
//!   identity `"lrmd"`, the key being the raw bytes of the authkey file.
//! - [`X509Server`]: the same listener in Pacemaker 3.0's X.509 mode: our certificate, the
//!   client's required and verified against the configured CA (and CRL) only, no host-name
//!   check. [`TlsServer`] is either.
//! - [`connect_psk`] (identity "lrmd"), [`connect_psk_as`]/[`connect_psk_key`] (any identity:
//!   the remote CIB port's PSK mode of 3.0.2 uses the CIB user), [`connect_x509`] and
//!   [`connect_anon`] (anonymous DH, the remote CIB port of 2.1.x): the clients.
//! - [`credentials`]: key and certificate material from files or memory ([`X509Pem`],
//!   [`X509Files`], [`PskKey`], [`SecretBytes`]), Pacemaker's rule for choosing X.509 from the
//!   environment, and [`X509Credentials`], the loaded form shared by connections.
//!
//! Why GnuTLS and not rustls: Pacemaker builds its TLS on GnuTLS and configures it with GnuTLS
//! priority strings (`PCMK_tls_priorities` + `:+DHE-PSK:+PSK` or `:+ANON-DH`, the bare string
//! for X.509). Its peers negotiate TLS 1.2 DHE-PSK and anonymous DH, which rustls does not
//! implement, and users tune the priority string, which only GnuTLS understands. Using the same
//! library keeps every mode wire-identical.
//!
//! The unsafe boundary: `ffi.rs` declares the C functions; `session.rs` is the only caller and
//! wraps each GnuTLS object in an owning type (`Session`, the PSK/anonymous/certificate
//! credentials, `Certificate`) with these rules: credentials live in an `Arc` or in the session
//! that uses them and are freed only after `gnutls_deinit`; pointers handed to GnuTLS callbacks
//! are leaked boxes freed after `gnutls_deinit`; every `unsafe` block has a SAFETY note.
//! `stream.rs` and `credentials.rs` above it are safe code (`#![forbid(unsafe_code)]`).
//!
//! Framing rule the C peers depend on: they read one TLS record per
//! `gnutls_record_recv` and cannot see data buffered inside GnuTLS, so each
//! [`TlsStream::write_record`] goes out as its own record(s), never merged with
//! the next write. [`TlsStream`] implements `wire::RecordTransport`, so `wire::Connection`
//! frames messages over it (the only arrow from `tls` to another module: `wire` knows nothing of
//! TLS).
//!
//! Beside them: [`TlsError`] (`error.rs`), [`PskKeySource`] (`key_source.rs`), and the priority
//! strings Pacemaker uses (`priorities.rs`).

pub mod credentials;
mod error;
pub mod ffi;
mod key_source;
mod priorities;
mod session;
mod stream;

pub use credentials::{CredentialError, PskKey, SecretBytes, X509Credentials, X509Files, X509Pem};
pub use error::TlsError;
pub use key_source::PskKeySource;
pub use priorities::{
    DEFAULT_PRIORITIES, PRIORITIES_ENV, priorities_anon, priorities_psk, priorities_x509,
};
pub use stream::{
    PACEMAKER_REMOTE_PSK_IDENTITY, PskServer, TlsServer, TlsStream, X509Server, connect_anon,
    connect_psk, connect_psk_as, connect_psk_key, connect_x509,
};
