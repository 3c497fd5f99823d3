//! The CIB gateway: an optional second listener (`KUBEMAKER_CIB_GATEWAY_PORT`, off unless set)
//! through which a client holding the Pacemaker Remote authkey reaches the cluster's CIB over this
//! node's cluster connection, so the controller needs no remote CIB port and no password.
//!
//! - Clients speak the remote CIB port's protocol (login, `cib_command`s, `cib_notify`), over
//!   TLS-PSK with the authkey under [`IDENTITY`]; the cluster's own identity is refused here, and
//!   ours on the cluster port (`authkey::IdentityRule`).
//! - Each client becomes one IPC proxy session to `cib_rw` on the newest cluster connection, the
//!   same path local `cibadmin` takes (`local_ipc`): `new`, `request`s, `destroy`; the cluster
//!   answers with `response`s and `event`s, which `proxy` routes here by the session's prefix.
//! - Only `cib_command`s with a CIB operation pass; anything else is refused and logged. The
//!   server name is fixed, so nothing can reach the executor, attrd or the controller.
//! - Bounded: connections ([`Limits::max_clients`]), message size (the daemon's), requests in
//!   flight, messages queued for a client that does not read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

use super::clients::Clients;
use super::daemon::Daemon;
use crate::tls::TlsStream;
use crate::wire::cib_gateway::{IDENTITY, RC_NO_CLUSTER};
use crate::wire::ipc::flags;
use crate::wire::{Connection, Element, ReadError};

/// Session ids of gateway clients start with this, so the proxy can tell them from local tools'.
pub const SESSION_PREFIX: &str = "kubemaker-cib-gateway-";

/// `cib_sync_call`: the gateway relays only synchronous calls (their reply is an IPC response).
const CIB_SYNC_CALL: i64 = 0x1000;

/// The CIB operations a client may send (what `cibadmin`, `crm_*` tools and kubemaker use; not
/// `cib_erase`, which no client of a running cluster needs).
const CIB_OPERATIONS: &[&str] = &[
    "cib_query",
    "cib_apply_diff",
    "cib_modify",
    "cib_create",
    "cib_delete",
    "cib_replace",
    "cib_upgrade",
    "cib_bump",
    "cib_ping",
    "cib_schemas",
    "cib_notify",
];

/// `-EOPNOTSUPP`: the reply to an operation the gateway does not carry.
const RC_NOT_SUPPORTED: i64 = -95;
/// `-ETIME`: the cluster did not answer in time.
const RC_TIMEOUT: i64 = -62;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Logged-in clients at once; more are refused at once.
    pub max_clients: usize,
    /// Time from the end of the handshake to the login, and for the cluster to open the session.
    pub login_timeout: Duration,
    /// Time the cluster may take to answer one request.
    pub request_timeout: Duration,
    /// Messages from the cluster queued for one client; a client that stops reading is dropped.
    pub queued_messages: usize,
    /// Time one write to a client may block.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: 16,
            login_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            queued_messages: 1024,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// The gateway's clients, by proxy session: where the cluster's answers for each go.
pub struct GatewaySessions {
    sessions: Mutex<HashMap<String, Route>>,
    slots: Arc<Semaphore>,
    limits: Limits,
}

struct Route {
    provider: String,
    tx: mpsc::Sender<Element>,
}

