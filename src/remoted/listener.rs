//! The TCP listener: one socket, dual-stack when it can be (IPv6 with V6ONLY off), like
//! Pacemaker's; and the per-connection TLS handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use super::admission::{Admission, Refusal};
use super::authkey::{IdentityRule, KeyFiles, KeysFor};
use super::config::Config;
use super::daemon::Daemon;
use super::routing::Routes;
use super::session;
use crate::tls::{
    CredentialError, PskServer, TlsError, TlsServer, TlsStream, X509Credentials, X509Server,
    priorities_psk, priorities_x509,
};
use crate::wire::cib_gateway;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot resolve listen address {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("listen address {0} resolves to nothing")]
    NoAddress(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// The TLS side of accepting: the PSK or X.509 server, how long a new connection may take to
/// handshake, and the gate for unauthenticated peers.
pub struct Handshake {
    pub tls: TlsServer,
    pub timeout: Duration,
    pub admission: Arc<Admission>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("X.509 mode (PCMK_ca_file, PCMK_cert_file, PCMK_key_file): {0}")]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The accept queue's length (see `bind_one`).
const LISTEN_BACKLOG: i32 = 128;

/// Warn when our certificate expires within this (Pacemaker warns at 30 days too).
const EXPIRY_WARNING_SECS: i64 = 30 * 24 * 3600;

/// The listener's TLS, chosen as Pacemaker 3.0 does: X.509 when the CA, certificate and key files
/// are all configured (`config.x509`), PSK with the authkey otherwise. Files are read once, at
/// start-up; a bad file is a start-up error naming it.
pub fn tls_server(config: &Config, keys: Arc<KeyFiles>) -> Result<TlsServer, TlsSetupError> {
    let Some(files) = &config.x509 else {
        match keys.load() {
            Some((path, _)) => info!(path = %path.display(), "Pacemaker Remote key found"),
            None => {
                warn!(paths = ?keys.paths(), "No Pacemaker Remote key file yet; connections will be refused until one appears")
            }
        }
        let cluster_keys = KeysFor {
            keys,
            rule: IdentityRule::AllBut(cib_gateway::IDENTITY),
        };
        return Ok(TlsServer::Psk(PskServer::new(
            Arc::new(cluster_keys),
            &priorities_psk(),
        )?));
    };
    let pem = files.read()?;
    let creds = X509Credentials::new(&pem)?;
    let subject = pem.cert_subject()?.unwrap_or_default();
    info!(
        ca = %files.ca.display(),
        cert = %files.cert.display(),
        crl = ?files.crl.as_ref().map(|p| p.display().to_string()),
        subject = %subject,
        "Pacemaker Remote uses X.509 certificates; clients must present one signed by the CA"
    );
    if let Some(expires) = pem.cert_expiration()? {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if expires - now <= EXPIRY_WARNING_SECS {
            warn!(cert = %files.cert.display(), expires_in_days = (expires - now) / 86400, "TLS certificate expires within 30 days (or has expired)");
        }
    }
    Ok(TlsServer::X509(X509Server::new(creds, &priorities_x509())?))
}

/// Binds `address` (or every address) on `port`.
pub async fn bind(address: Option<&str>, port: u16) -> Result<TcpListener, ListenError> {
    let candidates: Vec<SocketAddr> = match address {
        Some(a) => {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((a, port))
                .await
                .map_err(|e| ListenError::Resolve(a.to_string(), e))?
                .collect();
            // Pacemaker binds the first IPv6 result if any, else the first IPv4 one.
            let v6 = resolved.iter().find(|s| s.is_ipv6()).copied();
            let v4 = resolved.iter().find(|s| s.is_ipv4()).copied();
            v6.into_iter().chain(v4).collect()
        }
        None => vec![
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ],
    };
    let mut last = None;
    for addr in &candidates {
        match bind_one(*addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(ListenError::Bind(*addr, e)),
        }
    }
    Err(last.unwrap_or_else(|| ListenError::NoAddress(address.unwrap_or("*").to_string())))
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // A deep accept queue: when a flood of connections fills a shallow one, the kernel drops
    // new SYNs and a cluster node's connection waits out a SYN retransmission (1 s, then more).
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// The CIB gateway's TLS: PSK with the same key files, for the gateway's identity only.
pub fn gateway_tls_server(keys: Arc<KeyFiles>) -> Result<TlsServer, TlsSetupError> {
    let gateway_keys = KeysFor {
        keys,
        rule: IdentityRule::Only(cib_gateway::IDENTITY),
    };
    Ok(TlsServer::Psk(PskServer::new(
        Arc::new(gateway_keys),
        &priorities_psk(),
    )?))
}

/// Handshakes and serves one accepted connection; failures end only this connection.
pub async fn handle_connection(
    daemon: Arc<Daemon>,
    routes: Routes,
    handshake: Arc<Handshake>,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let Some(stream) = authenticate(&handshake, tcp, peer).await else {
        return;
    };
    let client_id = uuid::Uuid::new_v4().to_string();
    match stream.peer_certificate_subject() {
        Some(subject) => {
            info!(peer = %peer, client = %client_id, tls = %stream.description(), certificate = %subject, "New remote connection")
        }
        None => {
            info!(peer = %peer, client = %client_id, tls = %stream.description(), "New remote connection")
        }
    }
    session::serve(daemon, routes, stream, client_id, peer.to_string()).await;
}

/// The TLS handshake of one accepted connection under the admission's bounds; `None` (logged
/// within the log budget) when it was refused or failed.
pub async fn authenticate(
    handshake: &Handshake,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream> {
    if let Some(ms) = sbd_user_timeout_ms() {
        // Like Pacemaker: with a hardware watchdog, a dead peer must be noticed well inside its timeout.
        let _ = socket2::SockRef::from(&tcp).set_tcp_user_timeout(Some(Duration::from_millis(ms)));
    }
    let _ = tcp.set_nodelay(true);
    let slot = match handshake.admission.begin(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            unauthenticated_failure(&handshake.admission, || match refusal {
                Refusal::TooManyPending(n) => {
                    warn!(peer = %peer, limit = n, "Connection closed: too many TLS handshakes in progress")
                }
                Refusal::TooManyFromAddress(n) => {
                    warn!(peer = %peer, limit = n, "Connection closed: too many TLS handshakes in progress from this address")
                }
            });
            return None;
        }
    };
    let accepted = handshake.tls.accept(tcp, handshake.timeout).await;
    drop(slot);
    match accepted {
        Ok(s) => Some(s),
        Err(e) => {
            unauthenticated_failure(&handshake.admission, || match &handshake.tls {
                TlsServer::Psk(_) => {
                    warn!(peer = %peer, error = %e, "TLS handshake failed (wrong key, plaintext client, or timeout); connection closed")
                }
                TlsServer::X509(_) => {
                    warn!(peer = %peer, error = %e, "TLS handshake failed (X.509: the client sent no certificate, one our CA did not sign, or a revoked one; or the client does not trust our certificate); connection closed")
                }
            });
            None
        }
    }
}

/// Logs one failure of an unauthenticated peer (through `log`) within the admission's log budget.
fn unauthenticated_failure(admission: &Admission, log: impl FnOnce()) {
    let decision = admission.failure(Instant::now());
    if let Some(count) = decision.unlogged_in_closed_window {
        log_unlogged(admission, count);
    }
    if decision.log {
        log();
        if decision.last_before_quiet {
            let limits = admission.limits();
            warn!(
                window_secs = limits.log_window.as_secs(),
                "{} failed or refused connections from unauthenticated peers logged in this window; further ones are counted, not logged, until it ends",
                limits.log_burst
            );
        }
    }
}

/// The count of a log window's failures that were not logged one by one.
pub fn log_unlogged(admission: &Admission, count: u64) {
    warn!(
        count,
        window_secs = admission.limits().log_window.as_secs(),
        "Failed or refused connections from unauthenticated peers not logged in the last window"
    );
}

fn sbd_user_timeout_ms() -> Option<u64> {
    let v = std::env::var("SBD_WATCHDOG_TIMEOUT").ok()?;
    let ms = super::requests::parse_duration_ms(&v)?;
    (ms > 0).then_some(ms as u64 / 2)
}
