//! PacemakerCluster reconcile: the authkey Secret, the CIB connection (opened, or re-opened when
//! endpoints or credentials change), the cluster's status (DC, quorum, CIB version) and auto-join.
//!
//! The connection goes either to the remote CIB port of the nodes in `spec.endpoints`, or, with
//! `via: remoteNodes`, to the CIB gateway of the chart's Ready remoted pods (see
//! [`remoted_pods::gateway_endpoints`]), authenticated with the cluster's authkey.

use std::collections::BTreeSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::cib::client::{CredentialError, TlsAuth};
use crate::cib::model::{Cib, is_true};
use crate::cib::{CibError, ClientConfig, Endpoint, Secret, Transport};
use crate::wire::Element;

use super::authkey_secret::{self, Ensured};
use super::auto_join::{self, AUTO_JOIN_LABEL};
use super::cluster_connection::{Changed, ClusterConnection};
use super::context::{CibConnection, ClusterSlot, Context, Trigger};
use super::crd::{CibAccess, PacemakerCluster, PacemakerClusterStatus, RemoteNode, TlsMode};
use super::metrics::PACEMAKER_CLUSTER;
use super::remoted_pods::{self, REMOTED_POD_SELECTOR};

/// What `kubemaker render --bootstrap` is for, in messages about a cluster with no kubemaker node.
const BOOTSTRAP_HINT: &str = "join the first node once by hand: `kubemaker render --bootstrap -f NODE.yaml` prints the command to run on one cluster node (and enable remoted.cibGateway in the chart)";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Authkey(#[from] authkey_secret::AuthkeyError),
}

impl ClusterError {
    /// The Event reason and `kubemaker_reconcile_failures_total` label of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ClusterError::Kube(_) => "KubernetesApiError",
            ClusterError::Authkey(_) => "AuthkeyInvalid",
        }
    }
}

/// Why the controller has no connection to a cluster's CIB; the cluster's status shows it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading credentials Secret {name:?}: {source}")]
    ReadCredentials {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("credentials Secret {0:?} does not exist in the controller's namespace")]
    NoCredentials(String),
    #[error("credentialsSecretRef is required unless via: remoteNodes")]
    NoCredentialsRef,
    #[error(
        "no endpoints: list the remote CIB port of every cluster node, or set via: remoteNodes"
    )]
    NoEndpoints,
    #[error(
        "reading the authkey Secret {name:?} (via: remoteNodes authenticates with it): {source}"
    )]
    ReadAuthkey {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "via: remoteNodes authenticates with the Pacemaker authkey, but Secret {0:?} in the controller's namespace has no non-empty \"authkey\" key"
    )]
    NoAuthkey(String),
    #[error(
        "via: remoteNodes: no kubemaker node available (no Ready remoted pod with {REMOTED_POD_SELECTOR} and an IP in the controller's namespace); {BOOTSTRAP_HINT}"
    )]
    NoGatewayNode,
    #[error("credentials Secret {name:?} has no {key:?} key")]
    NoPassword { name: String, key: String },
    #[error("credentials Secret {name:?} has no {key:?} key (the pre-shared key for tlsMode psk)")]
    NoPskKey { name: String, key: String },
    #[error("tlsMode x509 needs x509SecretName")]
    NoX509SecretName,
    #[error("reading the X.509 Secret {name:?}: {source}")]
    ReadX509 {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the X.509 Secret {0:?} does not exist in the controller's namespace")]
    NoX509Secret(String),
    #[error(
        "the X.509 Secret {name:?} has no {key:?} key (a kubernetes.io/tls Secret with ca.crt, as cert-manager issues)"
    )]
    NoX509Part { name: String, key: &'static str },
    #[error("unusable TLS credentials in Secret {name:?}: {source}")]
    BadCredentials {
        name: String,
        #[source]
        source: CredentialError,
    },
    #[error("port {0} out of range")]
    PortOutOfRange(i32),
    #[error("cannot reach the CIB at {endpoints}: {source}")]
    Unreachable {
        endpoints: String,
        #[source]
        source: CibError,
    },
    #[error(
        "cannot reach the CIB through the kubemaker nodes at {endpoints}: {source}; if none of them is connected to the cluster yet, {BOOTSTRAP_HINT}"
    )]
    GatewayUnreachable {
        endpoints: String,
        #[source]
        source: CibError,
    },
}

impl ConnectError {
    /// The Event reason (and status condition reason) of a connection failure.
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectError::NoGatewayNode => NO_KUBEMAKER_NODE,
            _ => "CibUnreachable",
        }
    }

    /// `status.connection` while this error stands.
    fn connection_state(&self) -> &'static str {
        match self {
            ConnectError::NoGatewayNode => WAITING,
            _ => "Failed",
        }
    }
}

/// Condition reason while `via: remoteNodes` finds no kubemaker node to connect through.
const NO_KUBEMAKER_NODE: &str = "NoKubemakerNode";
/// `status.connection` while no kubemaker node is there to connect through.
const WAITING: &str = "Waiting";
/// Longest retry delay of a `via: remoteNodes` connection: the admin's bootstrap command is
/// invisible to Kubernetes (no pod changes), and trying a gateway is cheap (no PAM delay).
const GATEWAY_MAX_RETRY: Duration = Duration::from_secs(30);

/// How often a connected cluster's status is refreshed without a notification.
const RESYNC: Duration = Duration::from_secs(60);
/// Retry delay after a failed connection.
const RETRY_CONNECT: Duration = Duration::from_secs(10);

