//! RemoteNode reconcile: read → validate → plan → apply → status, behind the finalizer whose
//! cleanup ([`cleanup`]) takes the node out of the CIB before the object goes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ObjectReference, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::cib::desired::{DesiredKind, DesiredNode};
use crate::cib::model::{Cib, nv_lookup, own_attribute_set, recovery_mark};
use crate::cib::plan;
use crate::cib::{live_checks, validate};

use super::cluster_connection::{ConnectionError, WriteOutcome};
use super::context::{Context, Trigger};
use super::crd::{CibAccess, NodeType, RemoteNode, RemoteNodeStatus};
use super::metrics::REMOTE_NODE;
use super::node_lifecycle::{self, ConnectionRecovery};
use super::node_status::{self, Inputs, Outcome, READY, StandbyCause};
use super::remoted_pods::{self, GatewayRemoval, REMOTED_POD_ATTRIBUTE};
use crate::cib::status::NodeStatus;

/// The finalizer that keeps a RemoteNode until its node is out of the CIB.
pub const FINALIZER: &str = "kubemaker.io/cib-cleanup";

/// Status is also kept current by CIB notifications; this is the safety net.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a reconcile looks again at a connection failure it may not clear yet.
const RECOVERY_RECHECK: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(Box<finalizer::Error<ReconcileError>>),
    /// Writing the node into the cluster's CIB failed.
    #[error("CIB of cluster {cluster}: {source}")]
    Cib {
        cluster: String,
        #[source]
        source: ConnectionError,
    },
    /// Removing the node from the cluster's CIB failed.
    #[error("CIB of cluster {cluster}: {source}")]
    Removal {
        cluster: String,
        #[source]
        source: ConnectionError,
    },
    /// The node is to be removed, but there is no connection to its cluster's CIB.
    #[error(
        "CIB of cluster {0}: not connected; the node will be removed once the CIB is reachable"
    )]
    NotConnected(String),
}

impl ReconcileError {
    /// The Event reason and `kubemaker_reconcile_failures_total` label of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "KubernetesApiError",
            ReconcileError::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.reason(),
                finalizer::Error::AddFinalizer(_)
                | finalizer::Error::RemoveFinalizer(_)
                | finalizer::Error::UnnamedObject
                | finalizer::Error::InvalidFinalizer => "FinalizerFailed",
            },
            ReconcileError::Cib { .. } | ReconcileError::NotConnected(_) => "CibUnavailable",
            ReconcileError::Removal { .. } => "RemovalFailed",
        }
    }
}

/// Why the address of a RemoteNode is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("Kubernetes Node {0:?} does not exist")]
    NoNode(String),
    #[error("Kubernetes Node {0:?} has no InternalIP address")]
    NoInternalIp(String),
}

pub async fn reconcile(rn: Arc<RemoteNode>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let name = rn.name_any();
    let api: Api<RemoteNode> = Api::all(ctx.client.clone());
    let result = finalizer::finalizer(&api, FINALIZER, rn, |ev| async {
        match ev {
            FinalizerEvent::Apply(rn) => apply(&rn, &ctx).await,
            FinalizerEvent::Cleanup(rn) => cleanup(&rn, &ctx).await,
        }
    })
    .await;
    let result = match result {
        // Cleanup ran again on a cached copy of an object that is already gone.
        Err(finalizer::Error::RemoveFinalizer(kube::Error::Api(s))) if s.code == 404 => {
            Ok(Action::await_change())
        }
        other => other.map_err(|e| ReconcileError::Finalizer(Box::new(e))),
    };
    let failure = result.as_ref().err().map(ReconcileError::reason);
    ctx.metrics
        .reconciled(REMOTE_NODE, started.elapsed(), failure);
    if result.is_ok() {
        ctx.succeeded(&format!("remotenode/{name}"));
    }
    result
}

