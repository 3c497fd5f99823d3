//! A client for Pacemaker's remote CIB port (`remote-tls-port`, anonymous-DH TLS on 2.1.x; or
//! plaintext `remote-clear-port`, for tests).
//!
//! - One long-lived command connection, one request at a time (the plaintext server drops
//!   pipelined bytes, and reads after writes must wait for the write's reply anyway). Every request
//!   has a timeout: the server does not answer unknown operations at all.
//! - Writes are `cib_apply_diff` patches carrying the version they were computed from; on -205
//!   the client re-reads, re-plans and retries with backoff ([`CibClient::apply_with_retry`]).
//! - Notifications come on a separate connection ([`CibClient::watch`]) as a stream of diffs, with
//!   a resync event whenever the version chain has a gap or the connection was re-made.
//! - Several endpoints (one per cluster node): the client fails over and backs off between rounds.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::tls::{self, TlsStream};
use crate::wire::{self, Element, FrameReader};

use super::model::{Cib, CibVersion};
use super::plan::{self, DesiredNode, Plan};
use super::validate::{self, Problem};

/// A password. Never printed: `Debug` shows `<redacted>` and there is no `Display`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The clear text, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `remote-tls-port`: anonymous Diffie-Hellman TLS (Pacemaker 2.1.x).
    Tls,
    /// `remote-clear-port`: no encryption; the password crosses the network in clear. Tests only.
    Plain,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts of one write when the CIB keeps changing underneath (-205).
    pub write_attempts: u32,
    /// Rounds over all endpoints before giving up on connecting.
    pub connect_rounds: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            write_attempts: 10,
            connect_rounds: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with a little jitter so several writers do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = base.mul_f64(f64::from(nanos % 1000) / 4000.0); // up to +25%
        base + jitter
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoints: Vec<Endpoint>,
    pub transport: Transport,
    pub user: String,
    pub password: Secret,
    /// Shown in Pacemaker's logs and in the CIB's `update-client`.
    pub client_name: String,
    /// TCP connect plus TLS handshake, per endpoint.
    pub connect_timeout: Duration,
    /// Login reply; PAM can delay a refusal by 3 s on Debian.
    pub login_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

pub const DEFAULT_USER: &str = "hacluster";

impl ClientConfig {
    pub fn new(endpoints: Vec<Endpoint>, transport: Transport, password: Secret) -> ClientConfig {
        ClientConfig {
            endpoints,
            transport,
            user: DEFAULT_USER.into(),
            password,
            client_name: "kubemaker".into(),
            connect_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }

    /// Settings from the variables Pacemaker's own tools read: `CIB_server` (here also a
    /// comma-separated list, one per cluster node), `CIB_port`, `CIB_user`, `CIB_passwd`,
    /// `CIB_encrypted` (default true).
    pub fn from_env() -> Result<ClientConfig, CibError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let servers = var("CIB_server").unwrap_or_else(|| "localhost".into());
        let port = var("CIB_port").ok_or_else(|| {
            CibError::Config("CIB_port is not set; set it to the cluster's remote-tls-port (or remote-clear-port)".into())
        })?;
        let encrypted = var("CIB_encrypted").is_none_or(|v| super::model::is_true(&v));
        let password = var("CIB_passwd").ok_or_else(|| {
            CibError::Config("CIB_passwd is not set; set it to the password of the CIB user".into())
        })?;
        let mut cfg = ClientConfig::new(
            parse_endpoints(&servers, &port)?,
            if encrypted {
                Transport::Tls
            } else {
                Transport::Plain
            },
            Secret::new(password),
        );
        if let Some(u) = var("CIB_user") {
            cfg.user = u;
        }
        Ok(cfg)
    }
}

