//! One logged-in connection to the remote CIB port: TCP, then TLS (or not), then the login, then
//! one request at a time. The stream is a `wire` record transport; framing is `wire::Connection`'s.

use std::io;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::tls::{self, TlsError, TlsStream};
use crate::wire::{self, Element, ReadError, RecordTransport};

use super::config::{ClientConfig, Endpoint, TlsAuth, Transport};
use super::error::{CibError, callopt};

/// Bytes asked of the stream per read (the CIB sends whole configurations).
const READ_BUFFER: usize = 64 * 1024;

/// The CIB port's stream: TLS on remote-tls-port, plain TCP on remote-clear-port.
enum Stream {
    Tls(TlsStream),
    Plain(TcpStream),
}

/// Why the stream failed; any such failure loses the connection.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Each write its own TLS record: pacemaker-based stalls when a message's header and payload
/// come in one record.
impl RecordTransport for Stream {
    type Error = StreamError;

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        Ok(match self {
            Stream::Tls(s) => RecordTransport::read(s, buf).await?,
            Stream::Plain(s) => RecordTransport::read(s, buf).await?,
        })
    }

    async fn write_record(&mut self, data: &[u8]) -> Result<(), StreamError> {
        match self {
            Stream::Tls(s) => s.write_record(data).await?,
            Stream::Plain(s) => RecordTransport::write_record(s, data).await?,
        }
        Ok(())
    }

    /// TLS close_notify; a plain connection is just dropped.
    async fn close(&mut self) {
        if let Stream::Tls(s) = self {
            s.shutdown().await;
        }
    }
}

/// One logged-in connection.
pub(super) struct Connection {
    conn: wire::Connection<Stream>,
    next_id: u64,
    pub(super) endpoint: Endpoint,
}

impl Connection {
    pub(super) async fn open(ep: &Endpoint, cfg: &ClientConfig) -> Result<Connection, CibError> {
        let addr = ep.to_string();
        let unreachable = |reason: String| CibError::Unreachable {
            tried: vec![format!("{addr}: {reason}")],
        };
        let tcp = tokio::time::timeout(
            cfg.connect_timeout,
            TcpStream::connect((ep.host.as_str(), ep.port)),
        )
        .await
        .map_err(|_| {
            unreachable(format!(
                "no TCP connection within {:?}",
                cfg.connect_timeout
            ))
        })?
        .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        if let Some(probes) = DeadPeerProbes::for_timeout(cfg.dead_peer_timeout)
            && let Err(e) = probes.apply(&tcp)
        {
            // Not fatal: the request timeout still bounds every request.
            warn!(endpoint = %ep, error = %e, "cannot set TCP keepalive on the CIB connection");
        }
        let stream = match cfg.transport {
            Transport::Plain => Stream::Plain(tcp),
            Transport::Tls => Stream::Tls(tls_handshake(tcp, cfg).await?.map_err(|e| {
                unreachable(format!(
                    "TLS handshake ({}) failed: {e} ({})",
                    cfg.tls_auth.mode(),
                    handshake_hint(cfg)
                ))
            })?),
        };
        let mut conn = Connection {
            conn: wire::Connection::with_read_buffer(
                stream,
                wire::frame::DEFAULT_MAX_MESSAGE,
                READ_BUFFER,
            ),
            next_id: 1,
            endpoint: ep.clone(),
        };
        conn.login(cfg).await?;
        Ok(conn)
    }

    async fn login(&mut self, cfg: &ClientConfig) -> Result<(), CibError> {
        // Built here and dropped right after sending: the only place the password exists as XML.
        // The gateway authenticated us with the authkey already and takes no password.
        let mut auth = Element::new("cib_command")
            .with_attr("op", "authenticate")
            .with_attr("user", &cfg.user)
            .with_attr("name", &cfg.client_name);
        if cfg.tls_auth.needs_password() {
            auth.set_attr("password", cfg.password.expose());
            auth.set_attr("hidden", "password");
        }
        let endpoint = self.endpoint.to_string();
        let refused = || CibError::LoginRefused {
            user: cfg.user.clone(),
            endpoint: endpoint.clone(),
        };
        self.send(&auth).await.map_err(|_| refused())?;
        drop(auth);
        // A refusal is a silent close, possibly after PAM's delay.
        match tokio::time::timeout(cfg.login_timeout, self.recv()).await {
            // Only the gateway refuses with a reason: its node has no cluster connection.
            Ok(Ok(Some(reply)))
                if reply.name == "cib_result" && reply.attr_i64("cib_rc").unwrap_or(0) != 0 =>
            {
                Err(CibError::Unreachable {
                    tried: vec![format!(
                        "{endpoint}: {} (rc {})",
                        reply.attr("cib_err").unwrap_or("login refused"),
                        reply.attr("cib_rc").unwrap_or_default()
                    )],
                })
            }
            Ok(Ok(Some(reply))) if reply.name == "cib_result" => {
                debug!(endpoint = %self.endpoint, client_id = reply.attr("cib_clientid").unwrap_or(""), "logged in to the CIB");
                Ok(())
            }
            Ok(Ok(Some(other))) => Err(CibError::Protocol(format!(
                "login answered with <{}> instead of <cib_result>",
                other.name
            ))),
            // With TLS 1.3 the server checks a client certificate (or PSK identity) only after our
            // side of the handshake is done, so its refusal arrives here as a TLS alert.
            Ok(Err(ReadError::Transport(StreamError::Tls(e))))
                if !matches!(cfg.tls_auth, TlsAuth::Anonymous) =>
            {
                Err(CibError::Unreachable {
                    tried: vec![format!(
                        "{endpoint}: the server ended the TLS session before answering the login ({e}); in {} mode this usually means it refused our credentials ({})",
                        cfg.tls_auth.mode(),
                        handshake_hint(cfg)
                    )],
                })
            }
            Ok(Ok(None)) | Ok(Err(_)) => Err(refused()),
            Err(_) => Err(CibError::Timeout {
                op: "login".into(),
                endpoint,
                after: cfg.login_timeout,
            }),
        }
    }