pub async fn reconcile(
    pc: Arc<PacemakerCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ClusterError> {
    let started = Instant::now();
    let result = reconcile_cluster(&pc, &ctx).await;
    let failure = result.as_ref().err().map(ClusterError::reason);
    ctx.metrics
        .reconciled(PACEMAKER_CLUSTER, started.elapsed(), failure);
    result
}

async fn reconcile_cluster(pc: &PacemakerCluster, ctx: &Context) -> Result<Action, ClusterError> {
    let name = pc.name_any();
    let reference = pc.object_ref(&());
    let secrets: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);

    if pc.metadata.deletion_timestamp.is_some() {
        drop_connection(ctx, &name).await;
        return Ok(Action::await_change());
    }

    match authkey_secret::ensure(&secrets, &pc.spec.authkey_secret_name).await {
        Ok(Ensured::Created) => {
            info!(cluster = %name, secret = %pc.spec.authkey_secret_name, "created the authkey Secret");
            ctx.event(
                &reference,
                EventType::Normal,
                "AuthkeyCreated",
                "CreateAuthkey",
                format!(
                    "created Secret {}/{} with a new 4096-byte Pacemaker authkey; copy it to /etc/pacemaker/authkey on every cluster node",
                    ctx.namespace, pc.spec.authkey_secret_name
                ),
            )
            .await;
        }
        Ok(Ensured::Existing) => {}
        Err(e) => {
            // Reported, not returned: the connection and status do not depend on it.
            let e = ClusterError::from(e);
            ctx.event(
                &reference,
                EventType::Warning,
                e.reason(),
                "CheckAuthkey",
                e.to_string(),
            )
            .await;
            warn!(cluster = %name, error = %e, "authkey Secret unusable");
        }
    }

    let conn = match connect(pc, ctx, &secrets).await {
        Ok(c) => c,
        Err(e) => {
            let message = e.to_string();
            ctx.metrics.set_cib_connected(&name, false);
            ctx.event(
                &reference,
                EventType::Warning,
                e.reason(),
                "Connect",
                message.clone(),
            )
            .await;
            write_status(
                ctx,
                pc,
                PacemakerClusterStatus {
                    connection: Some(e.connection_state().into()),
                    message: Some(message),
                    observed_generation: pc.metadata.generation,
                    ..pc.status.clone().unwrap_or_default()
                },
            )
            .await?;
            // Backoff from RETRY_CONNECT up, so a cluster that is down is not hammered.
            let mut delay = ctx
                .backoff(&format!("pacemakercluster/{name}"))
                .max(RETRY_CONNECT);
            if pc.spec.via == CibAccess::RemoteNodes {
                delay = delay.min(GATEWAY_MAX_RETRY);
            }
            return Ok(Action::requeue(delay));
        }
    };

    let mut status = summarize(&conn.snapshot().cib);
    status.connection = Some("Connected".into());
    status.connected_endpoint = None;
    status.observed_generation = pc.metadata.generation;
    write_status(ctx, pc, status).await?;

    if let Some(aj) = &pc.spec.auto_join {
        apply_auto_join(ctx, &name, &aj.node_selector).await?;
    }
    ctx.succeeded(&format!("pacemakercluster/{name}"));
    Ok(Action::requeue(RESYNC))
}

pub fn error_policy(pc: Arc<PacemakerCluster>, err: &ClusterError, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&format!("pacemakercluster/{}", pc.name_any()));
    warn!(cluster = %pc.name_any(), error = %err, retry_in = ?delay, "PacemakerCluster reconcile failed");
    Action::requeue(delay)
}

/// The open connection for `pc`, opening (or re-opening) it when needed.
async fn connect(
    pc: &PacemakerCluster,
    ctx: &Context,
    secrets: &Api<KubeSecret>,
) -> Result<Arc<dyn CibConnection>, ConnectError> {
    let name = pc.name_any();
    let (cfg, staying) = match pc.spec.via {
        CibAccess::Endpoints => {
            let cfg = client_config(pc, secrets).await?;
            let n = cfg.endpoints.len();
            (cfg, n)
        }
        CibAccess::RemoteNodes => {
            let online = online_kubernetes_nodes(ctx, &name);
            let leaving = leaving_kubernetes_nodes(ctx, &name);
            let pods = ctx.remoted_pods.state();
            let port = u16::try_from(pc.spec.gateway_port())
                .map_err(|_| ConnectError::PortOutOfRange(pc.spec.gateway_port()))?;
            let gateways = remoted_pods::gateway_endpoints(
                pods.iter().map(|p| p.as_ref()),
                &online,
                &leaving,
                port,
            );
            (
                gateway_config(pc, secrets, gateways.endpoints).await?,
                gateways.staying,
            )
        }
    };
    let fingerprint = fingerprint(&cfg, staying);
    {
        let map = ctx.clusters.lock().await;
        if let Some(slot) = map.get(&name)
            && slot.fingerprint == fingerprint
            && slot.conn.is_alive()
        {
            return Ok(slot.conn.clone());
        }
    }
    let endpoints = cfg
        .endpoints
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let via_gateway = matches!(cfg.tls_auth, TlsAuth::Gateway { .. });
    let conn = ClusterConnection::open(&name, cfg, cib_change_sender(ctx), ctx.metrics.clone())
        .await
        .map_err(|source| {
            let endpoints = endpoints.clone();
            if via_gateway {
                ConnectError::GatewayUnreachable { endpoints, source }
            } else {
                ConnectError::Unreachable { endpoints, source }
            }
        })?;
    let conn: Arc<dyn CibConnection> = Arc::new(conn);
    ctx.clusters.lock().await.insert(
        name.clone(),
        ClusterSlot {
            fingerprint,
            conn: conn.clone(),
        },
    );
    ctx.event(
        &pc.object_ref(&()),
        EventType::Normal,
        "CibConnected",
        "Connect",
        format!("connected to the CIB at {endpoints}"),
    )
    .await;
    // Every RemoteNode of this cluster may now be configured.
    let _ = ctx.triggers.send(Trigger::CibChanged(name, Changed::All));
    Ok(conn)
}

