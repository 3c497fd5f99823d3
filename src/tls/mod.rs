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
//!
//! Beside them: [`TlsError`] (`error.rs`), [`PskKeySource`] (`key_source.rs`), and the priority
//! strings Pacemaker uses (`priorities.rs`).

mod error;
pub mod ffi;
mod key_source;
mod priorities;
mod session;
mod stream;

pub use error::TlsError;
pub use key_source::PskKeySource;
pub use priorities::{DEFAULT_PRIORITIES, PRIORITIES_ENV, priorities_anon, priorities_psk};
pub use stream::{PskServer, TlsStream, connect_anon, connect_psk};