    /// Sends `el` as the next message (header and payload each a record of their own).
    pub(super) async fn send(&mut self, el: &Element) -> Result<(), StreamError> {
        let id = self.next_id;
        self.next_id += 1;
        self.conn.write_message(id, el).await
    }

    /// The next message; `None` on end of stream. Cancel-safe (partial data stays buffered).
    /// Any error, a malformed message too, means the connection is lost.
    pub(super) async fn recv(&mut self) -> Result<Option<Element>, ReadError<StreamError>> {
        self.conn.read_message().await
    }

    /// Ends the session politely (TLS close_notify).
    pub(super) async fn close(mut self) {
        self.conn.close().await;
    }

    pub(super) async fn call(
        &mut self,
        req: Request<'_>,
        cfg: &ClientConfig,
    ) -> Result<Element, CibError> {
        let call_id = self.next_id.to_string();
        let mut cmd = Element::new("cib_command")
            .with_attr("t", "cib")
            .with_attr("cib_op", req.op)
            .with_attr("cib_callid", &call_id)
            .with_attr("cib_callopt", req.options | callopt::SYNC_CALL)
            .with_attr("cib_clientname", &cfg.client_name);
        if let Some(s) = &req.section {
            cmd.set_attr("cib_section", s);
        }
        if let Some(d) = req.data {
            cmd.children
                .push(Element::new("cib_calldata").with_child(d.clone()));
        }
        let endpoint = self.endpoint.to_string();
        let lost = |reason: String| CibError::ConnectionLost {
            op: req.op.into(),
            endpoint: endpoint.clone(),
            reason,
        };
        self.send(&cmd).await.map_err(|e| lost(e.to_string()))?;
        let deadline = Instant::now() + cfg.request_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match tokio::time::timeout(left, self.recv()).await {
                Err(_) => {
                    return Err(CibError::Timeout {
                        op: req.op.into(),
                        endpoint,
                        after: cfg.request_timeout,
                    });
                }
                Ok(Err(e)) => return Err(lost(e.to_string())),
                Ok(Ok(None)) => return Err(lost("closed by the server".into())),
                Ok(Ok(Some(m))) => m,
            };
            if msg.name == "cib-reply" && msg.attr("cib_callid") == Some(call_id.as_str()) {
                return Ok(msg);
            }
            debug!(element = %msg.name, "ignoring message while waiting for a reply");
        }
    }
}

/// The TLS handshake `cfg.tls_auth` asks for, with Pacemaker's priorities for that mode. The
/// outer error is our own unusable material (not worth trying another endpoint).
async fn tls_handshake(
    tcp: TcpStream,
    cfg: &ClientConfig,
) -> Result<Result<TlsStream, TlsError>, CibError> {
    let timeout = cfg.connect_timeout;
    let handshake = match &cfg.tls_auth {
        TlsAuth::Anonymous => tls::connect_anon(tcp, &tls::priorities_anon(), timeout).await,
        // Pacemaker 3.0.2's CIB client presents the CIB user as PSK identity.
        TlsAuth::Psk { key } => {
            tls::connect_psk_key(tcp, &cfg.user, key, &tls::priorities_psk(), timeout).await
        }
        TlsAuth::X509(pem) => {
            let creds = tls::X509Credentials::new(pem)?;
            tls::connect_x509(tcp, &creds, &tls::priorities_x509(), timeout).await
        }
        TlsAuth::Gateway { key } => {
            tls::connect_psk_key(
                tcp,
                crate::wire::cib_gateway::IDENTITY,
                key,
                &tls::priorities_psk(),
                timeout,
            )
            .await
        }
    };
    Ok(handshake)
}