impl GatewaySessions {
    pub fn new(limits: Limits) -> Arc<GatewaySessions> {
        Arc::new(GatewaySessions {
            sessions: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(limits.max_clients)),
            limits,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Route>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An `event`, `response` or `destroy` from cluster connection `provider` for one of our
    /// sessions. A session we do not know (any more) is destroyed on the cluster side; a client
    /// whose queue is full is dropped (its task sees the closed channel).
    pub fn from_cluster(&self, clients: &Clients, provider: &str, msg: Element) {
        let session = msg.attr("lrmd_ipc_session").unwrap_or_default().to_string();
        let op = msg.attr("lrmd_ipc_op").unwrap_or_default().to_string();
        let mut sessions = self.lock();
        match sessions.get(&session) {
            Some(route) if route.tx.try_send(msg).is_ok() => {}
            Some(_) => {
                warn!(
                    session,
                    "CIB gateway client does not read its messages; dropping it"
                );
                sessions.remove(&session);
            }
            None if op != "destroy" => {
                drop(sessions);
                clients.send(provider, proxy_op("destroy", &session));
            }
            None => {}
        }
    }

    /// A cluster connection ended: the clients it carried go too.
    pub fn provider_gone(&self, provider: &str) {
        self.lock().retain(|_, r| r.provider != provider);
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

fn proxy_op(op: &str, session: &str) -> Element {
    Element::new("lrmd_ipc_proxy")
        .with_attr("lrmd_ipc_op", op)
        .with_attr("lrmd_ipc_session", session)
}

/// Why a client's connection ended.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("closed by the client")]
    ClientClosed,
    #[error("{0}")]
    Client(String),
    #[error("the cluster connection carrying it ended")]
    ClusterGone,
    #[error("the cluster closed the CIB session")]
    ClusterClosed,
    #[error("refused: {0}")]
    Refused(String),
}

/// Serves one client after its TLS handshake, until it or the cluster side goes.
pub async fn serve(
    daemon: Arc<Daemon>,
    sessions: Arc<GatewaySessions>,
    stream: TlsStream,
    peer: SocketAddr,
) {
    let limits = sessions.limits;
    let mut conn = Connection::new(stream, daemon.max_message);
    let Ok(_slot) = sessions.slots.clone().try_acquire_owned() else {
        warn!(%peer, limit = limits.max_clients, "CIB gateway client refused: too many clients");
        let _ = reply_login_error(&mut conn, limits, -11, "too many CIB gateway clients").await;
        conn.close().await;
        return;
    };
    let login = match tokio::time::timeout(limits.login_timeout, conn.read_message()).await {
        Ok(Ok(Some(m))) if m.name == "cib_command" && m.attr("op") == Some("authenticate") => m,
        Ok(Ok(Some(m))) => {
            warn!(%peer, element = %m.name, "CIB gateway client refused: its first message was not a login");
            conn.close().await;
            return;
        }
        _ => {
            info!(%peer, "CIB gateway client left before logging in");
            conn.close().await;
            return;
        }
    };
    let name = login.attr("name").unwrap_or("unnamed").to_string();
    let Some(provider) = daemon.clients.newest_provider() else {
        warn!(%peer, client = %name, "CIB gateway client refused: no cluster connection on this node");
        let _ = reply_login_error(
            &mut conn,
            limits,
            RC_NO_CLUSTER,
            "this node has no cluster connection to carry CIB requests",
        )
        .await;
        conn.close().await;
        return;
    };
    let session = format!("{SESSION_PREFIX}{}", uuid::Uuid::new_v4());
    let (tx, mut rx) = mpsc::channel(limits.queued_messages);
    sessions.lock().insert(
        session.clone(),
        Route {
            provider: provider.clone(),
            tx,
        },
    );
    let mut relay = Relay {
        daemon: &daemon,
        provider: &provider,
        session: &session,
        proxy_name: format!("{IDENTITY}-{peer}"),
        next_id: 0,
    };
    info!(%peer, client = %name, session = %session, "CIB gateway client connected; opening a CIB session over the cluster connection");
    let end = match relay.open(&mut rx, &name, limits).await {
        Err(e) => {
            let _ = reply_login_error(&mut conn, limits, RC_NO_CLUSTER, &e.to_string()).await;
            e
        }
        Ok(client_id) => {
            let ok = Element::new("cib_result")
                .with_attr("cib_op", "authenticate")
                .with_attr("cib_clientid", &client_id);
            match write(&mut conn, &ok, limits).await {
                Err(e) => e,
                Ok(()) => relay.run(&mut conn, &mut rx, limits).await,
            }
        }
    };
    sessions.lock().remove(&session);
    daemon
        .clients
        .send(&provider, proxy_op("destroy", &session));
    info!(%peer, client = %name, session = %session, reason = %end, "CIB gateway client disconnected");
    conn.close().await;
}

async fn reply_login_error(
    conn: &mut Connection<TlsStream>,
    limits: Limits,
    rc: i64,
    why: &str,
) -> Result<(), End> {
    let refusal = Element::new("cib_result")
        .with_attr("cib_op", "authenticate")
        .with_attr("cib_rc", rc)
        .with_attr("cib_err", why);
    write(conn, &refusal, limits).await
}

async fn write(conn: &mut Connection<TlsStream>, msg: &Element, limits: Limits) -> Result<(), End> {
    match tokio::time::timeout(limits.write_timeout, conn.write_message(0, msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(End::Client(format!("write failed: {e}"))),
        Err(_) => Err(End::Client(format!(
            "the client read nothing for {:?}",
            limits.write_timeout
        ))),
    }
}

/// One client's proxy session with the cluster.
struct Relay<'a> {
    daemon: &'a Daemon,
    provider: &'a str,
    session: &'a str,
    /// The client name the cluster logs for this session.
    proxy_name: String,
    next_id: u32,
}

impl Relay<'_> {
    /// Sends `xml` to the cluster's `cib_rw` as this session's next request; its id.
    fn request(&mut self, xml: Element) -> Result<u32, End> {
        self.next_id += 1;
        let request = proxy_op("request", self.session)
            .with_attr("lrmd_ipc_client", &self.proxy_name)
            // What a tool run by root on this node is: the cluster applies no ACL to it.
            .with_attr("lrmd_ipc_user", "root")
            .with_attr("lrmd_ipc_msg_id", self.next_id)
            .with_attr(
                "lrmd_ipc_msg_flags",
                flags::CLIENT_RESPONSE | flags::PROXIED,
            )
            .with_child(Element::new("lrmd_ipc_msg").with_child(xml));
        if self.daemon.clients.send(self.provider, request) {
            Ok(self.next_id)
        } else {
            Err(End::ClusterGone)
        }
    }

    /// Opens the session (`new`) and registers with the CIB manager, as a local tool does;
    /// the client id the CIB gave us.
    async fn open(
        &mut self,
        rx: &mut mpsc::Receiver<Element>,
        name: &str,
        limits: Limits,
    ) -> Result<String, End> {
        let new = proxy_op("new", self.session).with_attr("lrmd_ipc_server", "cib_rw");
        if !self.daemon.clients.send(self.provider, new) {
            return Err(End::ClusterGone);
        }
        let hello = Element::new("cib_command")
            .with_attr("t", "cib")
            .with_attr("cib_op", "register")
            .with_attr("cib_clientname", name)
            .with_attr("cib_callopt", CIB_SYNC_CALL);
        let id = self.request(hello)?;
        let deadline = tokio::time::Instant::now() + limits.login_timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => {
                    return Err(End::Refused(format!(
                        "the cluster did not open a CIB session within {:?}",
                        limits.login_timeout
                    )));
                }
                Ok(None) => return Err(End::ClusterGone),
                Ok(Some(m)) => m,
            };
            match classify(&msg) {
                FromCluster::Destroy => return Err(End::ClusterClosed),
                FromCluster::Response(rid, inner) if rid == id => {
                    return Ok(inner.attr("cib_clientid").unwrap_or_default().to_string());
                }
                _ => {}
            }
        }
    }

