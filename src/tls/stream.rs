//! Async driving of GnuTLS sessions on tokio sockets.
//!
//! GnuTLS does its socket I/O through our pull/push callbacks (see
//! `session.rs`), which use tokio's non-blocking `try_read`/`try_write`. When
//! a GnuTLS call returns GNUTLS_E_AGAIN we wait for the direction in which the
//! socket actually refused I/O, or retry at once if it did not (GnuTLS then
//! only consumed a post-handshake message and can continue).

#![forbid(unsafe_code)]

use std::ffi::{CString, c_int};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::debug;

use super::credentials::{PskKey, X509Credentials};
use super::error::TlsError;
use super::ffi;
use super::key_source::PskKeySource;
use super::session::{self, Blocked, PskServerCreds, Session};

/// The identity Pacemaker Remote's PSK clients present (`DEFAULT_REMOTE_USERNAME`).
pub const PACEMAKER_REMOTE_PSK_IDENTITY: &str = "lrmd";

/// Bound on [`TlsStream::shutdown`]'s close_notify.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

const AGAIN: isize = ffi::GNUTLS_E_AGAIN as isize;
const INTERRUPTED: isize = ffi::GNUTLS_E_INTERRUPTED as isize;

/// Accepts Pacemaker Remote (PSK) TLS connections. Cheap to share via `Arc`.
pub struct PskServer {
    creds: Arc<PskServerCreds>,
    keys: Arc<dyn PskKeySource>,
    priorities: CString,
}

impl fmt::Debug for PskServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PskServer")
            .field("priorities", &self.priorities)
            .finish_non_exhaustive()
    }
}

impl PskServer {
    /// Allocates the shared credentials and checks `priorities` up front, so a
    /// bad `PCMK_tls_priorities` fails at start-up rather than per connection.
    pub fn new(keys: Arc<dyn PskKeySource>, priorities: &str) -> Result<Self, TlsError> {
        let priorities = session::priority_cstring(priorities)?;
        session::check_priorities(&priorities, true)?;
        Ok(Self {
            creds: Arc::new(PskServerCreds::new()?),
            keys,
            priorities,
        })
    }

    /// TLS handshake as server on an accepted socket; fails with
    /// [`TlsError::HandshakeTimeout`] after `timeout`.
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> Result<TlsStream, TlsError> {
        let tcp = Arc::new(tcp);
        let session = Session::new_psk_server(
            Arc::clone(&self.creds),
            Arc::clone(&self.keys),
            &self.priorities,
            Arc::clone(&tcp),
        )?;
        TlsStream::new(session, tcp).handshake(timeout).await
    }
}

/// Accepts X.509 connections (Pacemaker 3.0's certificate mode): presents our certificate,
/// requires the client's, and accepts it only if it chains to the configured CA and is not
/// revoked by the configured CRL; no host-name check. Cheap to share via `Arc`.
pub struct X509Server {
    creds: X509Credentials,
    priorities: CString,
}

impl fmt::Debug for X509Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Server")
            .field("priorities", &self.priorities)
            .finish_non_exhaustive()
    }
}

impl X509Server {
    /// Checks `priorities` up front (see [`PskServer::new`]).
    pub fn new(creds: X509Credentials, priorities: &str) -> Result<Self, TlsError> {
        let priorities = session::priority_cstring(priorities)?;
        session::check_priorities(&priorities, true)?;
        Ok(Self { creds, priorities })
    }

    /// TLS handshake as server; a client without a certificate fails with
    /// [`TlsError::NoPeerCertificate`], an untrusted or revoked one with
    /// [`TlsError::CertificateRejected`].
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> Result<TlsStream, TlsError> {
        let tcp = Arc::new(tcp);
        let session = Session::new_x509(
            true,
            Arc::clone(&self.creds.creds),
            &self.priorities,
            Arc::clone(&tcp),
        )?;
        TlsStream::new(session, tcp).handshake(timeout).await
    }
}

/// The Pacemaker Remote listener's TLS: PSK (the authkey) or X.509.
#[derive(Debug)]
pub enum TlsServer {
    Psk(PskServer),
    X509(X509Server),
}

impl TlsServer {
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> Result<TlsStream, TlsError> {
        match self {
            TlsServer::Psk(s) => s.accept(tcp, timeout).await,
            TlsServer::X509(s) => s.accept(tcp, timeout).await,
        }
    }

    /// "PSK" or "X.509", for logs.
    pub fn mode(&self) -> &'static str {
        match self {
            TlsServer::Psk(_) => "PSK",
            TlsServer::X509(_) => "X.509",
        }
    }
}

/// Client handshake presenting identity `"lrmd"` and the raw `key` (Pacemaker Remote).
pub async fn connect_psk(
    tcp: TcpStream,
    key: &[u8],
    priorities: &str,
    timeout: Duration,
) -> Result<TlsStream, TlsError> {
    connect_psk_as(tcp, PACEMAKER_REMOTE_PSK_IDENTITY, key, priorities, timeout).await
}