/// `host1,host2:5990,[::1]:5989` with `default_port` for entries without one.
pub fn parse_endpoints(servers: &str, default_port: &str) -> Result<Vec<Endpoint>, CibError> {
    let port: u16 = default_port
        .trim()
        .parse()
        .map_err(|_| CibError::Config(format!("port {default_port:?} is not a TCP port number")))?;
    let mut out = Vec::new();
    for s in servers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, p) = if let Some(rest) = s.strip_prefix('[') {
            match rest.split_once(']') {
                Some((h, tail)) => (h.to_string(), tail.strip_prefix(':')),
                None => return Err(CibError::Config(format!("bad server {s:?}"))),
            }
        } else if s.matches(':').count() == 1 {
            let (h, p) = s.split_once(':').unwrap_or((s, ""));
            (h.to_string(), Some(p))
        } else {
            (s.to_string(), None)
        };
        let port = match p {
            Some(p) => p
                .parse()
                .map_err(|_| CibError::Config(format!("bad port in server {s:?}")))?,
            None => port,
        };
        out.push(Endpoint { host, port });
    }
    if out.is_empty() {
        return Err(CibError::Config("no CIB server given".into()));
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum CibError {
    #[error(
        "login refused for user {user} by {endpoint} (wrong password, or user not in haclient)"
    )]
    LoginRefused { user: String, endpoint: String },
    #[error(
        "no CIB endpoint reachable; tried {}; check that pacemaker runs there and that remote-tls-port (or remote-clear-port) is set in the CIB and pacemaker was restarted since",
        .tried.join("; ")
    )]
    Unreachable { tried: Vec<String> },
    #[error(
        "{op} got no reply from {endpoint} within {after:?} (the server does not answer unknown operations; or it is overloaded)"
    )]
    Timeout {
        op: String,
        endpoint: String,
        after: Duration,
    },
    #[error("connection to {endpoint} lost during {op}: {reason}")]
    ConnectionLost {
        op: String,
        endpoint: String,
        reason: String,
    },
    #[error("{op} rejected by the CIB: {message} (rc {rc})")]
    Rejected {
        op: String,
        rc: i64,
        message: String,
    },
    #[error(
        "the CIB kept changing while writing ({attempts} attempts got -205 \"update was older than existing configuration\"); try again later"
    )]
    Conflict { attempts: u32 },
    #[error("invalid configuration:\n  - {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - "))]
    Invalid(Vec<Problem>),
    #[error("unexpected reply from the CIB: {0}")]
    Protocol(String),
    #[error("CIB client configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

/// Pacemaker's texts for the legacy return codes the CIB sends (`pcmk_strerror`).
pub fn rc_message(rc: i64) -> &'static str {
    match rc {
        0 => "OK",
        -6 => "No such device or address (the object does not exist)",
        -13 => "Permission denied",
        -17 => "File exists (an object with that id already exists)",
        -22 => "Invalid argument",
        -201 => "Error",
        -203 => "Update does not conform to the configured schema",
        -205 => "Update was older than existing configuration",
        -206 => "Application of update diff failed",
        -207 => "Application of update diff failed, requesting full refresh",
        _ => "unknown error",
    }
}

pub const RC_OLD_DATA: i64 = -205;
pub const RC_DIFF_FAILED: i64 = -206;
pub const RC_NOT_FOUND: i64 = -6;

/// Call options (`enum cib_call_options`, identical in 2.1.5 and 3.0).
pub mod callopt {
    pub const XPATH: u32 = 0x2;
    pub const NO_CHILDREN: u32 = 0x20;
    pub const DRYRUN: u32 = 0x200;
    pub const SYNC_CALL: u32 = 0x1000;
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The whole `<cib>`: configuration, status and version, read atomically.
    All,
    /// One section (`configuration`, `resources`, `nodes`, `status`, …).
    Section(String),
    /// An XPath; several matches come wrapped in `<xpath-query>`.
    XPath(String),
    /// Only the `<cib>` root's attributes: the cheapest way to read the version.
    Version,
}

enum Stream {
    Tls(TlsStream),
    Plain(TcpStream),
}

/// One logged-in connection.
struct Connection {
    stream: Stream,
    frames: FrameReader,
    next_id: u64,
    endpoint: Endpoint,
}