/// Change notifications of a connection become reconcile triggers.
fn cib_change_sender(ctx: &Context) -> tokio::sync::mpsc::UnboundedSender<(String, Changed)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Changed)>();
    let triggers = ctx.triggers.clone();
    tokio::spawn(async move {
        while let Some((cluster, changed)) = rx.recv().await {
            let _ = triggers.send(Trigger::CibChanged(cluster, changed));
        }
    });
    tx
}

async fn drop_connection(ctx: &Context, name: &str) {
    if ctx.clusters.lock().await.remove(name).is_some() {
        info!(
            cluster = name,
            "PacemakerCluster deleted; closed its CIB connection"
        );
    }
    ctx.metrics.forget_cluster(name);
}

/// The Kubernetes Nodes whose RemoteNode of `cluster` is Ready (online in Pacemaker): their
/// remoted has a cluster connection, so their gateway is tried first.
fn online_kubernetes_nodes(ctx: &Context, cluster: &str) -> BTreeSet<String> {
    ctx.remote_nodes
        .state()
        .iter()
        .filter(|rn| ctx.cluster_name_of(rn).as_deref() == Some(cluster))
        .filter(|rn| {
            rn.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .filter_map(|rn| rn.spec.kubernetes_node.clone())
        .collect()
}

/// The Kubernetes Nodes whose RemoteNode of `cluster` is being deleted: their gateway goes last.
pub(super) fn leaving_kubernetes_nodes(ctx: &Context, cluster: &str) -> BTreeSet<String> {
    ctx.remote_nodes
        .state()
        .iter()
        .filter(|rn| rn.metadata.deletion_timestamp.is_some())
        .filter(|rn| ctx.cluster_name_of(rn).as_deref() == Some(cluster))
        .filter_map(|rn| rn.spec.kubernetes_node.clone())
        .collect()
}

/// The CIB client configuration for `via: remoteNodes`: the gateways at `endpoints`, PSK with
/// the authkey of the cluster's authkey Secret, no password.
async fn gateway_config(
    pc: &PacemakerCluster,
    secrets: &Api<KubeSecret>,
    endpoints: Vec<Endpoint>,
) -> Result<ClientConfig, ConnectError> {
    let name = &pc.spec.authkey_secret_name;
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| ConnectError::ReadAuthkey {
            name: name.clone(),
            source,
        })?;
    let key = secret
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(authkey_secret::AUTHKEY_KEY))
        .map(|v| v.0)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ConnectError::NoAuthkey(name.clone()))?;
    if endpoints.is_empty() {
        return Err(ConnectError::NoGatewayNode);
    }
    let tls_auth = TlsAuth::gateway(key).map_err(|source| ConnectError::BadCredentials {
        name: name.clone(),
        source,
    })?;
    Ok(controller_client(
        endpoints,
        Transport::Tls,
        tls_auth,
        Secret::new(""),
    ))
}

/// A CIB client configuration with the controller's settings, whichever way it reaches the CIB.
fn controller_client(
    endpoints: Vec<Endpoint>,
    transport: Transport,
    tls_auth: TlsAuth,
    password: Secret,
) -> ClientConfig {
    let mut cfg = ClientConfig::new(endpoints, transport, password);
    cfg.tls_auth = tls_auth;
    cfg.client_name = "kubemaker-controller".into();
    cfg.retry.connect_rounds = 1;
    // Failing connections update the status section several times a second; each update moves
    // the CIB version a versioned write must match, so allow more attempts than a CLI does.
    cfg.retry.write_attempts = 30;
    cfg
}

/// The CIB client configuration, with credentials from the Secret.
async fn client_config(
    pc: &PacemakerCluster,
    secrets: &Api<KubeSecret>,
) -> Result<ClientConfig, ConnectError> {
    let r = pc
        .spec
        .credentials_secret_ref
        .as_ref()
        .ok_or(ConnectError::NoCredentialsRef)?;
    if pc.spec.endpoints.is_empty() {
        return Err(ConnectError::NoEndpoints);
    }
    let secret = secrets
        .get_opt(&r.name)
        .await
        .map_err(|source| ConnectError::ReadCredentials {
            name: r.name.clone(),
            source,
        })?
        .ok_or_else(|| ConnectError::NoCredentials(r.name.clone()))?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| -> Option<String> {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .filter(|s| !s.is_empty())
    };
    let password_key = r.password_key.as_deref().unwrap_or("password");
    let password = text(password_key).ok_or_else(|| ConnectError::NoPassword {
        name: r.name.clone(),
        key: password_key.to_string(),
    })?;
    let user = text(r.username_key.as_deref().unwrap_or("username"))
        .unwrap_or_else(|| crate::cib::client::DEFAULT_USER.to_string());
    let endpoints = pc
        .spec
        .endpoints
        .iter()
        .map(|e| {
            Ok(Endpoint {
                host: e.host.clone(),
                port: u16::try_from(e.port).map_err(|_| ConnectError::PortOutOfRange(e.port))?,
            })
        })
        .collect::<Result<Vec<_>, ConnectError>>()?;
    let (transport, tls_auth) = match pc.spec.tls_mode {
        TlsMode::Anonymous => (Transport::Tls, TlsAuth::Anonymous),
        TlsMode::None => (Transport::Plain, TlsAuth::Anonymous),
        TlsMode::Psk => {
            let key = r.psk_key.as_deref().unwrap_or("psk");
            let hex = text(key).ok_or_else(|| ConnectError::NoPskKey {
                name: r.name.clone(),
                key: key.to_string(),
            })?;
            let auth = TlsAuth::psk_hex(&hex).map_err(|source| ConnectError::BadCredentials {
                name: r.name.clone(),
                source,
            })?;
            (Transport::Tls, auth)
        }
        TlsMode::X509 => {
            let name = pc
                .spec
                .x509_secret_name
                .as_deref()
                .ok_or(ConnectError::NoX509SecretName)?;
            (Transport::Tls, x509_auth(name, secrets).await?)
        }
    };
    let mut cfg = controller_client(endpoints, transport, tls_auth, Secret::new(password));
    cfg.user = user;
    Ok(cfg)
}