    /// Relays requests one at a time: a client's next request waits for the previous reply,
    /// as the CIB manager answers one synchronous call per client at a time.
    async fn run(
        &mut self,
        conn: &mut Connection<TlsStream>,
        rx: &mut mpsc::Receiver<Element>,
        limits: Limits,
    ) -> End {
        let mut waiting: Option<Pending> = None;
        loop {
            let deadline = waiting.as_ref().map(|w| w.deadline);
            tokio::select! {
                from_cluster = rx.recv() => {
                    let Some(msg) = from_cluster else { return End::ClusterGone };
                    match classify(&msg) {
                        FromCluster::Destroy => return End::ClusterClosed,
                        FromCluster::Event(inner) => {
                            if let Err(e) = write(conn, inner, limits).await {
                                return e;
                            }
                        }
                        FromCluster::Response(id, inner) => {
                            // The reply to the pending request; a cib_notify's is not passed on.
                            if let Some(Pending { ack_only: false, .. }) = waiting.take_if(|w| w.id == id)
                                && let Err(e) = write(conn, inner, limits).await
                            {
                                return e;
                            }
                        }
                        FromCluster::Malformed => {
                            warn!(session = self.session, "Malformed IPC proxy message from the cluster");
                        }
                    }
                }
                _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    if let Some(Pending { request, ack_only: false, .. }) = waiting.take() {
                        warn!(session = self.session, op = request.attr("cib_op").unwrap_or(""), "The cluster did not answer a CIB gateway request in time");
                        if let Err(e) = write(conn, &refusal(&request, RC_TIMEOUT), limits).await {
                            return e;
                        }
                    }
                }
                read = conn.read_message(), if waiting.is_none() => match read {
                    Ok(Some(msg)) => match admit(&msg) {
                        Admitted::Cib { mut request, notify } => {
                            // The reply must come back as an IPC response.
                            let opts = request.attr_i64("cib_callopt").unwrap_or(0) | CIB_SYNC_CALL;
                            request.set_attr("cib_callopt", opts);
                            let id = match self.request(request.clone()) {
                                Ok(id) => id,
                                Err(e) => return e,
                            };
                            let deadline = tokio::time::Instant::now() + limits.request_timeout;
                            waiting = Some(Pending { id, deadline, ack_only: notify, request });
                        }
                        Admitted::RefusedOperation(op) => {
                            warn!(session = self.session, op, "CIB gateway refused an operation it does not carry");
                            if let Err(e) = write(conn, &refusal(&msg, RC_NOT_SUPPORTED), limits).await {
                                return e;
                            }
                        }
                        Admitted::NotCib(element) => {
                            let _ = write(conn, &refusal(&msg, RC_NOT_SUPPORTED), limits).await;
                            return End::Refused(format!("<{element}> is not a CIB request; only CIB operations pass the gateway"));
                        }
                    },
                    Ok(None) => return End::ClientClosed,
                    Err(ReadError::Wire(e)) => return End::Client(format!("unreadable message: {e}")),
                    Err(ReadError::Transport(e)) => return End::Client(format!("read failed: {e}")),
                }
            }
        }
    }
}