/// Client handshake presenting `identity` and the raw `key` (the remote CIB port of Pacemaker
/// 3.0.2+ uses the CIB user name as identity: see [`connect_psk_key`]).
pub async fn connect_psk_as(
    tcp: TcpStream,
    identity: &str,
    key: &[u8],
    priorities: &str,
    timeout: Duration,
) -> Result<TlsStream, TlsError> {
    if key.is_empty() {
        return Err(TlsError::NoKey);
    }
    let identity = CString::new(identity).map_err(|_| TlsError::Credentials {
        what: "PSK identity",
        message: "contains a NUL byte".into(),
    })?;
    let priorities = session::priority_cstring(priorities)?;
    let tcp = Arc::new(tcp);
    let session = Session::new_psk_client(&identity, key, &priorities, Arc::clone(&tcp))?;
    TlsStream::new(session, tcp).handshake(timeout).await
}

/// [`connect_psk_as`] with a [`PskKey`].
pub async fn connect_psk_key(
    tcp: TcpStream,
    identity: &str,
    key: &PskKey,
    priorities: &str,
    timeout: Duration,
) -> Result<TlsStream, TlsError> {
    connect_psk_as(tcp, identity, key.expose(), priorities, timeout).await
}

/// Client handshake with X.509: presents our certificate and accepts the server's only if it
/// chains to the configured CA (and is not revoked); no host-name check, as Pacemaker.
pub async fn connect_x509(
    tcp: TcpStream,
    creds: &X509Credentials,
    priorities: &str,
    timeout: Duration,
) -> Result<TlsStream, TlsError> {
    let priorities = session::priority_cstring(priorities)?;
    let tcp = Arc::new(tcp);
    let session = Session::new_x509(
        false,
        Arc::clone(&creds.creds),
        &priorities,
        Arc::clone(&tcp),
    )?;
    TlsStream::new(session, tcp).handshake(timeout).await
}

/// Client handshake with anonymous Diffie-Hellman (Pacemaker's remote CIB port).
pub async fn connect_anon(
    tcp: TcpStream,
    priorities: &str,
    timeout: Duration,
) -> Result<TlsStream, TlsError> {
    let priorities = session::priority_cstring(priorities)?;
    let tcp = Arc::new(tcp);
    let session = Session::new_anon_client(&priorities, Arc::clone(&tcp))?;
    TlsStream::new(session, tcp).handshake(timeout).await
}