/// The controller's certificate, key and CA from a `kubernetes.io/tls` Secret with `ca.crt`.
async fn x509_auth(name: &str, secrets: &Api<KubeSecret>) -> Result<TlsAuth, ConnectError> {
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| ConnectError::ReadX509 {
            name: name.to_string(),
            source,
        })?
        .ok_or_else(|| ConnectError::NoX509Secret(name.to_string()))?;
    let mut data = secret.data.unwrap_or_default();
    let mut part = |key: &'static str| {
        data.remove(key)
            .map(|v| v.0)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ConnectError::NoX509Part {
                name: name.to_string(),
                key,
            })
    };
    let (ca, cert, key) = (part("ca.crt")?, part("tls.crt")?, part("tls.key")?);
    let crl = part("ca.crl").ok();
    TlsAuth::x509(ca, cert, key, crl).map_err(|source| ConnectError::BadCredentials {
        name: name.to_string(),
        source,
    })
}

/// Changes when the connection must be re-opened. The gateway list is hashed as two sets: the
/// gateways on nodes that stay (the first `staying` endpoints) and those on nodes being removed.
/// The list is re-sorted whenever a RemoteNode's readiness changes, and re-opening the
/// connection (a full CIB read and a reconcile of every RemoteNode) for a new order alone would
/// be churn: the client keeps failing over within the list it has. But a node starting to leave
/// moves its gateway from the first set to the second, and re-opening then is wanted: the new
/// session starts on a node that stays, before the removal stops the connection the old one may
/// ride on. The remote CIB port's list is the admin's order (`staying` is ignored).
fn fingerprint(cfg: &ClientConfig, staying: usize) -> u64 {
    let mut h = DefaultHasher::new();
    let mut endpoints: Vec<(&str, u16)> = cfg
        .endpoints
        .iter()
        .map(|e| (e.host.as_str(), e.port))
        .collect();
    if matches!(cfg.tls_auth, TlsAuth::Gateway { .. }) {
        let split = staying.min(endpoints.len());
        endpoints[..split].sort_unstable();
        endpoints[split..].sort_unstable();
        split.hash(&mut h);
    }
    endpoints.hash(&mut h);
    matches!(cfg.transport, Transport::Tls).hash(&mut h);
    cfg.tls_auth.hash(&mut h);
    cfg.user.hash(&mut h);
    cfg.password.expose().hash(&mut h);
    h.finish()
}

/// Pure: the cluster-wide facts the status shows.
pub fn summarize(cib: &Element) -> PacemakerClusterStatus {
    let view = Cib::new(cib);
    let dc = cib.attr("dc-uuid").map(|id| {
        view.section("nodes")
            .and_then(|nodes| {
                nodes
                    .children
                    .iter()
                    .find(|n| n.name == "node" && n.attr("id") == Some(id))
                    .and_then(|n| n.attr("uname"))
            })
            .unwrap_or(id)
            .to_string()
    });
    PacemakerClusterStatus {
        dc,
        quorum: cib.attr("have-quorum").map(is_true),
        cib_version: Some(view.version().to_string()),
        pacemaker_version: view.cluster_option("dc-version").map(str::to_string),
        ..Default::default()
    }
}