/// The request of a client awaiting its reply.
struct Pending {
    /// Its IPC message id.
    id: u32,
    deadline: tokio::time::Instant,
    /// A `cib_notify`, whose acknowledgement the remote CIB port never sends: not passed on.
    ack_only: bool,
    request: Element,
}

/// A `cib-reply` refusing `request` with `rc`.
fn refusal(request: &Element, rc: i64) -> Element {
    let mut reply = Element::new("cib-reply")
        .with_attr("t", "cib")
        .with_attr("cib_rc", rc);
    for attr in ["cib_op", "cib_callid"] {
        if let Some(v) = request.attr(attr) {
            reply.set_attr(attr, v);
        }
    }
    reply
}

/// What the gateway makes of one client message.
#[derive(Debug, PartialEq)]
enum Admitted {
    /// A CIB request to relay; `notify` when it is a notification (un)registration, whose
    /// acknowledgement the client does not expect.
    Cib {
        request: Element,
        notify: bool,
    },
    RefusedOperation(String),
    NotCib(String),
}

fn admit(msg: &Element) -> Admitted {
    if msg.name != "cib_command" || msg.attr("t").is_some_and(|t| t != "cib") {
        return Admitted::NotCib(msg.name.clone());
    }
    let op = msg.attr("cib_op").unwrap_or_default();
    if !CIB_OPERATIONS.contains(&op) {
        return Admitted::RefusedOperation(op.to_string());
    }
    Admitted::Cib {
        request: msg.clone(),
        notify: op == "cib_notify",
    }
}