impl Connection {
    async fn open(ep: &Endpoint, cfg: &ClientConfig) -> Result<Connection, CibError> {
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
        let stream = match cfg.transport {
            Transport::Plain => Stream::Plain(tcp),
            Transport::Tls => Stream::Tls(
                tls::connect_anon(tcp, &tls::priorities_anon(), cfg.connect_timeout)
                    .await
                    .map_err(|e| unreachable(format!("TLS handshake failed: {e} (is this the remote-tls-port? remote-clear-port needs CIB_encrypted=false)")))?,
            ),
        };
        let mut conn = Connection {
            stream,
            frames: FrameReader::new(wire::frame::DEFAULT_MAX_MESSAGE),
            next_id: 1,
            endpoint: ep.clone(),
        };
        conn.login(cfg).await?;
        Ok(conn)
    }

    async fn login(&mut self, cfg: &ClientConfig) -> Result<(), CibError> {
        // Built here and dropped right after sending: the only place the password exists as XML.
        let auth = Element::new("cib_command")
            .with_attr("op", "authenticate")
            .with_attr("user", &cfg.user)
            .with_attr("password", cfg.password.expose())
            .with_attr("hidden", "password")
            .with_attr("name", &cfg.client_name);
        let endpoint = self.endpoint.to_string();
        let refused = || CibError::LoginRefused {
            user: cfg.user.clone(),
            endpoint: endpoint.clone(),
        };
        self.send(&auth).await.map_err(|_| refused())?;
        drop(auth);
        // A refusal is a silent close, possibly after PAM's delay.
        match tokio::time::timeout(cfg.login_timeout, self.recv()).await {
            Ok(Ok(Some(reply))) if reply.name == "cib_result" => {
                debug!(endpoint = %self.endpoint, client_id = reply.attr("cib_clientid").unwrap_or(""), "logged in to the CIB");
                Ok(())
            }
            Ok(Ok(Some(other))) => Err(CibError::Protocol(format!(
                "login answered with <{}> instead of <cib_result>",
                other.name
            ))),
            Ok(Ok(None)) | Ok(Err(_)) => Err(refused()),
            Err(_) => Err(CibError::Timeout {
                op: "login".into(),
                endpoint,
                after: cfg.login_timeout,
            }),
        }
    }

    /// Header and payload as two separate writes (two TLS records): pacemaker-based stalls on
    /// one combined record.
    async fn send(&mut self, el: &Element) -> Result<(), String> {
        let msg = wire::encode(self.next_id, el);
        self.next_id += 1;
        match &mut self.stream {
            Stream::Tls(s) => {
                s.write_record(&msg.header)
                    .await
                    .map_err(|e| e.to_string())?;
                s.write_record(&msg.payload)
                    .await
                    .map_err(|e| e.to_string())
            }
            Stream::Plain(s) => {
                s.write_all(&msg.header).await.map_err(|e| e.to_string())?;
                s.write_all(&msg.payload).await.map_err(|e| e.to_string())
            }
        }
    }

    /// The next message; `None` on end of stream. Cancel-safe (partial data stays buffered).
    async fn recv(&mut self) -> Result<Option<Element>, String> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(el) = self.frames.next_message().map_err(|e| e.to_string())? {
                return Ok(Some(el));
            }
            let n = match &mut self.stream {
                Stream::Tls(s) => s.read(&mut buf).await.map_err(|e| e.to_string())?,
                Stream::Plain(s) => s.read(&mut buf).await.map_err(|e| e.to_string())?,
            };
            if n == 0 {
                return Ok(None);
            }
            self.frames.push(&buf[..n]);
        }
    }

    async fn call(&mut self, req: Request<'_>, cfg: &ClientConfig) -> Result<Element, CibError> {
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
        self.send(&cmd).await.map_err(lost)?;
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
                Ok(Err(e)) => return Err(lost(e)),
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

struct Request<'a> {
    op: &'a str,
    section: Option<String>,
    options: u32,
    data: Option<&'a Element>,
}