/// An established TLS connection. Dropping it frees the GnuTLS session and
/// then closes the socket (no close_notify; use [`TlsStream::shutdown`] first).
pub struct TlsStream {
    session: Session,
    /// Shared with the session's transport callbacks; used here to await readiness.
    tcp: Arc<TcpStream>,
    peer: Option<SocketAddr>,
    /// Set while a `write_record` is in flight; still set if its future was dropped.
    write_in_flight: bool,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl TlsStream {
    fn new(session: Session, tcp: Arc<TcpStream>) -> Self {
        let peer = tcp.peer_addr().ok();
        Self {
            session,
            tcp,
            peer,
            write_in_flight: false,
        }
    }

    async fn handshake(mut self, timeout: Duration) -> Result<Self, TlsError> {
        match tokio::time::timeout(timeout, self.handshake_steps()).await {
            Ok(Ok(())) => {
                debug!(peer = ?self.peer, description = %self.description(), "TLS handshake complete");
                Ok(self)
            }
            Ok(Err(err)) => {
                if let TlsError::Gnutls { code, .. } = &err {
                    self.session.send_alert_for(*code);
                }
                debug!(peer = ?self.peer, error = %err, "TLS handshake failed");
                if self.session.key_missing() {
                    return Err(TlsError::NoKey);
                }
                Err(err)
            }
            Err(_) => {
                debug!(peer = ?self.peer, ?timeout, "TLS handshake timed out");
                Err(TlsError::HandshakeTimeout)
            }
        }
    }

    async fn handshake_steps(&mut self) -> Result<(), TlsError> {
        loop {
            let rc = drive(&self.tcp, &mut self.session, |s| s.handshake() as isize).await?;
            if rc >= 0 {
                return Ok(());
            }
            let code = to_code(rc);
            if session::is_fatal(code) {
                return Err(self.session.error("gnutls_handshake", code));
            }
            // e.g. a warning alert: GnuTLS says the handshake may continue.
            debug!(peer = ?self.peer, code, "non-fatal TLS condition during handshake");
        }
    }

    /// Waits for data and returns up to one record's worth; `Ok(0)` on clean
    /// EOF or when the peer closed without close_notify.
    ///
    /// Cancel-safe (may be used inside `tokio::select!`): data is only taken
    /// from GnuTLS in the same synchronous step that returns it.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            // Calling recv before waiting also returns data GnuTLS already
            // buffered (invisible to the socket's readiness).
            let rc = drive(&self.tcp, &mut self.session, |s| s.recv(buf)).await?;
            if let Ok(n) = usize::try_from(rc) {
                return Ok(n);
            }
            let code = to_code(rc);
            if code == ffi::GNUTLS_E_PREMATURE_TERMINATION {
                return Ok(0);
            }
            if session::is_fatal(code) {
                return Err(self.session.error("gnutls_record_recv", code));
            }
            // Warning alerts, refused renegotiation and the like: keep reading.
            debug!(peer = ?self.peer, code, "non-fatal TLS condition while reading");
        }
    }

    /// Sends `data` as its own TLS record(s): one record if it fits the record
    /// size, several otherwise; never merged with another write. Empty `data`
    /// sends nothing (an empty record would look like EOF to some readers).
    ///
    /// Not cancel-safe: if this future is dropped before completing, part of a
    /// record may be queued in GnuTLS, and every later `write_record` fails
    /// with [`TlsError::WriteInterrupted`]; the connection should be dropped.
    pub async fn write_record(&mut self, data: &[u8]) -> Result<(), TlsError> {
        if self.write_in_flight {
            return Err(TlsError::WriteInterrupted);
        }
        self.write_in_flight = true;
        let result = self.send_all(data).await;
        self.write_in_flight = false;
        result
    }

    async fn send_all(&mut self, data: &[u8]) -> Result<(), TlsError> {
        let mut sent = 0;
        while sent < data.len() {
            let rest = &data[sent..];
            // After E_AGAIN GnuTLS must be called again with the same data: `rest`
            // does not change until the call reports bytes taken.
            let rc = drive(&self.tcp, &mut self.session, |s| s.send(rest)).await?;
            match usize::try_from(rc) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "gnutls_record_send took no data",
                    )
                    .into());
                }
                Ok(n) => sent += n,
                Err(_) => return Err(self.session.error("gnutls_record_send", to_code(rc))),
            }
        }
        Ok(())
    }

    /// Sends close_notify (`gnutls_bye(GNUTLS_SHUT_WR)`), best effort, bounded
    /// by a short timeout. The socket stays open until the stream is dropped.
    pub async fn shutdown(&mut self) {
        let bye = drive(&self.tcp, &mut self.session, |s| s.bye() as isize);
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, bye).await {
            Ok(Ok(0)) => {}
            Ok(Ok(code)) => debug!(peer = ?self.peer, code, "TLS close_notify failed"),
            Ok(Err(err)) => debug!(peer = ?self.peer, error = %err, "TLS close_notify failed"),
            Err(_) => debug!(peer = ?self.peer, "TLS close_notify timed out"),
        }
    }

    /// Negotiated parameters from `gnutls_session_get_desc`. GnuTLS 3.7 gives
    /// e.g. `"(TLS1.3)--(CHACHA20-POLY1305)"` for TLS 1.3 PSK (the key-exchange
    /// field is empty although (EC)DHE is used), `"(TLS1.2)-(DHE-FFDHE2048)-(AES-256-GCM)"`
    /// for TLS 1.2 DHE-PSK and `"(TLS1.2)-(ANON-DH)-(AES-256-GCM)"` for anonymous DH.
    pub fn description(&self) -> String {
        self.session.description()
    }

    /// The subject DN of the peer's certificate (X.509 mode), e.g. `CN=node1`.
    pub fn peer_certificate_subject(&self) -> Option<String> {
        self.session.peer_subject()
    }

    /// The remote address, if the socket knew it when the stream was created.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }
}

/// The GnuTLS stream as a transport for `wire`'s framed connection: `write_record` already keeps
/// each write in records of its own, and `read` is cancel-safe.
impl crate::wire::RecordTransport for TlsStream {
    type Error = TlsError;

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        TlsStream::read(self, buf).await
    }

    async fn write_record(&mut self, data: &[u8]) -> Result<(), TlsError> {
        TlsStream::write_record(self, data).await
    }

    async fn close(&mut self) {
        self.shutdown().await
    }
}

/// GnuTLS return values are `int` error codes widened to `ssize_t`.
fn to_code(rc: isize) -> c_int {
    c_int::try_from(rc).unwrap_or(c_int::MIN)
}

/// Runs a non-blocking GnuTLS operation until it no longer asks to wait.
///
/// `op` returns a GnuTLS result (>= 0 success, < 0 error code). Dropping the
/// returned future between calls loses nothing: GnuTLS keeps its partial state.
async fn drive(
    tcp: &TcpStream,
    session: &mut Session,
    mut op: impl FnMut(&mut Session) -> isize,
) -> Result<isize, TlsError> {
    loop {
        // Forget blocks seen by earlier calls; only this call's count.
        let _ = session.take_blocked();
        match op(session) {
            INTERRUPTED => {}
            AGAIN => match session.take_blocked() {
                Some(Blocked::Read) => tcp.readable().await?,
                Some(Blocked::Write) => tcp.writable().await?,
                // No socket I/O was refused: GnuTLS consumed a non-application
                // record and can go on. Yield so a flood of such records
                // cannot starve other tasks.
                None => tokio::task::yield_now().await,
            },
            done => return Ok(done),
        }
    }
}