/// What usually makes the handshake of each mode fail.
fn handshake_hint(cfg: &ClientConfig) -> String {
    match &cfg.tls_auth {
        TlsAuth::Anonymous => "is this the remote-tls-port, and does the server use anonymous TLS (Pacemaker 2.1, or 3.0 without certificates or cib-credentials)? remote-clear-port needs CIB_encrypted=false".into(),
        TlsAuth::Psk { .. } => format!(
            "does the server's /etc/pacemaker/cib-credentials (Pacemaker 3.0.2+) have the line {}:<this key in hex>?",
            cfg.user
        ),
        TlsAuth::X509(_) => "does the server use certificates, is its certificate signed by our CA, and ours by its CA?".into(),
        TlsAuth::Gateway { .. } => "is this a kubemaker remoted CIB gateway port, and does the node have the same Pacemaker Remote authkey?".into(),
    }
}

/// How a connection notices a cluster node that vanished without a word (power or link lost: no
/// FIN, no RST): TCP keepalive probes on an idle connection, and a TCP user timeout on data left
/// unacknowledged, both within [`ClientConfig::dead_peer_timeout`]. The kernel then fails the
/// socket (ETIMEDOUT), so a waiting notification stream or request ends with
/// [`CibError::ConnectionLost`] and the client fails over to the next endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeadPeerProbes {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes that end the connection.
    pub retries: u32,
    /// Longest time sent data may stay unacknowledged (`TCP_USER_TIMEOUT`; also caps probing).
    pub user_timeout: Duration,
}

impl DeadPeerProbes {
    /// Probes that declare a silent peer dead within `timeout` (at least 3 s: the kernel counts
    /// keepalive times in whole seconds); None when `timeout` is zero (probes off).
    pub(crate) fn for_timeout(timeout: Duration) -> Option<DeadPeerProbes> {
        if timeout.is_zero() {
            return None;
        }
        let total = timeout.as_secs().max(3);
        // A third idle, the rest in probes about a second or more apart.
        let idle = (total / 3).max(1);
        let retries = (total - idle).clamp(1, 4);
        let interval = ((total - idle) / retries).max(1);
        Some(DeadPeerProbes {
            idle: Duration::from_secs(idle),
            interval: Duration::from_secs(interval),
            retries: retries as u32,
            user_timeout: Duration::from_secs(total),
        })
    }

    fn apply(&self, tcp: &TcpStream) -> io::Result<()> {
        let sock = socket2::SockRef::from(tcp);
        sock.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(self.idle)
                .with_interval(self.interval)
                .with_retries(self.retries),
        )?;
        sock.set_tcp_user_timeout(Some(self.user_timeout))
    }
}

pub(super) struct Request<'a> {
    pub(super) op: &'a str,
    pub(super) section: Option<String>,
    pub(super) options: u32,
    pub(super) data: Option<&'a Element>,
}

/// The reply's return code and first calldata child.
pub(super) fn reply_parts(reply: &Element) -> (i64, Option<&Element>) {
    let rc = reply.attr_i64("cib_rc").unwrap_or(0);
    let data = reply.child("cib_calldata").and_then(|d| d.children.first());
    (rc, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probes give up on a silent peer within the timeout asked for, in whole seconds the
    /// kernel accepts (none of them zero).
    #[test]
    fn dead_peer_probes_fit_the_timeout() {
        for secs in [1, 2, 3, 5, 10, 15, 30, 60, 600] {
            let t = Duration::from_secs(secs);
            let p = DeadPeerProbes::for_timeout(t).expect("probes on");
            let budget = t.max(Duration::from_secs(3));
            assert!(p.idle >= Duration::from_secs(1), "{secs}: {p:?}");
            assert!(p.interval >= Duration::from_secs(1), "{secs}: {p:?}");
            assert!(p.retries >= 1, "{secs}: {p:?}");
            assert!(
                p.idle + p.interval * p.retries <= budget,
                "{secs}: probing outlasts the timeout: {p:?}"
            );
            assert_eq!(p.user_timeout, budget, "{secs}: {p:?}");
        }
        let default = DeadPeerProbes::for_timeout(Duration::from_secs(15)).unwrap();
        assert_eq!(
            default,
            DeadPeerProbes {
                idle: Duration::from_secs(5),
                interval: Duration::from_secs(2),
                retries: 4,
                user_timeout: Duration::from_secs(15),
            }
        );
    }

    #[test]
    fn dead_peer_probes_off_at_zero() {
        assert_eq!(DeadPeerProbes::for_timeout(Duration::ZERO), None);
    }
}