/// The reply's return code and first calldata child.
fn reply_parts(reply: &Element) -> (i64, Option<&Element>) {
    let rc = reply.attr_i64("cib_rc").unwrap_or(0);
    let data = reply.child("cib_calldata").and_then(|d| d.children.first());
    (rc, data)
}

/// What one write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Committed `cib_apply_diff` transactions.
    pub transactions: usize,
    /// Attempts rejected because the CIB had changed since it was read.
    pub conflicts: usize,
    /// Patch steps committed.
    pub changes: usize,
    /// The version the last read saw (before the last commit).
    pub last_read: CibVersion,
    /// Advice that did not block the write ([`validate::warnings`]).
    pub warnings: Vec<Problem>,
}

impl ApplyReport {
    fn absorb(&mut self, other: ApplyReport) {
        self.transactions += other.transactions;
        self.conflicts += other.conflicts;
        self.changes += other.changes;
        self.last_read = other.last_read;
    }
}

/// Options for [`CibClient::apply_nodes`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Nodes per transaction.
    pub batch_size: usize,
    /// Validate on the server (`cib_dryrun`) without committing.
    pub dry_run: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            batch_size: 250,
            dry_run: false,
        }
    }
}

/// A connection to the CIB of one cluster, over any of its nodes.
pub struct CibClient {
    cfg: ClientConfig,
    conn: Mutex<Option<Connection>>,
    /// Index of the endpoint that worked last; tried first next time.
    preferred: AtomicUsize,
}

impl fmt::Debug for CibClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CibClient")
            .field("endpoints", &self.cfg.endpoints)
            .field("user", &self.cfg.user)
            .finish_non_exhaustive()
    }
}

/// Tries each endpoint, starting with `first`, for `rounds` rounds with backoff in between.
async fn connect_any(cfg: &ClientConfig, first: usize) -> Result<(usize, Connection), CibError> {
    if cfg.endpoints.is_empty() {
        return Err(CibError::Config("no CIB endpoints configured".into()));
    }
    if cfg.password.is_empty() {
        return Err(CibError::Config(format!(
            "no password for user {}; set CIB_passwd",
            cfg.user
        )));
    }
    let n = cfg.endpoints.len();
    let mut tried = Vec::new();
    let rounds = cfg.retry.connect_rounds.max(1);
    for round in 0..rounds {
        if round > 0 {
            tokio::time::sleep(cfg.retry.backoff(round)).await;
        }
        for k in 0..n {
            let i = (first + k) % n;
            let ep = &cfg.endpoints[i];
            match Connection::open(ep, cfg).await {
                Ok(c) => {
                    info!(endpoint = %ep, "connected to the CIB");
                    return Ok((i, c));
                }
                // Another node would refuse the same password too, after PAM's delay.
                Err(e @ CibError::LoginRefused { .. }) => return Err(e),
                Err(CibError::Unreachable { tried: t }) => {
                    debug!(endpoint = %ep, error = ?t, "CIB endpoint unreachable");
                    tried.extend(t);
                }
                Err(e) => {
                    debug!(endpoint = %ep, error = %e, "CIB endpoint failed");
                    tried.push(format!("{ep}: {e}"));
                }
            }
        }
    }
    // The same endpoint failing the same way in every round is said once.
    tried.dedup();
    Err(CibError::Unreachable { tried })
}

