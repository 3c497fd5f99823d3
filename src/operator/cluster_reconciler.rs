//! PacemakerCluster reconcile: the authkey Secret, the CIB connection (opened, or re-opened when
//! endpoints or credentials change), the cluster's status (DC, quorum, CIB version) and auto-join.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::cib::model::{Cib, is_true};
use crate::cib::{ClientConfig, Endpoint, Secret, Transport};
use crate::wire::Element;

use super::authkey_secret::{self, Ensured};
use super::auto_join::{self, AUTO_JOIN_LABEL};
use super::cluster_connection::{Changed, ClusterConnection};
use super::context::{ClusterSlot, Context, Trigger};
use super::crd::{PacemakerCluster, PacemakerClusterStatus, RemoteNode, TlsMode};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Authkey(#[from] authkey_secret::AuthkeyError),
}

/// How often a connected cluster's status is refreshed without a notification.
const RESYNC: Duration = Duration::from_secs(60);
/// Retry delay after a failed connection.
const RETRY_CONNECT: Duration = Duration::from_secs(10);

pub async fn reconcile(
    pc: Arc<PacemakerCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ClusterError> {
    let name = pc.name_any();
    let reference = pc.object_ref(&());
    let secrets: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);

    if pc.metadata.deletion_timestamp.is_some() {
        drop_connection(&ctx, &name).await;
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
            ctx.event(
                &reference,
                EventType::Warning,
                "AuthkeyInvalid",
                "CheckAuthkey",
                e.to_string(),
            )
            .await;
            warn!(cluster = %name, error = %e, "authkey Secret unusable");
        }
    }

    let conn = match connect(&pc, &ctx, &secrets).await {
        Ok(c) => c,
        Err(message) => {
            ctx.metrics.set_cib_connected(&name, false);
            ctx.event(
                &reference,
                EventType::Warning,
                "CibUnreachable",
                "Connect",
                message.clone(),
            )
            .await;
            write_status(
                &ctx,
                &pc,
                PacemakerClusterStatus {
                    connection: Some("Failed".into()),
                    message: Some(message),
                    observed_generation: pc.metadata.generation,
                    ..pc.status.clone().unwrap_or_default()
                },
            )
            .await?;
            // Backoff from RETRY_CONNECT up, so a cluster that is down is not hammered.
            let delay = ctx
                .backoff(&format!("pacemakercluster/{name}"))
                .max(RETRY_CONNECT);
            return Ok(Action::requeue(delay));
        }
    };

    let mut status = summarize(&conn.snapshot().cib);
    status.connection = Some("Connected".into());
    status.connected_endpoint = None;
    status.observed_generation = pc.metadata.generation;
    write_status(&ctx, &pc, status).await?;

    if let Some(aj) = &pc.spec.auto_join {
        apply_auto_join(&ctx, &name, &aj.node_selector).await?;
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
) -> Result<Arc<ClusterConnection>, String> {
    let name = pc.name_any();
    let cfg = client_config(pc, secrets).await?;
    let fingerprint = fingerprint(&cfg);
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
    let conn = ClusterConnection::open(&name, cfg, cib_change_sender(ctx), ctx.metrics.clone())
        .await
        .map_err(|e| format!("cannot reach the CIB at {endpoints}: {e}"))?;
    let conn = Arc::new(conn);
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

/// The CIB client configuration, with credentials from the Secret.
async fn client_config(
    pc: &PacemakerCluster,
    secrets: &Api<KubeSecret>,
) -> Result<ClientConfig, String> {
    let r = &pc.spec.credentials_secret_ref;
    let secret = secrets
        .get_opt(&r.name)
        .await
        .map_err(|e| format!("reading credentials Secret {:?}: {e}", r.name))?
        .ok_or_else(|| {
            format!(
                "credentials Secret {:?} does not exist in the controller's namespace",
                r.name
            )
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| -> Option<String> {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .filter(|s| !s.is_empty())
    };
    let password_key = r.password_key.as_deref().unwrap_or("password");
    let password = text(password_key).ok_or_else(|| {
        format!(
            "credentials Secret {:?} has no {password_key:?} key",
            r.name
        )
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
                port: u16::try_from(e.port).map_err(|_| format!("port {} out of range", e.port))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let transport = match pc.spec.tls_mode {
        TlsMode::Anonymous => Transport::Tls,
        TlsMode::None => Transport::Plain,
    };
    let mut cfg = ClientConfig::new(endpoints, transport, Secret::new(password));
    cfg.user = user;
    cfg.client_name = "kubemaker-controller".into();
    cfg.retry.connect_rounds = 1;
    // Failing connections update the status section several times a second; each update moves
    // the CIB version a versioned write must match, so allow more attempts than a CLI does.
    cfg.retry.write_attempts = 30;
    Ok(cfg)
}

fn fingerprint(cfg: &ClientConfig) -> u64 {
    let mut h = DefaultHasher::new();
    for e in &cfg.endpoints {
        e.host.hash(&mut h);
        e.port.hash(&mut h);
    }
    matches!(cfg.transport, Transport::Tls).hash(&mut h);
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
    let (c_ok, c_reason, c_msg) = if connected {
        (true, "Connected", "connected to the CIB".to_string())
    } else {
        (false, "CibUnreachable", unreachable())
    };
    let (r_ok, r_reason, r_msg) = match (connected, status.quorum) {
        (false, _) => (false, "CibUnreachable", unreachable()),
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