#[derive(Debug, PartialEq)]
enum FromCluster<'a> {
    Response(u32, &'a Element),
    Event(&'a Element),
    Destroy,
    Malformed,
}

fn classify(msg: &Element) -> FromCluster<'_> {
    let inner = msg.child("lrmd_ipc_msg").and_then(|m| m.children.first());
    match (msg.attr("lrmd_ipc_op").unwrap_or_default(), inner) {
        ("destroy", _) => FromCluster::Destroy,
        ("event", Some(inner)) => FromCluster::Event(inner),
        ("response", Some(inner)) => {
            let id = msg
                .attr_i64("lrmd_ipc_msg_id")
                .and_then(|i| u32::try_from(i).ok());
            match id {
                Some(id) => FromCluster::Response(id, inner),
                None => FromCluster::Malformed,
            }
        }
        _ => FromCluster::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cib(op: &str) -> Element {
        Element::new("cib_command")
            .with_attr("t", "cib")
            .with_attr("cib_op", op)
            .with_attr("cib_callid", "7")
    }

    #[test]
    fn only_cib_operations_pass() {
        assert!(matches!(
            admit(&cib("cib_query")),
            Admitted::Cib { notify: false, .. }
        ));
        assert!(matches!(
            admit(&cib("cib_apply_diff")),
            Admitted::Cib { notify: false, .. }
        ));
        assert!(matches!(
            admit(&cib("cib_notify")),
            Admitted::Cib { notify: true, .. }
        ));
        // The CIB manager's cluster-internal operations are not for clients.
        for op in [
            "cib_erase",
            "cib_shutdown_req",
            "cib_sync",
            "cib_commit_transact",
            "",
            "register",
        ] {
            assert_eq!(
                admit(&cib(op)),
                Admitted::RefusedOperation(op.into()),
                "{op}"
            );
        }
        let exec = Element::new("lrmd_command")
            .with_attr("lrmd_op", "lrmd_rsc_exec")
            .with_attr("lrmd_rsc_action", "start");
        assert_eq!(admit(&exec), Admitted::NotCib("lrmd_command".into()));
        let attrd = cib("cib_query").with_attr("t", "attrd");
        assert_eq!(admit(&attrd), Admitted::NotCib("cib_command".into()));
    }

    #[test]
    fn cluster_messages_by_kind() {
        let inner = Element::new("cib-reply").with_attr("cib_callid", "7");
        let wrap = |op: &str| {
            proxy_op(op, "s")
                .with_attr("lrmd_ipc_msg_id", 3)
                .with_child(Element::new("lrmd_ipc_msg").with_child(inner.clone()))
        };
        assert_eq!(
            classify(&wrap("response")),
            FromCluster::Response(3, &inner)
        );
        assert_eq!(classify(&wrap("event")), FromCluster::Event(&inner));
        assert_eq!(classify(&proxy_op("destroy", "s")), FromCluster::Destroy);
        assert_eq!(classify(&proxy_op("response", "s")), FromCluster::Malformed);
        let bad_id = wrap("response").with_attr("lrmd_ipc_msg_id", -1);
        assert_eq!(classify(&bad_id), FromCluster::Malformed);
    }

    #[test]
    fn refusal_names_the_call() {
        let r = refusal(&cib("cib_erase"), RC_NOT_SUPPORTED);
        assert_eq!(r.name, "cib-reply");
        assert_eq!(r.attr("cib_callid"), Some("7"));
        assert_eq!(r.attr("cib_op"), Some("cib_erase"));
        assert_eq!(r.attr_i64("cib_rc"), Some(-95));
    }
}