async fn write_status(
    ctx: &Context,
    pc: &PacemakerCluster,
    mut status: PacemakerClusterStatus,
) -> Result<(), kube::Error> {
    let previous = pc
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    status.conditions = cluster_conditions(&status, &previous, Timestamp::now());
    if pc.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<PacemakerCluster> = Api::all(ctx.client.clone());
    api.patch_status(
        &pc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Pure: the `Connected` and `Ready` conditions for a cluster status (transition times kept
/// while a condition's status stays the same).
pub fn cluster_conditions(
    status: &PacemakerClusterStatus,
    previous: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    let connected = status.connection.as_deref() == Some("Connected");
    let unreachable = || {
        status
            .message
            .clone()
            .unwrap_or_else(|| "not connected to the CIB".into())
    };
    let failed = if status.connection.as_deref() == Some(WAITING) {
        NO_KUBEMAKER_NODE
    } else {
        "CibUnreachable"
    };
    let (c_ok, c_reason, c_msg) = if connected {
        (true, "Connected", "connected to the CIB".to_string())
    } else {
        (false, failed, unreachable())
    };
    let (r_ok, r_reason, r_msg) = match (connected, status.quorum) {
        (false, _) => (false, failed, unreachable()),
        (true, Some(true)) => (
            true,
            "Quorate",
            format!(
                "the partition has quorum; DC {}",
                status.dc.as_deref().unwrap_or("unknown")
            ),
        ),
        (true, _) => (
            false,
            "NoQuorum",
            "the partition the controller talks to has no quorum".to_string(),
        ),
    };
    let make = |type_: &str, ok: bool, reason: &str, message: String| {
        let st = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == st)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.into(),
            status: st.into(),
            reason: reason.into(),
            message,
            observed_generation: status.observed_generation,
            last_transition_time: since,
        }
    };
    vec![
        make("Connected", c_ok, c_reason, c_msg),
        make("Ready", r_ok, r_reason, r_msg),
    ]
}

async fn apply_auto_join(
    ctx: &Context,
    cluster: &str,
    selector: &std::collections::BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let nodes = ctx.nodes.state();
    let rns = ctx.remote_nodes.state();
    let plan = auto_join::plan(
        cluster,
        selector,
        &nodes.iter().map(|n| n.as_ref()).collect::<Vec<_>>(),
        &rns.iter().map(|r| r.as_ref()).collect::<Vec<_>>(),
    );
    let api: Api<RemoteNode> = Api::all(ctx.client.clone());
    for rn in plan.create {
        let name = rn.name_any();
        match api.create(&PostParams::default(), &rn).await {
            Ok(_) => {
                info!(cluster, node = %name, "auto-join: created RemoteNode");
                if let Some(node) = ctx
                    .nodes
                    .get(&kube::runtime::reflector::ObjectRef::new(&name))
                {
                    ctx.event(
                        &node.object_ref(&()),
                        EventType::Normal,
                        "AutoJoined",
                        "AutoJoin",
                        format!("created RemoteNode {name} for PacemakerCluster {cluster}"),
                    )
                    .await;
                }
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    for name in plan.delete {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                info!(cluster, node = %name, label = AUTO_JOIN_LABEL, "auto-join: Node left; deleting its RemoteNode")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::fixtures::{self, ApiServer, Call, FakeCib, cib_with};
    use serde_json::Value;

    const PASSWORD: &str = "not-a-real-password";

    /// PacemakerCluster `prod`, its CIB at 127.0.0.1:`port` (port 1: nothing listens).
    fn cluster(generation: i64, port: i32) -> PacemakerCluster {
        serde_json::from_value(json!({
            "apiVersion": "kubemaker.io/v1alpha1", "kind": "PacemakerCluster",
            "metadata": {"name": "prod", "uid": "uid-prod", "generation": generation},
            "spec": {
                "endpoints": [{"host": "127.0.0.1", "port": port}],
                "tlsMode": "none",
                "credentialsSecretRef": {"name": "cib-credentials"},
            },
        }))
        .unwrap()
    }

    fn secret(name: &str, key: &str, value: &[u8]) -> Value {
        let secret = KubeSecret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some(fixtures::NAMESPACE.into()),
                ..Default::default()
            },
            data: Some(
                [(key.to_string(), k8s_openapi::ByteString(value.to_vec()))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        };
        serde_json::to_value(secret).unwrap()
    }

    /// The API server of these tests: the credentials Secret exists, the authkey Secret exists
    /// when `authkey`, patches of the cluster are accepted.
    fn api_for(pc: &PacemakerCluster, authkey: bool) -> (kube::Client, ApiServer) {
        let answer = serde_json::to_value(pc).unwrap();
        ApiServer::start(Box::new(move |c: &Call| {
            if c.is("GET", "/secrets/cib-credentials") {
                (
                    200,
                    secret("cib-credentials", "password", PASSWORD.as_bytes()),
                )
            } else if c.is("GET", "/secrets/kubemaker-authkey") && authkey {
                (200, secret("kubemaker-authkey", "authkey", &[7; 4096]))
            } else if c.is("POST", "/secrets") {
                (201, c.body.clone())
            } else if c.is("PATCH", "/pacemakerclusters/prod") {
                (200, answer.clone())
            } else {
                fixtures::status(404, "NotFound")
            }
        }))
    }

    /// The fingerprint the reconciler computes for [`cluster`]'s connection settings.
    fn fingerprint_of(port: u16) -> u64 {
        let endpoints = vec![Endpoint {
            host: "127.0.0.1".into(),
            port,
        }];
        let cfg = ClientConfig::new(endpoints, Transport::Plain, Secret::new(PASSWORD));
        fingerprint(&cfg, 1)
    }

    async fn run(
        pc: &PacemakerCluster,
        authkey: bool,
        cib: Option<Arc<FakeCib>>,
    ) -> (Result<Action, ClusterError>, ApiServer, Arc<Context>) {
        let (client, server) = api_for(pc, authkey);
        let ctx = fixtures::context(client, std::slice::from_ref(pc), &[]);
        if let Some(cib) = cib {
            fixtures::connect(&ctx, "prod", fingerprint_of(1), cib).await;
        }
        let result = reconcile(Arc::new(pc.clone()), ctx.clone()).await;
        (result, server, ctx)
    }

    fn written_status(server: &ApiServer) -> Option<PacemakerClusterStatus> {
        server
            .api_calls()
            .iter()
            .rfind(|c| c.is("PATCH", "/pacemakerclusters/prod/status"))
            .map(|c| serde_json::from_value(c.body["status"].clone()).unwrap())
    }

    /// `(type, status, reason, observedGeneration)` of every condition.
    fn conditions(s: &PacemakerClusterStatus) -> Vec<(String, String, String, Option<i64>)> {
        s.conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.observed_generation,
                )
            })
            .collect()
    }

    fn ready(generation: i64) -> Vec<(String, String, String, Option<i64>)> {
        vec![
            (
                "Connected".into(),
                "True".into(),
                "Connected".into(),
                Some(generation),
            ),
            (
                "Ready".into(),
                "True".into(),
                "Quorate".into(),
                Some(generation),
            ),
        ]
    }

    #[tokio::test]
    async fn create_then_no_op_re_apply_then_spec_change() {
        let cib = Arc::new(FakeCib::new(cib_with("")));

        // Create: a new authkey Secret, the CIB's facts in the status.
        let pc = cluster(1, 1);
        let (result, server, ctx) = run(&pc, false, Some(cib.clone())).await;
        assert_eq!(result.unwrap(), Action::requeue(RESYNC));
        assert_eq!(server.event_reasons(), ["AuthkeyCreated"]);
        let created = server
            .api_calls()
            .into_iter()
            .find(|c| c.is("POST", "/secrets"))
            .expect("the authkey Secret is created");
        let key = created.body["data"]["authkey"].as_str().unwrap_or("");
        assert_eq!(key.len(), 4096usize.div_ceil(3) * 4, "a 4096-byte key");
        let status = written_status(&server).expect("a status patch");
        assert_eq!(status.connection.as_deref(), Some("Connected"));
        assert_eq!(status.dc.as_deref(), Some("node1"));
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(conditions(&status), ready(1));
        assert!(
            ctx.metrics.render().contains(
                "kubemaker_reconcile_total{resource=\"PacemakerCluster\",result=\"ok\"} 1"
            )
        );

        // Again with the status it wrote and the Secret in place: no writes at all.
        let mut again = pc.clone();
        again.status = Some(status.clone());
        let (result, server, _) = run(&again, true, Some(cib.clone())).await;
        assert_eq!(result.unwrap(), Action::requeue(RESYNC));
        let writes: Vec<Call> = server
            .calls()
            .into_iter()
            .filter(|c| c.method != "GET")
            .collect();
        assert!(writes.is_empty(), "{writes:?}");

        // A spec change (same endpoints): the status follows the new generation.
        let mut changed = cluster(2, 1);
        changed.status = Some(status);
        let (result, server, _) = run(&changed, true, Some(cib)).await;
        assert_eq!(result.unwrap(), Action::requeue(RESYNC));
        let status = written_status(&server).expect("a status patch");
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(conditions(&status), ready(2));
    }

    #[tokio::test]
    async fn an_unreachable_cib_is_reported_and_retried() {
        // Nothing listens on port 1 of the loopback address.
        let pc = cluster(1, 1);
        let (result, server, ctx) = run(&pc, true, None).await;
        match result.unwrap() {
            a if a == Action::requeue(RETRY_CONNECT) => {}
            other => panic!("expected a retry after {RETRY_CONNECT:?}: {other:?}"),
        }
        assert_eq!(server.event_reasons(), ["CibUnreachable"]);
        let status = written_status(&server).expect("a status patch");
        assert_eq!(status.connection.as_deref(), Some("Failed"));
        let message = status.message.clone().unwrap_or_default();
        assert!(
            message.starts_with("cannot reach the CIB at 127.0.0.1:1"),
            "{message}"
        );
        assert!(!message.contains(PASSWORD));
        let reasons: Vec<(String, String, Option<i64>)> = status
            .conditions
            .iter()
            .map(|c| (c.status.clone(), c.reason.clone(), c.observed_generation))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("False".into(), "CibUnreachable".into(), Some(1)),
                ("False".into(), "CibUnreachable".into(), Some(1)),
            ]
        );
        assert!(
            ctx.metrics
                .render()
                .contains("kubemaker_cib_connected{cluster=\"prod\"} 0")
        );
    }

    #[tokio::test]
    async fn deletion_closes_the_connection() {
        let cib = Arc::new(FakeCib::new(cib_with("")));
        let mut pc = cluster(1, 1);
        pc.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        let (result, server, ctx) = run(&pc, true, Some(cib)).await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert!(ctx.clusters.lock().await.is_empty());
        assert!(server.calls().is_empty(), "{:?}", server.calls());
    }

    /// tlsMode → the CIB client's TLS settings, and each missing or bad piece named.
    #[tokio::test]
    async fn tls_mode_maps_to_client_credentials() {
        let two = |pairs: &[(&str, &[u8])]| {
            let mut v = secret("cib-credentials", "password", PASSWORD.as_bytes());
            for (k, b) in pairs {
                v["data"][*k] = serde_json::to_value(k8s_openapi::ByteString(b.to_vec())).unwrap();
            }
            v
        };
        let with_psk = two(&[("psk", b"00112233445566778899aabbccddeeff\n")]);
        let bad_psk = two(&[("psk", b"not hex")]);
        let no_ca = {
            let mut v = secret("controller-tls", "tls.crt", b"-----BEGIN CERTIFICATE-----");
            v["data"]["tls.key"] =
                serde_json::to_value(k8s_openapi::ByteString(b"k".to_vec())).unwrap();
            v
        };
        let config_for = |mode: &str, x509: Option<&str>, creds: Value| {
            let mut pc = cluster(1, 1);
            pc.spec.tls_mode = serde_json::from_value(json!(mode)).unwrap();
            pc.spec.x509_secret_name = x509.map(str::to_string);
            let no_ca = no_ca.clone();
            let (client, server) = ApiServer::start(Box::new(move |c: &Call| {
                if c.is("GET", "/secrets/cib-credentials") {
                    (200, creds.clone())
                } else if c.is("GET", "/secrets/controller-tls") {
                    (200, no_ca.clone())
                } else {
                    fixtures::status(404, "NotFound")
                }
            }));
            async move {
                let secrets: Api<KubeSecret> = Api::namespaced(client, fixtures::NAMESPACE);
                let r = client_config(&pc, &secrets).await;
                drop(server);
                r
            }
        };
        let plain = secret("cib-credentials", "password", PASSWORD.as_bytes());

        let cfg = config_for("anonymous", None, plain.clone()).await.unwrap();
        assert_eq!(
            (cfg.transport, cfg.tls_auth),
            (Transport::Tls, TlsAuth::Anonymous)
        );
        let cfg = config_for("none", None, plain.clone()).await.unwrap();
        assert_eq!(cfg.transport, Transport::Plain);
        let cfg = config_for("psk", None, with_psk).await.unwrap();
        assert_eq!(cfg.transport, Transport::Tls);
        assert_eq!(
            cfg.tls_auth,
            TlsAuth::psk_hex("00112233445566778899aabbccddeeff").unwrap()
        );
        assert!(
            !format!("{cfg:?}").contains("00112233"),
            "the key is not printed"
        );

        let err = |r: Result<ClientConfig, ConnectError>| r.unwrap_err().to_string();
        assert!(err(config_for("psk", None, plain.clone()).await).contains(r#"no "psk" key"#));
        assert!(err(config_for("psk", None, bad_psk).await).contains("hexadecimal"));
        assert!(err(config_for("x509", None, plain.clone()).await).contains("x509SecretName"));
        assert!(
            err(config_for("x509", Some("absent"), plain.clone()).await).contains("does not exist")
        );
        assert!(
            err(config_for("x509", Some("controller-tls"), plain).await).contains(r#""ca.crt""#)
        );
    }

    /// PacemakerCluster `prod` with `via: remoteNodes` and nothing else.
    fn gateway_cluster() -> PacemakerCluster {
        serde_json::from_value(json!({
            "apiVersion": "kubemaker.io/v1alpha1", "kind": "PacemakerCluster",
            "metadata": {"name": "prod", "uid": "uid-prod", "generation": 1},
            "spec": {"via": "remoteNodes"},
        }))
        .unwrap()
    }

    /// The gateway configuration's fingerprint for these endpoints and the test key.
    fn gateway_fingerprint(hosts: &[(&str, u16)]) -> u64 {
        gateway_fingerprint_leaving(hosts, 0)
    }

    /// As [`gateway_fingerprint`], the last `leaving` of `hosts` on nodes being removed.
    fn gateway_fingerprint_leaving(hosts: &[(&str, u16)], leaving: usize) -> u64 {
        let endpoints = hosts
            .iter()
            .map(|(h, p)| Endpoint {
                host: h.to_string(),
                port: *p,
            })
            .collect();
        let mut cfg = ClientConfig::new(endpoints, Transport::Tls, Secret::new(""));
        cfg.tls_auth = TlsAuth::gateway(vec![7; 4096]).unwrap();
        fingerprint(&cfg, hosts.len() - leaving)
    }

    async fn run_gateway(
        pods: &[k8s_openapi::api::core::v1::Pod],
        authkey: bool,
        cib: Option<(u64, Arc<FakeCib>)>,
    ) -> (Result<Action, ClusterError>, ApiServer) {
        let pc = gateway_cluster();
        let (client, server) = api_for(&pc, authkey);
        let ctx = fixtures::context_with_pods(client, std::slice::from_ref(&pc), &[], &[], pods);
        if let Some((fp, cib)) = cib {
            fixtures::connect(&ctx, "prod", fp, cib).await;
        }
        (reconcile(Arc::new(pc), ctx).await, server)
    }

    /// The old shape (endpoints and credentials) still reads, and `via` defaults to endpoints.
    #[test]
    fn via_defaults_to_endpoints() {
        let pc = cluster(1, 5989);
        assert_eq!(pc.spec.via, CibAccess::Endpoints);
        assert!(pc.spec.credentials_secret_ref.is_some());
        let g = gateway_cluster();
        assert_eq!(g.spec.via, CibAccess::RemoteNodes);
        assert_eq!(g.spec.gateway_port(), 3122);
        assert!(g.spec.endpoints.is_empty() && g.spec.credentials_secret_ref.is_none());
        let back = serde_json::to_value(&g.spec).unwrap();
        assert_eq!(back["via"], "remoteNodes");
        assert!(back.get("endpoints").is_none(), "{back}");
    }

    #[tokio::test]
    async fn via_remote_nodes_connects_through_the_remoted_pods() {
        let pods = [
            fixtures::remoted_pod("w2", "10.0.0.2"),
            fixtures::remoted_pod("w1", "10.0.0.1"),
        ];
        // The connection open for the same set of gateways (in another order) is kept.
        let cib = Arc::new(FakeCib::new(cib_with("")));
        let fp = gateway_fingerprint(&[("10.0.0.2", 3122), ("10.0.0.1", 3122)]);
        let (result, server) = run_gateway(&pods, true, Some((fp, cib))).await;
        assert_eq!(result.unwrap(), Action::requeue(RESYNC));
        let status = written_status(&server).expect("a status patch");
        assert_eq!(status.connection.as_deref(), Some("Connected"));
        assert!(
            server
                .api_calls()
                .iter()
                .all(|c| !c.path.contains("cib-credentials")),
            "no credentials Secret is read"
        );
    }

    #[tokio::test]
    async fn via_remote_nodes_without_a_node_says_how_to_bootstrap() {
        let (result, server) = run_gateway(&[], true, None).await;
        let delay = match result.unwrap() {
            a if a == Action::requeue(RETRY_CONNECT) => RETRY_CONNECT,
            other => panic!("expected a retry after {RETRY_CONNECT:?}: {other:?}"),
        };
        assert!(delay <= GATEWAY_MAX_RETRY);
        assert_eq!(server.event_reasons(), [NO_KUBEMAKER_NODE]);
        let status = written_status(&server).expect("a status patch");
        assert_eq!(status.connection.as_deref(), Some(WAITING));
        let message = status.message.clone().unwrap_or_default();
        assert!(message.contains("no kubemaker node available"), "{message}");
        assert!(
            message.contains("kubemaker render --bootstrap"),
            "{message}"
        );
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.status == "False" && c.reason == NO_KUBEMAKER_NODE),
            "{:?}",
            status.conditions
        );
    }

    #[tokio::test]
    async fn via_remote_nodes_needs_the_authkey() {
        let pods = [fixtures::remoted_pod("w1", "10.0.0.1")];
        let (result, server) = run_gateway(&pods, false, None).await;
        assert!(result.is_ok());
        let status = written_status(&server).expect("a status patch");
        let message = status.message.unwrap_or_default();
        assert!(
            message.contains(r#"Secret "kubemaker-authkey""#) && message.contains("authkey"),
            "{message}"
        );
        assert_eq!(status.connection.as_deref(), Some("Failed"));
    }

    #[tokio::test]
    async fn via_remote_nodes_unreachable_gateways_name_the_bootstrap() {
        // Nothing listens on port 1.
        let mut pc = gateway_cluster();
        pc.spec.gateway_port = Some(1);
        let (client, server) = api_for(&pc, true);
        let pods = [fixtures::remoted_pod("w1", "127.0.0.1")];
        let ctx = fixtures::context_with_pods(client, std::slice::from_ref(&pc), &[], &[], &pods);
        let result = reconcile(Arc::new(pc), ctx).await;
        assert!(result.is_ok());
        let status = written_status(&server).expect("a status patch");
        let message = status.message.unwrap_or_default();
        assert!(
            message.starts_with("cannot reach the CIB through the kubemaker nodes at 127.0.0.1:1"),
            "{message}"
        );
        assert!(
            message.contains("kubemaker render --bootstrap"),
            "{message}"
        );
    }

    #[test]
    fn gateway_fingerprint_ignores_order_but_not_the_set() {
        let a = gateway_fingerprint(&[("10.0.0.1", 3122), ("10.0.0.2", 3122)]);
        let b = gateway_fingerprint(&[("10.0.0.2", 3122), ("10.0.0.1", 3122)]);
        let c = gateway_fingerprint(&[("10.0.0.1", 3122), ("10.0.0.3", 3122)]);
        let d = gateway_fingerprint(&[("10.0.0.1", 3122)]);
        assert_eq!(a, b, "a new order alone keeps the connection");
        assert_ne!(a, c, "a changed set re-opens it");
        assert_ne!(a, d);
        // The remote CIB port's list is the admin's order.
        let ports = |hosts: &[&str]| {
            let eps = hosts
                .iter()
                .map(|h| Endpoint {
                    host: h.to_string(),
                    port: 5989,
                })
                .collect();
            let n = hosts.len();
            fingerprint(
                &ClientConfig::new(eps, Transport::Tls, Secret::new(PASSWORD)),
                n,
            )
        };
        assert_ne!(ports(&["n1", "n2"]), ports(&["n2", "n1"]));
    }

    /// A node starting to leave re-opens the connection (so that it starts on a node that
    /// stays); a new order within the staying or within the leaving gateways does not.
    #[test]
    fn gateway_fingerprint_sees_nodes_start_to_leave() {
        let (g1, g2, g3) = (("10.0.0.1", 3122), ("10.0.0.2", 3122), ("10.0.0.3", 3122));
        let all_stay = gateway_fingerprint_leaving(&[g1, g2, g3], 0);
        let g1_leaves = gateway_fingerprint_leaving(&[g2, g3, g1], 1);
        assert_ne!(all_stay, g1_leaves, "a node starting to leave re-opens");
        assert_eq!(
            g1_leaves,
            gateway_fingerprint_leaving(&[g3, g2, g1], 1),
            "a new order of the staying gateways alone keeps the connection"
        );
        let two_leave = gateway_fingerprint_leaving(&[g3, g1, g2], 2);
        assert_ne!(g1_leaves, two_leave, "one more leaving re-opens");
        assert_eq!(
            two_leave,
            gateway_fingerprint_leaving(&[g3, g2, g1], 2),
            "a new order of the leaving gateways alone keeps the connection"
        );
        assert_ne!(
            gateway_fingerprint_leaving(&[g1, g2, g3], 3),
            gateway_fingerprint_leaving(&[g1, g2, g3], 0),
            "all leaving differs from none leaving"
        );
    }

    #[test]
    fn summary_names_the_dc() {
        let cib = Element::parse(
            r#"<cib admin_epoch="0" epoch="7" num_updates="3" dc-uuid="1" have-quorum="1"><configuration><crm_config><cluster_property_set id="cib-bootstrap-options"><nvpair id="o1" name="dc-version" value="2.1.5-a3f44794f94"/></cluster_property_set></crm_config><nodes><node id="1" uname="node1"/></nodes><resources/><constraints/></configuration><status/></cib>"#,
        )
        .unwrap();
        let s = summarize(&cib);
        assert_eq!(s.dc.as_deref(), Some("node1"));
        assert_eq!(s.quorum, Some(true));
        assert_eq!(s.cib_version.as_deref(), Some("0.7.3"));
        assert_eq!(s.pacemaker_version.as_deref(), Some("2.1.5-a3f44794f94"));

        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let mut st = s.clone();
        st.connection = Some("Connected".into());
        let c0 = cluster_conditions(&st, &[], t0);
        assert_eq!(
            c0.iter()
                .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("Connected", "True", "Connected"),
                ("Ready", "True", "Quorate")
            ]
        );
        assert_eq!(
            cluster_conditions(&st, &c0, t1),
            c0,
            "unchanged: same times"
        );
        st.connection = Some("Failed".into());
        st.message = Some("cannot reach the CIB".into());
        let c1 = cluster_conditions(&st, &c0, t1);
        assert_eq!(c1[0].reason, "CibUnreachable");
        assert_eq!(c1[0].message, "cannot reach the CIB");
        assert_eq!(c1[0].last_transition_time.0, t1);
    }
}