pub fn error_policy(rn: Arc<RemoteNode>, err: &ReconcileError, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&format!("remotenode/{}", rn.name_any()));
    warn!(remotenode = %rn.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The address the cluster should connect to: `spec.address`, else the bound Node's InternalIP.
/// `Err` when the spec names a Node that does not exist or has no InternalIP.
fn resolve_address(rn: &RemoteNode, ctx: &Context) -> Result<Option<String>, AddressError> {
    if let Some(a) = &rn.spec.address {
        return Ok(Some(a.clone()));
    }
    let Some(node_name) = &rn.spec.kubernetes_node else {
        return Ok(None);
    };
    let node = ctx
        .nodes
        .get(&ObjectRef::<Node>::new(node_name))
        .ok_or_else(|| AddressError::NoNode(node_name.clone()))?;
    internal_ip(&node)
        .map(Some)
        .ok_or_else(|| AddressError::NoInternalIp(node_name.clone()))
}

pub fn internal_ip(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

async fn apply(rn: &RemoteNode, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = rn.node_name().to_string();
    let reference = rn.object_ref(&());
    let cluster = match ctx.cluster_of(rn) {
        Ok(c) => c,
        Err(e) => {
            let outcome = Outcome::failed("ClusterNotFound", e.to_string());
            publish_status(ctx, rn, &name, None, None, &outcome, None).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    let cluster_name = cluster.name_any();

    let address = match resolve_address(rn, ctx) {
        Ok(a) => a,
        Err(e) => {
            let message = e.to_string();
            let outcome = Outcome::failed("AddressUnknown", message.clone());
            warn_once(ctx, rn, &reference, "AddressUnknown", &message).await;
            publish_status(ctx, rn, &name, None, None, &outcome, None).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
    };
    let conn = ctx.connection(&cluster_name).await;
    let mut spec = rn
        .spec
        .to_cib_spec(cluster.spec.remote_node_defaults.as_ref(), address);
    // The bound Node's cordon and chosen labels, under the cluster's nodeLifecycle policy; the
    // spec's own attributes and standby win.
    let mut standby_cause = spec.standby.then_some(StandbyCause::Spec);
    let bound = rn
        .spec
        .kubernetes_node
        .as_ref()
        .and_then(|n| ctx.nodes.get(&ObjectRef::<Node>::new(n)));
    if let Some(node) = &bound {
        let lifecycle = cluster.spec.node_lifecycle.as_ref();
        for (k, v) in node_lifecycle::label_attributes(lifecycle, node) {
            spec.attributes.entry(k).or_insert(v);
        }
        if !spec.standby && node_lifecycle::cordon_standby(lifecycle, node) {
            spec.standby = true;
            standby_cause = Some(StandbyCause::Cordoned);
        }
    }
    if let Some(node) = &rn.spec.kubernetes_node {
        let pods = ctx.remoted_pods.state();
        let ready = remoted_pods::ready_pod_uid(pods.iter().map(|p| p.as_ref()), node);
        let in_cib = conn.as_ref().and_then(|c| {
            let snap = c.snapshot();
            Cib::new(&snap.cib)
                .node_entry(&name)
                .and_then(|e| nv_lookup(e, "instance_attributes", REMOTED_POD_ATTRIBUTE))
                .map(str::to_string)
        });
        if let Some(uid) = remoted_pods::attribute_value(ready, in_cib.as_deref()) {
            spec.attributes.insert(REMOTED_POD_ATTRIBUTE.into(), uid);
        }
    }
    let recovery = match (&bound, &conn) {
        (Some(node), Some(c)) if rn.spec.node_type == NodeType::Remote => {
            let pods = ctx.remoted_pods.state();
            let pod_ready =
                remoted_pods::ready_pod_uid(pods.iter().map(|p| p.as_ref()), &node.name_any())
                    .is_some();
            let now = Timestamp::now().as_second();
            let snap = c.snapshot();
            let last = Cib::new(&snap.cib)
                .primitive(&name)
                .and_then(|p| recovery_mark(p.element))
                .and_then(|v| v.parse().ok());
            match snap.node(&name) {
                Some(p) => node_lifecycle::connection_recovery(
                    cluster.spec.node_lifecycle.as_ref(),
                    p,
                    node,
                    pod_ready,
                    last,
                    now,
                ),
                None => ConnectionRecovery::Nothing,
            }
        }
        _ => ConnectionRecovery::Nothing,
    };
    let mut recovery_waits = false;
    let recovered = match recovery {
        ConnectionRecovery::Clear { failure } => {
            spec.recovery_mark = Some(Timestamp::now().as_second().to_string());
            Some(failure)
        }
        ConnectionRecovery::Wait(why) => {
            debug!(remotenode = %rn.name_any(), node = %name, "connection failure not cleared yet: {why}");
            recovery_waits = true;
            None
        }
        ConnectionRecovery::Nothing => None,
    };
    let desired = match DesiredNode::from_spec(&name, &spec) {
        Ok(d) => d,
        Err(problems) => {
            let outcome = Outcome::from_problems(&problems);
            if let Outcome::NotConfigured { message, .. } = &outcome {
                warn_once(ctx, rn, &reference, "InvalidSpec", message).await;
            }
            publish_status(ctx, rn, &name, None, None, &outcome, None).await?;
            // Only a spec change can fix it.
            return Ok(Action::await_change());
        }
    };
    let resource = desired.resource_id().to_string();

    let Some(conn) = conn else {
        let outcome = Outcome::failed(
            "CibUnavailable",
            format!(
                "no connection to the CIB of PacemakerCluster {cluster_name:?} (see its status)"
            ),
        );
        publish_status(
            ctx,
            rn,
            &name,
            Some(&desired),
            Some(&resource),
            &outcome,
            None,
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };

    // Decide from the shared snapshot, and let go of it before any await: a reconcile that holds
    // one while the CIB moves on keeps a whole CIB alive per waiting object.
    let (problems, in_sync, primitive_edit, standby_written) = {
        let snap = conn.snapshot();
        let d = std::slice::from_ref(&desired);
        let problems = live_checks::check_against_cib(d, &snap.cib);
        let p = plan::plan(d, &snap.cib);
        let in_sync = problems.is_empty() && p.is_empty();
        let standby_written = Cib::new(&snap.cib)
            .node_entry(&name)
            .and_then(own_attribute_set)
            .is_some_and(|set| {
                set.children
                    .iter()
                    .any(|p| p.attr("name") == Some("standby"))
            });
        // A recovery changes the primitive on purpose: not an edit to report as reverted.
        let drift = if recovered.is_some() {
            None
        } else {
            primitive_drift(rn, &p, &resource)
        };
        (problems, in_sync, drift, standby_written)
    };
    let outcome = if !problems.is_empty() {
        refused(ctx, rn, &reference, &problems).await
    } else if in_sync {
        Outcome::Configured
    } else {
        match conn.write(desired.clone()).await {
            Ok(WriteOutcome::Written(changes)) => {
                info!(remotenode = %rn.name_any(), node = %name, changes = changes.len(), "configured in the CIB");
                let (kind, reason, note) = match primitive_edit {
                    None if recovered.is_some() => (
                        EventType::Normal,
                        "FailureCleared",
                        format!(
                            "{} while Pacemaker could not reach node {name}; its Node is Ready and its remoted pod Ready again: failure cleared in the CIB of {cluster_name} (as `crm_resource --cleanup --resource {resource}` would), the cluster reconnects",
                            recovered.as_deref().unwrap_or_default()
                        ),
                    ),
                    None => (
                        EventType::Normal,
                        "Configured",
                        format!("CIB of {cluster_name}: {}", changes.join("; ")),
                    ),
                    Some(Drift::Edited) => (
                        EventType::Warning,
                        "Reverted",
                        format!(
                            "{resource} was changed outside kubemaker in fields kubemaker owns; put back in the CIB of {cluster_name}: {}",
                            changes.join("; ")
                        ),
                    ),
                    Some(Drift::Deleted) => (
                        EventType::Warning,
                        "Recreated",
                        format!(
                            "{resource} was deleted outside kubemaker; recreated in the CIB of {cluster_name} (delete the RemoteNode to remove the node)"
                        ),
                    ),
                };
                if primitive_edit.is_some() {
                    warn!(remotenode = %rn.name_any(), node = %name, reason, "{note}");
                } else if recovered.is_some() {
                    info!(remotenode = %rn.name_any(), node = %name, reason, "{note}");
                }
                ctx.event(&reference, kind, reason, "WriteCib", note.clone())
                    .await;
                let node_ref = ctx.bound_node(rn);
                if let Some(node_ref) = &node_ref {
                    ctx.event(node_ref, kind, reason, "WriteCib", note).await;
                }
                if let Some((reason, note)) =
                    standby_event(&name, rn, standby_cause, standby_written)
                {
                    info!(remotenode = %rn.name_any(), node = %name, reason, "{note}");
                    ctx.event(
                        &reference,
                        EventType::Normal,
                        reason,
                        "WriteCib",
                        note.clone(),
                    )
                    .await;
                    if let Some(node_ref) = &node_ref {
                        ctx.event(node_ref, EventType::Normal, reason, "WriteCib", note)
                            .await;
                    }
                }
                Outcome::Configured
            }
            Ok(WriteOutcome::Unchanged) => Outcome::Configured,
            Err(ConnectionError::Invalid(problems)) => {
                refused(ctx, rn, &reference, &problems).await
            }
            Err(source) => {
                let message = source.to_string();
                let err = ReconcileError::Cib {
                    cluster: cluster_name,
                    source,
                };
                ctx.event(
                    &reference,
                    EventType::Warning,
                    err.reason(),
                    "WriteCib",
                    message.clone(),
                )
                .await;
                let outcome = Outcome::failed(err.reason(), message);
                publish_status(
                    ctx,
                    rn,
                    &name,
                    Some(&desired),
                    Some(&resource),
                    &outcome,
                    None,
                )
                .await?;
                return Err(err);
            }
        }
    };
    let configured = outcome == Outcome::Configured;
    // The writer refreshed the snapshot after its write.
    let pacemaker = conn.snapshot().node(&name).cloned();
    if let (Some(node), Some(p)) = (&bound, &pacemaker)
        && configured
    {
        let action = node_lifecycle::out_of_service(
            cluster.spec.node_lifecycle.as_ref(),
            node,
            p.fenced_at,
            p.online,
        );
        sync_out_of_service(ctx, rn, node, &name, action).await?;
    }
    publish_status(
        ctx,
        rn,
        &name,
        Some(&desired),
        Some(&resource),
        &outcome,
        pacemaker.as_ref().map(|p| (p, standby_cause)),
    )
    .await?;
    Ok(if configured && recovery_waits {
        // The cooldown ends without any change to wake us.
        Action::requeue(RECOVERY_RECHECK)
    } else if configured {
        Action::requeue(RESYNC)
    } else {
        // A clash may be resolved by someone else removing the other resource.
        Action::requeue(Duration::from_secs(60))
    })
}

/// The Event for a standby kubemaker just wrote or removed because of the bound Node's cordon:
/// `Cordoned` when it put the node in standby for a cordon, `Uncordoned` when it took back a
/// standby it had written (the Node was uncordoned, or `spec.standby` cleared).
fn standby_event(
    name: &str,
    rn: &RemoteNode,
    cause: Option<StandbyCause>,
    standby_written: bool,
) -> Option<(&'static str, String)> {
    let node = rn.spec.kubernetes_node.as_deref().unwrap_or("?");
    match (cause, standby_written) {
        (Some(StandbyCause::Cordoned), false) => Some((
            "Cordoned",
            format!(
                "Kubernetes Node {node} is cordoned: Pacemaker node {name} put in standby, its resources move away"
            ),
        )),
        (None, true) => Some((
            "Uncordoned",
            format!(
                "standby kubemaker had set on Pacemaker node {name} lifted (Kubernetes Node {node} schedulable, spec.standby unset)"
            ),
        )),
        _ => None,
    }
}

/// Adds or removes the out-of-service taint of the bound `node` (see
/// [`node_lifecycle::out_of_service`]) and says so in Events on the RemoteNode and the Node.
/// `spec.taints` is an atomic list (no merge key), so the patch carries the whole new list, the
/// Node's other taints unchanged, and the `resourceVersion` it was computed from: if the Node
/// changed meanwhile the API server answers 409 and the next reconcile computes it again.
async fn sync_out_of_service(
    ctx: &Context,
    rn: &RemoteNode,
    node: &Node,
    name: &str,
    action: node_lifecycle::TaintAction,
) -> Result<(), kube::Error> {
    use node_lifecycle::{
        OUT_OF_SERVICE_EFFECT, OUT_OF_SERVICE_TAINT, OUT_OF_SERVICE_VALUE, TAINTED_BY_ANNOTATION,
        TaintAction,
    };
    let node_name = node.name_any();
    let others = || {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.key != OUT_OF_SERVICE_TAINT)
    };
    let (annotation, taints, kind, reason, note) = match action {
        TaintAction::Keep => return Ok(()),
        TaintAction::Add { fenced_at } => (
            json!(fenced_at.to_string()),
            others()
                .chain(std::iter::once(Taint {
                    key: OUT_OF_SERVICE_TAINT.into(),
                    value: Some(OUT_OF_SERVICE_VALUE.into()),
                    effect: OUT_OF_SERVICE_EFFECT.into(),
                    time_added: None,
                }))
                .collect::<Vec<_>>(),
            EventType::Warning,
            "Fenced",
            format!(
                "Pacemaker fenced node {name} (node_fenced={fenced_at}): Node {node_name} tainted {OUT_OF_SERVICE_TAINT}={OUT_OF_SERVICE_VALUE}:{OUT_OF_SERVICE_EFFECT}, so Kubernetes deletes its pods and detaches their volumes"
            ),
        ),
        TaintAction::Remove => (
            serde_json::Value::Null,
            others().collect(),
            EventType::Normal,
            "BackInService",
            format!(
                "node {name} is online in Pacemaker and Node {node_name} Ready: {OUT_OF_SERVICE_TAINT} taint removed"
            ),
        ),
    };
    let patch = json!({
        "metadata": {
            "resourceVersion": node.metadata.resource_version,
            "annotations": {TAINTED_BY_ANNOTATION: annotation},
        },
        "spec": {"taints": if taints.is_empty() { serde_json::Value::Null } else { json!(taints) }},
    });
    let api: Api<Node> = Api::all(ctx.client.clone());
    api.patch(&node_name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    info!(remotenode = %rn.name_any(), node = %name, reason, "{note}");
    ctx.event(&rn.object_ref(&()), kind, reason, "Fence", note.clone())
        .await;
    ctx.event(&node.object_ref(&()), kind, reason, "Fence", note)
        .await;
    Ok(())
}

/// What happened to a node's primitive behind kubemaker's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drift {
    /// A field kubemaker owns was changed (see `cib::plan` for who owns what).
    Edited,
    /// The primitive was deleted.
    Deleted,
}

/// Whether `plan` puts back an edit of `rn`'s primitive `resource` made outside kubemaker: the
/// object's current spec was already configured (Configured is True for this generation), yet the
/// plan changes the primitive (or creates it again: it was deleted). Changes of node attributes
/// alone (the remoted pod's, kept by kubemaker itself) are not drift.
fn primitive_drift(rn: &RemoteNode, plan: &plan::Plan, resource: &str) -> Option<Drift> {
    let applied = rn.status.as_ref().is_some_and(|s| {
        node_status::find(&s.conditions, node_status::CONFIGURED).is_some_and(|c| {
            c.status == "True"
                && c.observed_generation.is_some()
                && c.observed_generation == rn.metadata.generation
        })
    });
    let touches_primitive = plan
        .changes()
        .any(|c| c.target().starts_with(crate::cib::patch::RESOURCES_PATH));
    let missing = plan.changes().any(|c| {
        matches!(c, crate::cib::patch::Change::Create { parent, element, .. }
            if parent == crate::cib::patch::RESOURCES_PATH && element.attr("id") == Some(resource))
    });
    match (applied && touches_primitive, missing) {
        (false, _) => None,
        (true, false) => Some(Drift::Edited),
        (true, true) => Some(Drift::Deleted),
    }
}

async fn refused(
    ctx: &Context,
    rn: &RemoteNode,
    reference: &ObjectReference,
    problems: &[validate::Problem],
) -> Outcome {
    let outcome = Outcome::from_problems(problems);
    if let Outcome::NotConfigured { reason, message } = &outcome {
        warn_once(ctx, rn, reference, reason, message).await;
    }
    outcome
}

/// A Warning event, unless the object's Configured condition already says the same (so a
/// requeue does not repeat it every minute).
async fn warn_once(
    ctx: &Context,
    rn: &RemoteNode,
    reference: &ObjectReference,
    reason: &str,
    message: &str,
) {
    let already = rn
        .status
        .as_ref()
        .and_then(|s| node_status::find(&s.conditions, node_status::CONFIGURED))
        .is_some_and(|c| c.reason == reason && c.message == message);
    if !already {
        warn!(remotenode = %rn.name_any(), reason, "{message}");
        ctx.event(reference, EventType::Warning, reason, "Validate", message)
            .await;
    }
}

/// Computes and, when it differs, writes the status; Online/Offline events on Ready changes.
async fn publish_status(
    ctx: &Context,
    rn: &RemoteNode,
    name: &str,
    desired: Option<&DesiredNode>,
    resource: Option<&str>,
    outcome: &Outcome,
    pacemaker: Option<(&NodeStatus, Option<StandbyCause>)>,
) -> Result<(), kube::Error> {
    let previous = rn.status.clone().unwrap_or_default();
    let kubelet = rn.spec.kubernetes_node.as_ref().map(|n| {
        node_lifecycle::kubelet_ready(ctx.nodes.get(&ObjectRef::<Node>::new(n)).as_deref())
    });
    let connection_resource = match desired.map(|d| &d.kind) {
        Some(DesiredKind::Guest { .. }) => Some(name),
        _ => resource,
    };
    let status = node_status::remote_node_status(&Inputs {
        generation: rn.metadata.generation,
        node_name: name,
        address: desired.map(|d| d.address.as_str()),
        connection_resource,
        outcome,
        pacemaker: pacemaker.map(|(p, _)| p),
        standby_cause: pacemaker.and_then(|(_, c)| c),
        kubelet: kubelet.as_ref(),
        previous: &previous.conditions,
        now: Timestamp::now(),
    });
    ctx.metrics
        .set_node_state(&rn.name_any(), status.pacemaker_state.as_deref());
    if status == previous {
        return Ok(());
    }
    let was_ready = node_status::is_true(&previous.conditions, READY);
    let is_ready = node_status::is_true(&status.conditions, READY);
    if was_ready != is_ready {
        let reference = rn.object_ref(&());
        let state = status
            .pacemaker_state
            .as_deref()
            .unwrap_or("not configured");
        if is_ready {
            ctx.event(
                &reference,
                EventType::Normal,
                "Online",
                "Observe",
                format!("node {name} is online"),
            )
            .await;
        } else {
            ctx.event(
                &reference,
                EventType::Warning,
                "Offline",
                "Observe",
                format!("node {name} is not ready: {state}"),
            )
            .await;
        }
    }
    patch_status(ctx, &rn.name_any(), &status).await
}

async fn patch_status(
    ctx: &Context,
    object: &str,
    status: &RemoteNodeStatus,
) -> Result<(), kube::Error> {
    let api: Api<RemoteNode> = Api::all(ctx.client.clone());
    match api
        .patch_status(
            object,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing left to report on.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Stops the node's resource, deletes it and purges the node, then lets the object go. Only
/// what kubemaker would own is touched: a RemoteNode that never got configured because its name
/// clashed leaves the other resource alone.
async fn cleanup(rn: &RemoteNode, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = rn.node_name().to_string();
    let reference = rn.object_ref(&());
    ctx.metrics.set_node_state(&rn.name_any(), None);
    let Some(cluster_name) = ctx.cluster_name_of(rn) else {
        ctx.event(
            &reference,
            EventType::Warning,
            "Removed",
            "RemoveFromCib",
            format!("no PacemakerCluster for node {name}; nothing removed from any CIB"),
        )
        .await;
        return Ok(Action::await_change());
    };
    let Some(pc) = ctx.pacemaker_clusters.get(&ObjectRef::new(&cluster_name)) else {
        ctx.event(
            &reference,
            EventType::Warning,
            "Removed",
            "RemoveFromCib",
            format!("PacemakerCluster {cluster_name} is gone; node {name} was not removed from its CIB (remove it with `kubemaker cib remove {name}`)"),
        )
        .await;
        return Ok(Action::await_change());
    };
    let via_gateways = pc.spec.via == CibAccess::RemoteNodes;
    if via_gateways {
        // The cluster's gateway list puts this node last, so the controller's CIB session
        // moves to a node that stays before this one's connection stops.
        let _ = ctx
            .triggers
            .send(Trigger::RemoteNodeLeaving(cluster_name.clone()));
        let key = (cluster_name.clone(), name.to_ascii_lowercase());
        let taken = ctx
            .removed_at_once
            .lock()
            .map(|mut done| done.remove(&key))
            .unwrap_or(false);
        if taken {
            info!(remotenode = %rn.name_any(), node = %name, "removed in the one write of the last gateway nodes; releasing");
            ctx.event(
                &reference,
                EventType::Normal,
                "Removed",
                "RemoveFromCib",
                format!("node {name} was removed from the CIB of {cluster_name} in one write with the last kubemaker node carrying the CIB gateway"),
            )
            .await;
            return Ok(Action::await_change());
        }
    }
    let Some(conn) = ctx.connection(&cluster_name).await else {
        return Err(ReconcileError::NotConnected(cluster_name));
    };
    let owned = owns_node(&conn.snapshot().cib, rn, &name);
    if !owned {
        info!(remotenode = %rn.name_any(), node = %name, "nothing of this RemoteNode in the CIB; releasing");
        ctx.event(
            &reference,
            EventType::Normal,
            "Removed",
            "RemoveFromCib",
            format!("node {name} had nothing configured in the CIB of {cluster_name}"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let snapshot = conn.snapshot();
    let mode = if via_gateways {
        gateway_removal(rn, ctx, &cluster_name, &snapshot)
    } else {
        GatewayRemovalPlan::graceful()
    };
    let result = if mode.mode == GatewayRemoval::OneWrite {
        let own_gateway = rn
            .spec
            .kubernetes_node
            .as_ref()
            .is_some_and(|k| mode.gateways_removed.contains(k));
        let subject = if own_gateway {
            "it is".to_string()
        } else {
            format!("it leaves with {},", mode.gateways_removed.join(", "))
        };
        let others: Vec<&str> = mode.names[1..].iter().map(String::as_str).collect();
        let with = if others.is_empty() {
            String::new()
        } else {
            format!(" with {}", others.join(", "))
        };
        let note = format!(
            "graceful stop skipped for node {name} of {cluster_name}: {subject} the last kubemaker node carrying the CIB gateway: removed in one write{with}; Pacemaker stops its resources and connection"
        );
        warn!(remotenode = %rn.name_any(), node = %name, nodes = ?mode.names, "{note}");
        ctx.event(
            &reference,
            EventType::Warning,
            "LastGatewayNode",
            "RemoveFromCib",
            note,
        )
        .await;
        let result = conn.remove_at_once(&mode.names).await;
        if result.is_ok()
            && let Ok(mut done) = ctx.removed_at_once.lock()
        {
            for n in mode.names.iter().filter(|n| !n.eq_ignore_ascii_case(&name)) {
                done.insert((cluster_name.clone(), n.to_ascii_lowercase()));
            }
        }
        result
    } else {
        ctx.event(
            &reference,
            EventType::Normal,
            "Removing",
            "RemoveFromCib",
            format!("stopping node {name} and removing it from the CIB of {cluster_name}"),
        )
        .await;
        conn.remove(&name).await
    };
    match result {
        Ok(transactions) => {
            let note = format!(
                "node {name} removed from the CIB of {cluster_name} ({transactions} transaction(s), shared with the nodes removed together)"
            );
            info!(remotenode = %rn.name_any(), node = %name, "removed from the CIB");
            ctx.event(
                &reference,
                EventType::Normal,
                "Removed",
                "RemoveFromCib",
                note.clone(),
            )
            .await;
            if let Some(node_ref) = ctx.bound_node(rn) {
                ctx.event(
                    &node_ref,
                    EventType::Normal,
                    "Removed",
                    "RemoveFromCib",
                    note,
                )
                .await;
            }
            Ok(Action::await_change())
        }
        Err(source) => {
            let message = source.to_string();
            let err = ReconcileError::Removal {
                cluster: cluster_name,
                source,
            };
            ctx.event(
                &reference,
                EventType::Warning,
                err.reason(),
                "RemoveFromCib",
                message,
            )
            .await;
            Err(err)
        }
    }
}

/// How a RemoteNode of a `via: remoteNodes` cluster leaves the CIB.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GatewayRemovalPlan {
    mode: GatewayRemoval,
    /// With [`GatewayRemoval::OneWrite`]: the Pacemaker nodes to delete in that write, this
    /// RemoteNode's first, then every other RemoteNode of the cluster being deleted that still has
    /// something in the CIB (after the write the controller can no longer remove them).
    names: Vec<String>,
    /// The Kubernetes Nodes among those removed that carry an online gateway.
    gateways_removed: Vec<String>,
}

impl GatewayRemovalPlan {
    fn graceful() -> GatewayRemovalPlan {
        GatewayRemovalPlan {
            mode: GatewayRemoval::Graceful,
            names: Vec::new(),
            gateways_removed: Vec::new(),
        }
    }
}

/// The inputs of [`remoted_pods::removal_mode`] for RemoteNode `rn` being deleted: the
/// Kubernetes Nodes of the cluster's RemoteNodes being deleted, and the Nodes carrying a Ready
/// remoted pod, each online when a RemoteNode of the cluster bound to it has its node online in
/// `snapshot` (Pacemaker's view, fresher than the RemoteNodes' status).
fn gateway_removal(
    rn: &RemoteNode,
    ctx: &Context,
    cluster: &str,
    snapshot: &super::cluster_connection::Snapshot,
) -> GatewayRemovalPlan {
    let ours: Vec<Arc<RemoteNode>> = ctx
        .remote_nodes
        .state()
        .into_iter()
        .filter(|r| ctx.cluster_name_of(r).as_deref() == Some(cluster))
        .collect();
    let mut removing = super::cluster_reconciler::leaving_kubernetes_nodes(ctx, cluster);
    removing.extend(rn.spec.kubernetes_node.clone());
    let pods = ctx.remoted_pods.state();
    let gateways: BTreeMap<String, bool> =
        remoted_pods::gateway_nodes(pods.iter().map(|p| p.as_ref()))
            .into_iter()
            .map(|k| {
                let online = ours.iter().any(|r| {
                    r.spec.kubernetes_node.as_deref() == Some(k.as_str())
                        && snapshot.node(r.node_name()).is_some_and(|n| n.online)
                });
                (k, online)
            })
            .collect();
    let mode = remoted_pods::removal_mode(&removing, &gateways);
    if mode == GatewayRemoval::Graceful {
        return GatewayRemovalPlan::graceful();
    }
    let name = rn.node_name().to_string();
    let mut names = vec![name.clone()];
    for other in &ours {
        let n = other.node_name();
        if other.metadata.deletion_timestamp.is_some()
            && !names.iter().any(|m| m.eq_ignore_ascii_case(n))
            && owns_node(&snapshot.cib, other, n)
        {
            names.push(n.to_string());
        }
    }
    GatewayRemovalPlan {
        mode,
        names,
        gateways_removed: gateways
            .iter()
            .filter(|(k, up)| **up && removing.contains(*k))
            .map(|(k, _)| k.clone())
            .collect(),
    }
}

/// Whether the CIB holds something this RemoteNode would own: the connection resource of node
/// `name`, its guest resource, or leftovers of node `name` with no foreign resource of that name.
pub fn owns_node(cib: &crate::wire::Element, rn: &RemoteNode, name: &str) -> bool {
    let view = crate::cib::model::Cib::new(cib);
    if let Some((id, _)) = plan::defining_resource(cib, name) {
        let expected = match rn.spec.node_type {
            NodeType::Remote => name.to_string(),
            NodeType::Guest => rn
                .spec
                .guest
                .as_ref()
                .and_then(|g| g.resource_id.clone())
                .unwrap_or_else(|| format!("vm-{name}")),
        };
        return id.eq_ignore_ascii_case(&expected);
    }
    let foreign = view
        .primitives()
        .iter()
        .any(|p| p.id().eq_ignore_ascii_case(name));
    !foreign && (view.node_entry(name).is_some() || view.node_state(name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::PacemakerCluster;
    use crate::operator::fixtures::{self, ApiServer, Call, FakeCib, cib_with};
    use crate::wire::Element;
    use serde_json::Value;

    const CLUSTER: &str = "prod";

    fn cluster() -> PacemakerCluster {
        serde_json::from_value(json!({
            "apiVersion": "kubemaker.io/v1alpha1", "kind": "PacemakerCluster",
            "metadata": {"name": CLUSTER, "uid": "uid-prod", "generation": 1},
            "spec": {
                "endpoints": [{"host": "127.0.0.1", "port": 1}],
                "tlsMode": "none",
                "credentialsSecretRef": {"name": "cib-credentials"},
            },
        }))
        .unwrap()
    }

    /// RemoteNode `a` at `address`, carrying the finalizer when `finalized`.
    fn remote_node(address: &str, generation: i64, finalized: bool) -> RemoteNode {
        let finalizers: Vec<&str> = if finalized { vec![FINALIZER] } else { vec![] };
        serde_json::from_value(json!({
            "apiVersion": "kubemaker.io/v1alpha1", "kind": "RemoteNode",
            "metadata": {
                "name": "a", "uid": "uid-a", "generation": generation,
                "finalizers": finalizers,
            },
            "spec": {"clusterRef": {"name": CLUSTER}, "address": address},
        }))
        .unwrap()
    }

    fn deleted(mut rn: RemoteNode) -> RemoteNode {
        rn.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        rn
    }

    /// An API server that accepts every patch of RemoteNode `rn`, answering with it.
    fn api_for(rn: &RemoteNode) -> (kube::Client, ApiServer) {
        let answer = serde_json::to_value(rn).unwrap();
        ApiServer::start(Box::new(move |c: &Call| {
            if c.is("PATCH", "/remotenodes/a") {
                (200, answer.clone())
            } else {
                fixtures::status(404, "NotFound")
            }
        }))
    }

    async fn run(
        rn: &RemoteNode,
        cib: Option<Arc<FakeCib>>,
    ) -> (Result<Action, ReconcileError>, ApiServer, Arc<Context>) {
        let (client, server) = api_for(rn);
        let ctx = fixtures::context(client, &[cluster()], std::slice::from_ref(rn));
        if let Some(cib) = cib {
            fixtures::connect(&ctx, CLUSTER, 0, cib).await;
        }
        let result = reconcile(Arc::new(rn.clone()), ctx.clone()).await;
        (result, server, ctx)
    }

    /// The status the reconcile wrote (the last status patch), if any.
    fn written_status(server: &ApiServer) -> Option<RemoteNodeStatus> {
        server
            .api_calls()
            .iter()
            .rfind(|c| c.is("PATCH", "/remotenodes/a/status"))
            .map(|c| serde_json::from_value(c.body["status"].clone()).unwrap())
    }

    /// `(status, reason, observedGeneration)` of the Configured condition.
    fn configured(status: &RemoteNodeStatus) -> (String, String, Option<i64>) {
        let c = node_status::find(&status.conditions, node_status::CONFIGURED).unwrap();
        (c.status.clone(), c.reason.clone(), c.observed_generation)
    }

    fn with_status(mut rn: RemoteNode, status: RemoteNodeStatus) -> RemoteNode {
        rn.status = Some(status);
        rn
    }

    fn has_primitive(cib: &FakeCib, id: &str) -> bool {
        Cib::new(&cib.snapshot().cib)
            .primitives()
            .iter()
            .any(|p| p.id() == id)
    }

    use crate::operator::context::CibConnection;

    #[test]
    fn each_error_kind_has_one_reason() {
        let removal = || ReconcileError::Removal {
            cluster: "c".into(),
            source: ConnectionError::Stopped("remover"),
        };
        let wrapped = |e| ReconcileError::Finalizer(Box::new(e));
        for (err, reason) in [
            (
                ReconcileError::Cib {
                    cluster: "c".into(),
                    source: ConnectionError::Stopped("writer"),
                },
                "CibUnavailable",
            ),
            (ReconcileError::NotConnected("c".into()), "CibUnavailable"),
            (removal(), "RemovalFailed"),
            (
                wrapped(finalizer::Error::CleanupFailed(removal())),
                "RemovalFailed",
            ),
            (
                wrapped(finalizer::Error::ApplyFailed(ReconcileError::NotConnected(
                    "c".into(),
                ))),
                "CibUnavailable",
            ),
            (wrapped(finalizer::Error::UnnamedObject), "FinalizerFailed"),
        ] {
            assert_eq!(err.reason(), reason, "{err}");
        }
    }

    #[tokio::test]
    async fn a_new_object_gets_the_finalizer_first() {
        let rn = remote_node("192.0.2.10", 1, false);
        let cib = Arc::new(FakeCib::new(cib_with("")));
        let (result, server, _) = run(&rn, Some(cib.clone())).await;
        assert_eq!(result.unwrap(), Action::await_change());
        let calls = server.api_calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0].is("PATCH", "/remotenodes/a"));
        assert!(calls[0].body.to_string().contains(FINALIZER));
        assert!(cib.writes.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn create_then_no_op_re_apply_then_spec_change() {
        let cib = Arc::new(FakeCib::new(cib_with("")));

        // Create: written into the CIB, reported, status Configured for generation 1.
        let rn = remote_node("192.0.2.10", 1, true);
        let (result, server, ctx) = run(&rn, Some(cib.clone())).await;
        assert_eq!(result.unwrap(), Action::requeue(RESYNC));
        assert_eq!(*cib.writes.lock().unwrap(), ["a"]);
        assert!(has_primitive(&cib, "a"));
        assert_eq!(server.event_reasons(), ["Configured"]);
        let status = written_status(&server).expect("a status patch");
        assert_eq!(
            configured(&status),
            ("True".into(), "Configured".into(), Some(1))
        );
        assert!(
            ctx.metrics
                .render()
                .contains("kubemaker_reconcile_total{resource=\"RemoteNode\",result=\"ok\"} 1")
        );

        // The same object again, with the status it wrote: nothing to write, nothing to report.
        let again = with_status(rn.clone(), status.clone());
        let (result, server, _) = run(&again, Some(cib.clone())).await;
        assert_eq!(result.unwrap(), Action::requeue(RESYNC));
        assert_eq!(cib.writes.lock().unwrap().len(), 1, "no second write");
        assert!(server.calls().is_empty(), "{:?}", server.calls());

        // A spec change: written again, status for generation 2.
        let changed = with_status(remote_node("192.0.2.11", 2, true), status);
        let (result, server, _) = run(&changed, Some(cib.clone())).await;
        assert_eq!(result.unwrap(), Action::requeue(RESYNC));
        assert_eq!(cib.writes.lock().unwrap().len(), 2);
        assert_eq!(server.event_reasons(), ["Configured"]);
        let status = written_status(&server).expect("a status patch");
        assert_eq!(
            configured(&status),
            ("True".into(), "Configured".into(), Some(2))
        );
        assert_eq!(status.address.as_deref(), Some("192.0.2.11"));
    }

    /// The attributes in kubemaker's set of node `a`, by name.
    fn own_attributes(cib: &FakeCib) -> std::collections::BTreeMap<String, String> {
        let snap = cib.snapshot();
        Cib::new(&snap.cib)
            .node_entry("a")
            .and_then(own_attribute_set)
            .map(|set| {
                set.children
                    .iter()
                    .filter_map(|p| Some((p.attr("name")?.into(), p.attr("value")?.into())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A bound Node's cordon puts the node in standby and chosen labels become attributes, with
    /// Events on the RemoteNode and the Node; uncordoning takes back exactly that standby.
    #[tokio::test]
    async fn cordon_and_labels_of_the_bound_node_reach_the_cib() {
        let cib = Arc::new(FakeCib::new(cib_with("")));
        let mut pc = cluster();
        pc.spec.node_lifecycle = Some(crate::operator::crd::NodeLifecycle {
            cordon: crate::operator::crd::CordonPolicy::Standby,
            labels: vec!["topology.kubernetes.io/zone".into()],
            ..Default::default()
        });
        let node = |unschedulable: bool| -> Node {
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "w1", "uid": "uid-w1", "labels": {
                    "topology.kubernetes.io/zone": "zone-a", "kubernetes.io/arch": "amd64"}},
                "spec": {"unschedulable": unschedulable},
                "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
            }))
            .unwrap()
        };
        let mut rn = remote_node("192.0.2.10", 1, true);
        rn.spec.kubernetes_node = Some("w1".into());
        let go = |rn: RemoteNode, n: Node| {
            let (pc, cib) = (pc.clone(), cib.clone());
            async move {
                let (client, server) = api_for(&rn);
                let ctx =
                    fixtures::context_with_nodes(client, &[pc], std::slice::from_ref(&rn), &[n]);
                fixtures::connect(&ctx, CLUSTER, 0, cib).await;
                let result = reconcile(Arc::new(rn), ctx).await;
                (result, server)
            }
        };

        let (result, server) = go(rn.clone(), node(true)).await;
        result.unwrap();
        let attrs = own_attributes(&cib);
        assert_eq!(attrs.get("standby").map(String::as_str), Some("on"));
        assert_eq!(
            attrs.get("topology.kubernetes.io_zone").map(String::as_str),
            Some("zone-a")
        );
        assert!(!attrs.contains_key("kubernetes.io_arch"), "unchosen label");
        let reasons = server.event_reasons();
        assert_eq!(
            reasons.iter().filter(|r| *r == "Cordoned").count(),
            2,
            "on the RemoteNode and on the Node: {reasons:?}"
        );
        let status = written_status(&server).unwrap();
        let k = node_status::find(&status.conditions, node_status::KUBELET_READY).unwrap();
        assert_eq!(
            (k.status.as_str(), k.reason.as_str()),
            ("True", "KubeletReady")
        );

        let configured = with_status(rn, status);
        let (result, server) = go(configured, node(false)).await;
        result.unwrap();
        let attrs = own_attributes(&cib);
        assert!(!attrs.contains_key("standby"), "{attrs:?}");
        assert!(attrs.contains_key("topology.kubernetes.io_zone"));
        assert!(server.event_reasons().contains(&"Uncordoned".to_string()));
    }

    /// Reconciles `rn` (bound to `node`) against `cib`, with `node` and the remoted `pod` in the
    /// caches; the API server takes patches of RemoteNode `a` and of the Node.
    async fn reconcile_bound(
        rn: RemoteNode,
        cib: Arc<FakeCib>,
        node: Node,
        pod: Option<k8s_openapi::api::core::v1::Pod>,
    ) -> (Result<Action, ReconcileError>, ApiServer) {
        let answer = serde_json::to_value(&rn).unwrap();
        let node_answer = serde_json::to_value(&node).unwrap();
        let node_path = format!("/nodes/{}", node.name_any());
        let (client, server) = ApiServer::start(Box::new(move |c: &Call| {
            if c.is("PATCH", "/remotenodes/a") {
                (200, answer.clone())
            } else if c.is("PATCH", &node_path) {
                (200, node_answer.clone())
            } else {
                fixtures::status(404, "NotFound")
            }
        }));
        let ctx = fixtures::context_with_pods(
            client,
            &[cluster()],
            std::slice::from_ref(&rn),
            &[node],
            pod.as_slice(),
        );
        fixtures::connect(&ctx, CLUSTER, 0, cib).await;
        let result = reconcile(Arc::new(rn), ctx).await;
        (result, server)
    }

    /// After a partition, a failed start of the connection keeps node `a` offline: with its Node
    /// Ready (a kubelet report newer than the failure) and its remoted pod Ready, the reconcile
    /// writes the recovery mark and says so; at once again, it waits (one recovery a minute).
    #[tokio::test]
    async fn a_failed_connection_is_cleared_once_both_views_see_the_node() {
        let cib = Arc::new(FakeCib::new(cib_with("")));
        let mut rn = remote_node("192.0.2.10", 1, true);
        rn.spec.kubernetes_node = Some("w1".into());
        let now = Timestamp::now();
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "w1", "uid": "uid-w1"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": now.to_string()}]},
        }))
        .unwrap();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "remoted-x", "uid": "uid-pod", "namespace": "kubemaker",
                "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": {"nodeName": "w1", "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let go = |rn: RemoteNode| reconcile_bound(rn, cib.clone(), node.clone(), Some(pod.clone()));
        let (result, server) = go(rn.clone()).await;
        result.unwrap();
        assert!(
            !server
                .event_reasons()
                .contains(&"FailureCleared".to_string())
        );
        // The cluster lost the node: a failed start of its connection on node1, a minute ago.
        let failed_at = now.as_second() - 60;
        cib.edit(|c| {
            let status = c.children.iter_mut().find(|e| e.name == "status").unwrap();
            status.children[0] = Element::parse(&format!(
                r#"<node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member" expected="member"><lrm id="1"><lrm_resources><lrm_resource id="a" class="ocf" provider="pacemaker" type="remote"><lrm_rsc_op id="a_last_failure_0" operation_key="a_start_0" operation="start" transition-key="2:7:0:x" call-id="7" rc-code="1" op-status="4" interval="0" exit-reason="Key was rejected by service" last-rc-change="{failed_at}"/><lrm_rsc_op id="a_last_0" operation_key="a_stop_0" operation="stop" transition-key="3:8:0:x" call-id="8" rc-code="0" op-status="0" interval="0" last-rc-change="{failed_at}"/></lrm_resource></lrm_resources></lrm></node_state>"#
            ))
            .unwrap();
        });
        let configured = with_status(rn, written_status(&server).unwrap());
        let (result, server) = go(configured.clone()).await;
        result.unwrap();
        let snap = cib.snapshot();
        let mark = Cib::new(&snap.cib)
            .primitive("a")
            .and_then(|p| recovery_mark(p.element).map(str::to_string))
            .expect("recovery mark written");
        assert!(mark.parse::<i64>().unwrap() >= now.as_second());
        let reasons = server.event_reasons();
        assert_eq!(
            reasons.iter().filter(|r| *r == "FailureCleared").count(),
            2,
            "on the RemoteNode and on the Node: {reasons:?}"
        );
        assert!(!reasons.iter().any(|r| r == "Reverted"), "{reasons:?}");

        // The failure still shows (Pacemaker has not run yet): no second recovery so soon.
        let writes = cib.writes.lock().unwrap().len();
        let (result, server) = go(configured).await;
        assert_eq!(result.unwrap(), Action::requeue(RECOVERY_RECHECK));
        assert_eq!(cib.writes.lock().unwrap().len(), writes, "written again");
        assert!(
            !server
                .event_reasons()
                .contains(&"FailureCleared".to_string())
        );
    }

    /// Confirmed fencing of node `a` taints its Node out of service: one merge patch carrying
    /// the Node's other taints unchanged, the new one, kubemaker's annotation and the
    /// resourceVersion it was computed from (taints are an atomic list).
    #[tokio::test]
    async fn confirmed_fencing_taints_the_node_keeping_its_other_taints() {
        let cib = Arc::new(FakeCib::new(cib_with("")));
        let mut rn = remote_node("192.0.2.10", 1, true);
        rn.spec.kubernetes_node = Some("w1".into());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "w1", "uid": "uid-w1", "resourceVersion": "42"},
            "spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
        }))
        .unwrap();
        let go = |rn: RemoteNode| reconcile_bound(rn, cib.clone(), node.clone(), None);
        let (result, server) = go(rn.clone()).await;
        result.unwrap();
        assert!(
            !server
                .api_calls()
                .iter()
                .any(|c| c.is("PATCH", "/nodes/w1"))
        );
        cib.edit(|c| {
            let status = c.children.iter_mut().find(|e| e.name == "status").unwrap();
            status.children.push(
                Element::parse(
                    r#"<node_state id="a" uname="a" remote_node="true" in_ccm="false" crm-debug-origin="send_stonith_update" node_fenced="1796588619"/>"#,
                )
                .unwrap(),
            );
        });
        let configured = with_status(rn, written_status(&server).unwrap());
        let (result, server) = go(configured).await;
        result.unwrap();
        let calls = server.api_calls();
        let patch = calls
            .iter()
            .find(|c| c.is("PATCH", "/nodes/w1"))
            .expect("the Node patched");
        assert_eq!(
            patch.body,
            json!({
                "metadata": {
                    "resourceVersion": "42",
                    "annotations": {"kubemaker.io/out-of-service-after-fencing": "1796588619"},
                },
                "spec": {"taints": [
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                    {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"},
                ]},
            })
        );
        let reasons = server.event_reasons();
        assert_eq!(
            reasons.iter().filter(|r| *r == "Fenced").count(),
            2,
            "on the RemoteNode and on the Node: {reasons:?}"
        );
    }

    /// The resources section of a CIB, for edits made outside kubemaker.
    fn resources_mut(cib: &mut Element) -> &mut Element {
        cib.children
            .iter_mut()
            .find(|c| c.name == "configuration")
            .and_then(|c| c.children.iter_mut().find(|c| c.name == "resources"))
            .unwrap()
    }

    /// Once a spec is configured, an edit of a field kubemaker owns is put back with a Warning
    /// Event saying so, an administrator's meta attribute stays, and a deleted primitive is
    /// recreated with an Event of its own.
    #[tokio::test]
    async fn edits_outside_kubemaker_are_put_back_and_reported() {
        let cib = Arc::new(FakeCib::new(cib_with("")));
        let rn = remote_node("192.0.2.10", 1, true);
        let (_, server, _) = run(&rn, Some(cib.clone())).await;
        let configured_rn = with_status(rn, written_status(&server).unwrap());

        // pcs resource disable, and the server parameter edited.
        cib.edit(|c| {
            let p = resources_mut(c)
                .children
                .iter_mut()
                .find(|p| p.attr("id") == Some("a"))
                .unwrap();
            p.children.push(
                Element::new("meta_attributes")
                    .with_attr("id", "a-meta_attributes")
                    .with_child(
                        Element::new("nvpair")
                            .with_attr("id", "a-meta_attributes-target-role")
                            .with_attr("name", "target-role")
                            .with_attr("value", "Stopped"),
                    ),
            );
            let params = p
                .children
                .iter_mut()
                .find(|s| s.name == "instance_attributes")
                .unwrap();
            params.children[0].set_attr("value", "192.0.2.99");
        });
        let (_, server, _) = run(&configured_rn, Some(cib.clone())).await;
        assert_eq!(server.event_reasons(), ["Reverted"]);
        let xml = cib.snapshot().cib.to_xml();
        assert!(xml.contains(r#"value="192.0.2.10""#), "{xml}");
        assert!(
            xml.contains(r#"name="target-role" value="Stopped""#),
            "{xml}"
        );

        // Deleted by hand: recreated, reported.
        cib.edit(|c| resources_mut(c).children.clear());
        let (_, server, _) = run(&configured_rn, Some(cib.clone())).await;
        assert_eq!(server.event_reasons(), ["Recreated"]);
        assert!(has_primitive(&cib, "a"));

        // A spec change is not drift.
        let changed = with_status(
            remote_node("192.0.2.11", 2, true),
            configured_rn.status.clone().unwrap(),
        );
        let (_, server, _) = run(&changed, Some(cib.clone())).await;
        assert_eq!(server.event_reasons(), ["Configured"]);
    }

    #[tokio::test]
    async fn a_name_clash_leaves_the_other_resource_alone() {
        let other = r#"<primitive id="a" class="ocf" provider="heartbeat" type="Dummy"/>"#;
        let cib = Arc::new(FakeCib::new(cib_with(other)));
        let rn = remote_node("192.0.2.10", 1, true);
        let (result, server, _) = run(&rn, Some(cib.clone())).await;
        assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(60)));
        assert!(cib.writes.lock().unwrap().is_empty());
        assert_eq!(server.event_reasons(), ["NameClash"]);
        let status = written_status(&server).expect("a status patch");
        assert_eq!(
            configured(&status),
            ("False".into(), "NameClash".into(), Some(1))
        );
    }

    #[tokio::test]
    async fn without_a_cib_connection_the_status_says_so() {
        let rn = remote_node("192.0.2.10", 1, true);
        let (result, server, _) = run(&rn, None).await;
        assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(10)));
        let status = written_status(&server).expect("a status patch");
        assert_eq!(
            configured(&status),
            ("False".into(), "CibUnavailable".into(), Some(1))
        );
    }

    #[tokio::test]
    async fn a_failed_cib_write_is_an_error_with_its_reason() {
        let cib = Arc::new(FakeCib::failing(cib_with(""), "connection reset"));
        let rn = remote_node("192.0.2.10", 1, true);
        let (result, server, ctx) = run(&rn, Some(cib)).await;
        let err = result.unwrap_err();
        assert_eq!(err.reason(), "CibUnavailable");
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert_eq!(server.event_reasons(), ["CibUnavailable"]);
        let status = written_status(&server).expect("a status patch");
        assert_eq!(configured(&status).1, "CibUnavailable");
        let metrics = ctx.metrics.render();
        assert!(
            metrics.contains(
                "kubemaker_reconcile_failures_total{resource=\"RemoteNode\",reason=\"CibUnavailable\"} 1"
            ),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn deletion_removes_the_node_before_the_finalizer() {
        let cib = Arc::new(FakeCib::new(cib_with("")));
        let rn = remote_node("192.0.2.10", 1, true);
        run(&rn, Some(cib.clone())).await.0.unwrap();
        assert!(has_primitive(&cib, "a"));

        let gone = deleted(rn);
        let (result, server, _) = run(&gone, Some(cib.clone())).await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert_eq!(*cib.removals.lock().unwrap(), ["a"]);
        assert!(!has_primitive(&cib, "a"));
        assert_eq!(server.event_reasons(), ["Removing", "Removed"]);
        let calls = server.api_calls();
        let last = calls.last().expect("the finalizer patch");
        assert!(last.is("PATCH", "/remotenodes/a"), "{calls:?}");
        let ops: Vec<&Value> = last
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|o| &o["op"])
            .collect();
        assert!(ops.contains(&&json!("remove")), "{last:?}");
    }

    #[tokio::test]
    async fn deletion_waits_for_the_cib() {
        let gone = deleted(remote_node("192.0.2.10", 1, true));
        let (result, server, _) = run(&gone, None).await;
        let err = result.unwrap_err();
        assert_eq!(err.reason(), "CibUnavailable");
        assert!(
            server.api_calls().is_empty(),
            "the finalizer stays: {:?}",
            server.api_calls()
        );
    }

    /// RemoteNode `name` of a `via: remoteNodes` cluster bound to Kubernetes Node `node`.
    fn gateway_remote_node(name: &str, node: &str, deleting: bool) -> RemoteNode {
        let rn: RemoteNode = serde_json::from_value(json!({
            "apiVersion": "kubemaker.io/v1alpha1", "kind": "RemoteNode",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1,
                         "finalizers": [FINALIZER]},
            "spec": {"clusterRef": {"name": CLUSTER}, "kubernetesNode": node},
        }))
        .unwrap();
        if deleting { deleted(rn) } else { rn }
    }

    /// A CIB with the connection resources of remote nodes `nodes` (name, online): an online
    /// node's connection runs on node1.
    fn cib_with_remote_nodes(nodes: &[(&str, bool)]) -> Element {
        let resources: String = nodes
            .iter()
            .map(|(n, _)| format!(r#"<primitive id="{n}" class="ocf" provider="pacemaker" type="remote"><instance_attributes id="{n}-instance_attributes"><nvpair id="{n}-instance_attributes-server" name="server" value="192.0.2.1"/></instance_attributes></primitive>"#))
            .collect();
        let history: String = nodes
            .iter()
            .filter(|(_, up)| *up)
            .map(|(n, _)| format!(r#"<lrm_resource id="{n}" class="ocf" provider="pacemaker" type="remote"><lrm_rsc_op id="{n}_last_0" operation="start" call-id="3" rc-code="0" op-status="0" interval="0"/></lrm_resource>"#))
            .collect();
        let states: String = nodes
            .iter()
            .map(|(n, up)| {
                format!(r#"<node_state id="{n}" uname="{n}" remote_node="true" in_ccm="{up}"/>"#)
            })
            .collect();
        Element::parse(&format!(
            r#"<cib admin_epoch="0" epoch="5" num_updates="3" dc-uuid="1" have-quorum="1"><configuration><crm_config><cluster_property_set id="cib-bootstrap-options"><nvpair id="o1" name="dc-version" value="2.1.5-a3f44794f94"/></cluster_property_set></crm_config><nodes><node id="1" uname="node1"/></nodes><resources>{resources}</resources><constraints/></configuration><status><node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member" expected="member"><lrm id="1"><lrm_resources>{history}</lrm_resources></lrm></node_state>{states}</status></cib>"#
        ))
        .unwrap()
    }

    /// Reconciles the deleted RemoteNode `a` of a `via: remoteNodes` cluster, with the other
    /// RemoteNodes `others` and remoted pods `pods` in the caches, on `cib`.
    async fn run_gateway_deletion(
        a: &RemoteNode,
        others: &[RemoteNode],
        pods: &[k8s_openapi::api::core::v1::Pod],
        cib: Arc<FakeCib>,
        removed_before: &[&str],
    ) -> (Result<Action, ReconcileError>, ApiServer, Arc<Context>) {
        let mut pc = cluster();
        pc.spec.via = CibAccess::RemoteNodes;
        let mut rns = vec![a.clone()];
        rns.extend(others.iter().cloned());
        let (client, server) = api_for(a);
        let ctx = fixtures::context_with_pods(client, &[pc], &rns, &[], pods);
        for n in removed_before {
            ctx.removed_at_once
                .lock()
                .unwrap()
                .insert((CLUSTER.into(), n.to_string()));
        }
        fixtures::connect(&ctx, CLUSTER, 0, cib).await;
        let result = reconcile(Arc::new(a.clone()), ctx.clone()).await;
        (result, server, ctx)
    }

    #[tokio::test]
    async fn the_last_gateway_node_is_removed_in_one_write() {
        let cib = Arc::new(FakeCib::new(cib_with_remote_nodes(&[("a", true)])));
        let a = gateway_remote_node("a", "w1", true);
        let pods = [fixtures::remoted_pod("w1", "10.0.0.1")];
        let (result, server, _) = run_gateway_deletion(&a, &[], &pods, cib.clone(), &[]).await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert_eq!(
            *cib.removed_at_once.lock().unwrap(),
            [vec!["a".to_string()]]
        );
        assert!(cib.removals.lock().unwrap().is_empty(), "no graceful stop");
        assert!(!has_primitive(&cib, "a"));
        assert_eq!(server.event_reasons(), ["LastGatewayNode", "Removed"]);
    }

    #[tokio::test]
    async fn another_online_gateway_keeps_the_removal_graceful() {
        let cib = Arc::new(FakeCib::new(cib_with_remote_nodes(&[
            ("a", true),
            ("b", true),
        ])));
        let a = gateway_remote_node("a", "w1", true);
        let b = gateway_remote_node("b", "w2", false);
        let pods = [
            fixtures::remoted_pod("w1", "10.0.0.1"),
            fixtures::remoted_pod("w2", "10.0.0.2"),
        ];
        let (result, server, _) = run_gateway_deletion(&a, &[b], &pods, cib.clone(), &[]).await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert_eq!(*cib.removals.lock().unwrap(), ["a"]);
        assert!(cib.removed_at_once.lock().unwrap().is_empty());
        assert_eq!(server.event_reasons(), ["Removing", "Removed"]);
    }

    /// The other gateway's node is offline in Pacemaker: it carries no session, so `a` is the
    /// last one.
    #[tokio::test]
    async fn an_offline_gateway_does_not_count() {
        let cib = Arc::new(FakeCib::new(cib_with_remote_nodes(&[
            ("a", true),
            ("b", false),
        ])));
        let a = gateway_remote_node("a", "w1", true);
        let b = gateway_remote_node("b", "w2", false);
        let pods = [
            fixtures::remoted_pod("w1", "10.0.0.1"),
            fixtures::remoted_pod("w2", "10.0.0.2"),
        ];
        let (result, _, _) = run_gateway_deletion(&a, &[b], &pods, cib.clone(), &[]).await;
        result.unwrap();
        assert_eq!(
            *cib.removed_at_once.lock().unwrap(),
            [vec!["a".to_string()]]
        );
    }

    /// Uninstall: every RemoteNode deleted at once. The first finalizer removes all of them in
    /// one write; the others' finalizers then let go without a CIB connection.
    #[tokio::test]
    async fn every_node_at_once_goes_in_one_write_and_the_others_are_released() {
        let cib = Arc::new(FakeCib::new(cib_with_remote_nodes(&[
            ("a", true),
            ("b", true),
        ])));
        let a = gateway_remote_node("a", "w1", true);
        let b = gateway_remote_node("b", "w2", true);
        let pods = [
            fixtures::remoted_pod("w1", "10.0.0.1"),
            fixtures::remoted_pod("w2", "10.0.0.2"),
        ];
        let (result, server, ctx) = run_gateway_deletion(&a, &[b], &pods, cib.clone(), &[]).await;
        result.unwrap();
        assert_eq!(
            *cib.removed_at_once.lock().unwrap(),
            [vec!["a".to_string(), "b".to_string()]]
        );
        assert!(!has_primitive(&cib, "a") && !has_primitive(&cib, "b"));
        assert_eq!(server.event_reasons(), ["LastGatewayNode", "Removed"]);
        assert!(
            ctx.removed_at_once
                .lock()
                .unwrap()
                .contains(&(CLUSTER.to_string(), "b".to_string()))
        );

        // `a` as the one released later (the roles are symmetric), with no connection left.
        let (client, server) = api_for(&a);
        let mut pc = cluster();
        pc.spec.via = CibAccess::RemoteNodes;
        let ctx = fixtures::context_with_pods(client, &[pc], std::slice::from_ref(&a), &[], &pods);
        ctx.removed_at_once
            .lock()
            .unwrap()
            .insert((CLUSTER.into(), "a".into()));
        let result = reconcile(Arc::new(a.clone()), ctx.clone()).await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert_eq!(server.event_reasons(), ["Removed"]);
        assert!(ctx.removed_at_once.lock().unwrap().is_empty());
        let calls = server.api_calls();
        assert!(
            calls
                .last()
                .is_some_and(|c| c.is("PATCH", "/remotenodes/a")),
            "the finalizer goes: {calls:?}"
        );
    }

    /// The same deletion on a cluster reached through the remote CIB port stays graceful.
    #[tokio::test]
    async fn via_endpoints_removal_stays_graceful() {
        let cib = Arc::new(FakeCib::new(cib_with_remote_nodes(&[("a", true)])));
        let a = gateway_remote_node("a", "w1", true);
        let pods = [fixtures::remoted_pod("w1", "10.0.0.1")];
        let (client, server) = api_for(&a);
        let ctx =
            fixtures::context_with_pods(client, &[cluster()], std::slice::from_ref(&a), &[], &pods);
        fixtures::connect(&ctx, CLUSTER, 0, cib.clone()).await;
        reconcile(Arc::new(a), ctx).await.unwrap();
        assert_eq!(*cib.removals.lock().unwrap(), ["a"]);
        assert!(cib.removed_at_once.lock().unwrap().is_empty());
        assert_eq!(server.event_reasons(), ["Removing", "Removed"]);
    }
}