impl CibClient {
    /// Connects and logs in now, so a wrong password or an unreachable cluster shows at once.
    pub async fn connect(cfg: ClientConfig) -> Result<CibClient, CibError> {
        let (i, conn) = connect_any(&cfg, 0).await?;
        Ok(CibClient {
            cfg,
            conn: Mutex::new(Some(conn)),
            preferred: AtomicUsize::new(i),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Sends one request; reconnects (failing over) if there is no connection. A request that
    /// failed on a broken connection is retried once elsewhere only if `idempotent`.
    async fn request(&self, req: Request<'_>, idempotent: bool) -> Result<Element, CibError> {
        let mut guard = self.conn.lock().await;
        let mut attempt = 0;
        loop {
            if guard.is_none() {
                let (i, c) = connect_any(&self.cfg, self.preferred.load(Ordering::Relaxed)).await?;
                self.preferred.store(i, Ordering::Relaxed);
                *guard = Some(c);
            }
            let Some(conn) = guard.as_mut() else {
                continue;
            };
            let req_again = Request {
                op: req.op,
                section: req.section.clone(),
                options: req.options,
                data: req.data,
            };
            match conn.call(req_again, &self.cfg).await {
                Ok(reply) => return Ok(reply),
                Err(e @ (CibError::Timeout { .. } | CibError::ConnectionLost { .. })) => {
                    // The connection's state is unknown now (a late reply could be mistaken
                    // for the next one's): drop it, and move on to the next endpoint.
                    warn!(error = %e, "dropping CIB connection");
                    *guard = None;
                    let n = self.cfg.endpoints.len().max(1);
                    let next = (self.preferred.load(Ordering::Relaxed) + 1) % n;
                    self.preferred.store(next, Ordering::Relaxed);
                    attempt += 1;
                    if !idempotent || attempt > 1 {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends any CIB operation and returns the whole `<cib-reply>` (for operations this client
    /// has no method for, e.g. `cib_bump`). Subject to the request timeout like every request.
    pub async fn request_raw(
        &self,
        op: &str,
        section: Option<&str>,
        options: u32,
        data: Option<&Element>,
    ) -> Result<Element, CibError> {
        self.request(
            Request {
                op,
                section: section.map(str::to_string),
                options,
                data,
            },
            false,
        )
        .await
    }

    /// Reads (part of) the CIB.
    pub async fn query(&self, q: &Query) -> Result<Element, CibError> {
        let (section, options) = match q {
            Query::All => (None, 0),
            Query::Section(s) => (Some(s.clone()), 0),
            Query::XPath(x) => (Some(x.clone()), callopt::XPATH),
            Query::Version => (None, callopt::NO_CHILDREN),
        };
        let reply = self
            .request(
                Request {
                    op: "cib_query",
                    section,
                    options,
                    data: None,
                },
                true,
            )
            .await?;
        let (rc, data) = reply_parts(&reply);
        if rc != 0 {
            return Err(CibError::Rejected {
                op: "cib_query".into(),
                rc,
                message: rc_message(rc).into(),
            });
        }
        data.cloned()
            .ok_or_else(|| CibError::Protocol("query reply without data".into()))
    }

    /// The whole CIB, read atomically.
    pub async fn query_cib(&self) -> Result<Element, CibError> {
        let cib = self.query(&Query::All).await?;
        if cib.name != "cib" {
            return Err(CibError::Protocol(format!(
                "whole-CIB query returned <{}>",
                cib.name
            )));
        }
        Ok(cib)
    }

    pub async fn version(&self) -> Result<CibVersion, CibError> {
        Ok(CibVersion::from_element(
            &self.query(&Query::Version).await?,
        ))
    }

    /// Sends one patch as is. `Err(Rejected{rc: -205})` when its source version is stale.
    pub async fn apply_patch(&self, patch: &Element, dry_run: bool) -> Result<(), CibError> {
        let reply = self
            .request(
                Request {
                    op: "cib_apply_diff",
                    section: None,
                    options: if dry_run { callopt::DRYRUN } else { 0 },
                    data: Some(patch),
                },
                false,
            )
            .await?;
        match reply_parts(&reply).0 {
            0 => Ok(()),
            rc => Err(CibError::Rejected {
                op: "cib_apply_diff".into(),
                rc,
                message: rc_message(rc).into(),
            }),
        }
    }

    /// Read-plan-write with optimistic concurrency: `make` gets the whole live CIB and returns the
    /// plan; the patch carries the version read, and when the CIB moved on meanwhile (-205/-206),
    /// the client reads again, calls `make` again and retries with backoff.
    pub async fn apply_with_retry<F>(
        &self,
        mut make: F,
        dry_run: bool,
    ) -> Result<ApplyReport, CibError>
    where
        F: FnMut(&Element) -> Result<Plan, CibError>,
    {
        let mut report = ApplyReport::default();
        let attempts = self.cfg.retry.write_attempts.max(1);
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(self.cfg.retry.backoff(attempt - 1)).await;
            }
            let live = self.query_cib().await?;
            let version = Cib::new(&live).version();
            report.last_read = version;
            let plan = make(&live)?;
            if plan.is_empty() {
                return Ok(report);
            }
            let patch = plan.to_patch(version);
            match self.apply_patch(&patch, dry_run).await {
                Ok(()) => {
                    if !dry_run {
                        report.transactions += 1;
                        report.changes += plan.change_count();
                    }
                    debug!(%version, changes = plan.change_count(), dry_run, "CIB patch applied");
                    return Ok(report);
                }
                Err(CibError::Rejected { rc, .. }) if rc == RC_OLD_DATA || rc == RC_DIFF_FAILED => {
                    report.conflicts += 1;
                    debug!(%version, rc, attempt, "CIB changed since it was read; re-planning");
                }
                Err(CibError::ConnectionLost { .. } | CibError::Timeout { .. })
                    if attempt + 1 < attempts =>
                {
                    // Whether it was applied is unknown; the next read and plan tell.
                    report.conflicts += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Err(CibError::Conflict { attempts })
    }

    /// Validates `desired` against the live CIB, then writes what differs, `batch_size` nodes per
    /// transaction. Nodes already as desired cost nothing.
    pub async fn apply_nodes(
        &self,
        desired: &[DesiredNode],
        opts: &ApplyOptions,
    ) -> Result<ApplyReport, CibError> {
        // Checks across the whole request once (duplicates, shared addresses)…
        let live = self.query_cib().await?;
        let problems = validate::check_against_cib(desired, &live);
        if !problems.is_empty() {
            return Err(CibError::Invalid(problems));
        }
        let mut total = ApplyReport {
            warnings: validate::warnings(desired, &live),
            ..Default::default()
        };
        for w in &total.warnings {
            warn!(node = w.node(), "{w}");
        }
        drop(live);
        for batch in desired.chunks(opts.batch_size.max(1)) {
            // …and each batch against the CIB it is planned on, which may have moved.
            let r = self
                .apply_with_retry(
                    |live| {
                        let problems = validate::check_against_cib(batch, live);
                        if !problems.is_empty() {
                            return Err(CibError::Invalid(problems));
                        }
                        Ok(plan::plan(batch, live))
                    },
                    opts.dry_run,
                )
                .await?;
            total.absorb(r);
        }
        Ok(total)
    }

    /// Subscribes to change notifications on a connection of its own.
    pub async fn watch(&self) -> Result<Watch, CibError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let (i, mut conn) = connect_any(&self.cfg, first).await?;
        subscribe(&mut conn).await?;
        let (tx, rx) = mpsc::channel(1024);
        let cfg = self.cfg.clone();
        let task = tokio::spawn(watch_loop(cfg, i, conn, tx));
        Ok(Watch { rx, task })
    }

    /// Ends the session politely (TLS close_notify).
    pub async fn close(self) {
        if let Some(Connection {
            stream: Stream::Tls(mut s),
            ..
        }) = self.conn.into_inner()
        {
            s.shutdown().await;
        }
    }
}

async fn subscribe(conn: &mut Connection) -> Result<(), CibError> {
    // 2.1.5 sends no reply to this.
    let reg = Element::new("cib_command")
        .with_attr("t", "cib")
        .with_attr("cib_op", "cib_notify")
        .with_attr("cib_notify_type", "cib_diff_notify")
        .with_attr("cib_notify_activate", "1");
    conn.send(&reg)
        .await
        .map_err(|reason| CibError::ConnectionLost {
            op: "cib_notify".into(),
            endpoint: conn.endpoint.to_string(),
            reason,
        })
}

/// One change notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CibDiff {
    /// The operation that caused it (`cib_apply_diff`, `cib_modify`, …).
    pub op: String,
    pub source: CibVersion,
    pub target: CibVersion,
    /// `(operation, path)` of each change; paths name the elements touched.
    pub changes: Vec<(String, String)>,
    /// The whole v2 `<diff>`.
    pub diff: Element,
}

impl CibDiff {
    /// Parses a `<notify t="cib_notify" subt="cib_diff_notify">`; `None` for other messages
    /// or failed operations (which changed nothing).
    pub fn from_notify(msg: &Element) -> Option<CibDiff> {
        if msg.name != "notify" || msg.attr("subt") != Some("cib_diff_notify") {
            return None;
        }
        if msg.attr_i64("cib_rc").unwrap_or(0) != 0 {
            return None;
        }
        let diff = msg.child("cib_update_result")?.child("diff")?;
        let version = diff.child("version")?;
        let changes = diff
            .children
            .iter()
            .filter(|c| c.name == "change")
            .map(|c| {
                (
                    c.attr("operation").unwrap_or("").to_string(),
                    c.attr("path").unwrap_or("").to_string(),
                )
            })
            .collect();
        Some(CibDiff {
            op: msg.attr("cib_op").unwrap_or("").into(),
            source: CibVersion::from_element(version.child("source")?),
            target: CibVersion::from_element(version.child("target")?),
            changes,
            diff: diff.clone(),
        })
    }

    /// Whether it touched the configuration (not only status).
    pub fn touches_configuration(&self) -> bool {
        self.changes
            .iter()
            .any(|(_, p)| p.starts_with("/cib/configuration") || p == "/cib")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Start again from a full read: sent first (so a read after it misses nothing), after a
    /// reconnect, and when a diff does not continue from the previous one.
    Resync {
        reason: String,
    },
    Diff(CibDiff),
    /// The stream ends: no endpoint could be reached again.
    Lost {
        error: String,
    },
}

/// Follows the version chain of diff notifications: each diff must start where the previous
/// one ended, or some change was missed.
#[derive(Debug, Default)]
pub struct VersionChain {
    last: Option<CibVersion>,
}

impl VersionChain {
    /// Records `diff`; returns why a resync is needed if it does not continue the chain.
    pub fn observe(&mut self, diff: &CibDiff) -> Option<String> {
        let gap = match self.last {
            Some(prev) if diff.source != prev => {
                Some(format!("missed changes between {prev} and {}", diff.source))
            }
            _ => None,
        };
        self.last = Some(diff.target);
        gap
    }
}

/// A stream of CIB changes. Dropping it closes its connection.
pub struct Watch {
    rx: mpsc::Receiver<WatchEvent>,
    task: JoinHandle<()>,
}

impl Watch {
    /// The next event; `None` after [`WatchEvent::Lost`].
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }

    /// The receiving half, for callers that prefer the channel itself.
    pub fn receiver(&mut self) -> &mut mpsc::Receiver<WatchEvent> {
        &mut self.rx
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch_loop(
    cfg: ClientConfig,
    mut index: usize,
    mut conn: Connection,
    tx: mpsc::Sender<WatchEvent>,
) {
    let mut reason = "subscribed".to_string();
    loop {
        if tx.send(WatchEvent::Resync { reason }).await.is_err() {
            return;
        }
        let mut chain = VersionChain::default();
        let why = loop {
            match conn.recv().await {
                Ok(Some(msg)) => {
                    let Some(diff) = CibDiff::from_notify(&msg) else {
                        continue;
                    };
                    if let Some(reason) = chain.observe(&diff)
                        && tx.send(WatchEvent::Resync { reason }).await.is_err()
                    {
                        return;
                    }
                    if tx.send(WatchEvent::Diff(diff)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break "closed by the server".to_string(),
                Err(e) => break e,
            }
        };
        warn!(endpoint = %conn.endpoint, reason = %why, "CIB notification connection lost; reconnecting");
        let next = (index + 1) % cfg.endpoints.len().max(1);
        match connect_any(&cfg, next).await {
            Ok((i, mut c)) => match subscribe(&mut c).await {
                Ok(()) => {
                    index = i;
                    conn = c;
                    reason = format!("reconnected after: {why}");
                }
                Err(e) => {
                    let _ = tx
                        .send(WatchEvent::Lost {
                            error: e.to_string(),
                        })
                        .await;
                    return;
                }
            },
            Err(e) => {
                let _ = tx
                    .send(WatchEvent::Lost {
                        error: e.to_string(),
                    })
                    .await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let cfg = ClientConfig::new(
            vec![Endpoint {
                host: "node1".into(),
                port: 5989,
            }],
            Transport::Tls,
            Secret::new("hunter2"),
        );
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn endpoints_parse() {
        let eps = parse_endpoints("node1, node2:5990,[::1]:7,[fe80::1]", "5989").unwrap();
        assert_eq!(
            eps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["node1:5989", "node2:5990", "[::1]:7", "[fe80::1]:5989"]
        );
        assert!(parse_endpoints("a:xx", "5989").is_err());
        assert!(parse_endpoints("a", "99999").is_err());
        assert!(parse_endpoints(" , ", "1").is_err());
    }

    #[test]
    fn errors_read_well() {
        let e = CibError::LoginRefused {
            user: "hacluster".into(),
            endpoint: "127.0.0.1:5989".into(),
        };
        assert!(e.to_string().contains("login refused for user hacluster"));
        assert!(
            e.to_string()
                .contains("wrong password, or user not in haclient")
        );
        let e = CibError::Unreachable {
            tried: vec![
                "10.0.0.1:5989: Connection refused".into(),
                "10.0.0.2:5989: timed out".into(),
            ],
        };
        assert!(
            e.to_string()
                .contains("10.0.0.1:5989: Connection refused; 10.0.0.2:5989")
        );
    }

    #[test]
    fn version_chain_reports_gaps() {
        let v = |e, n| CibVersion {
            admin_epoch: 0,
            epoch: e,
            num_updates: n,
        };
        let diff = |s, t| CibDiff {
            op: "cib_modify".into(),
            source: s,
            target: t,
            changes: vec![],
            diff: Element::new("diff"),
        };
        let mut chain = VersionChain::default();
        assert_eq!(chain.observe(&diff(v(3, 1), v(3, 2))), None);
        assert_eq!(chain.observe(&diff(v(3, 2), v(4, 0))), None);
        let gap = chain.observe(&diff(v(4, 5), v(4, 6))).expect("a gap");
        assert_eq!(gap, "missed changes between 0.4.0 and 0.4.5");
        assert_eq!(chain.observe(&diff(v(4, 6), v(4, 7))), None);
    }

    #[test]
    fn notify_parsing_and_backoff() {
        let msg = Element::parse(r#"<notify t="cib_notify" subt="cib_diff_notify" cib_op="cib_apply_diff" cib_rc="0"><cib_update_result><diff format="2"><version><source admin_epoch="0" epoch="3" num_updates="4"/><target admin_epoch="0" epoch="4" num_updates="0"/></version><change operation="create" path="/cib/configuration/resources" position="0"><primitive id="x"/></change></diff></cib_update_result></notify>"#).unwrap();
        let d = CibDiff::from_notify(&msg).unwrap();
        assert_eq!(d.source.to_string(), "0.3.4");
        assert_eq!(d.target.to_string(), "0.4.0");
        assert!(d.touches_configuration());
        let p = RetryPolicy::default();
        assert!(p.backoff(0) >= Duration::from_millis(50));
        assert!(p.backoff(30) <= Duration::from_millis(2500));
    }
}
