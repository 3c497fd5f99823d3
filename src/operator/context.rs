//! What every reconcile shares: the Kubernetes client, the caches, the open cluster connections,
//! the event recorder and the metrics; and [`CibConnection`], the part of a
//! [`ClusterConnection`] the reconcilers use (so their tests can stand in for a live CIB).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{Mutex, broadcast};
use tracing::debug;

use futures::future::BoxFuture;

use crate::cib::DesiredNode;

use super::cluster_connection::{
    Changed, ClusterConnection, ConnectionError, Snapshot, WriteOutcome,
};
use super::crd::{PacemakerCluster, RemoteNode};
use super::metrics::Metrics;

/// Something changed that some objects should be reconciled for.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// The CIB of this PacemakerCluster changed (or its connection came up); which nodes.
    CibChanged(String, Changed),
    /// A Kubernetes Node changed.
    NodeChanged(String),
    /// A remoted pod on this Kubernetes Node changed (see [`super::remoted_pods`]).
    RemotedPodChanged(String),
    /// A RemoteNode of this PacemakerCluster started to be deleted: a `via: remoteNodes`
    /// cluster's gateway list puts that node last (see [`super::remoted_pods::gateway_endpoints`]).
    RemoteNodeLeaving(String),
}

/// What the reconcilers need of a cluster's CIB connection.
pub trait CibConnection: Send + Sync {
    /// Whether the connection still runs.
    fn is_alive(&self) -> bool;
    /// The CIB as last read.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// Brings node `desired` into the CIB (batched with other writes).
    fn write(&self, desired: DesiredNode) -> BoxFuture<'_, Result<WriteOutcome, ConnectionError>>;
    /// Stops and removes node `name`; the number of CIB transactions its batch used.
    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<usize, ConnectionError>>;
    /// Deletes nodes `names` in one write with no stop first (see
    /// [`crate::cib::service::CibService::remove_nodes_at_once`]); the number of transactions.
    fn remove_at_once<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<usize, ConnectionError>>;
}

impl CibConnection for ClusterConnection {
    fn is_alive(&self) -> bool {
        ClusterConnection::is_alive(self)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        ClusterConnection::snapshot(self)
    }

    fn write(&self, desired: DesiredNode) -> BoxFuture<'_, Result<WriteOutcome, ConnectionError>> {
        Box::pin(ClusterConnection::write(self, desired))
    }

    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<usize, ConnectionError>> {
        Box::pin(ClusterConnection::remove(self, name))
    }

    fn remove_at_once<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<usize, ConnectionError>> {
        Box::pin(ClusterConnection::remove_at_once(self, names))
    }
}

/// An open connection and what it was opened with.
pub struct ClusterSlot {
    /// Fingerprint of the endpoints, TLS mode and credentials (hashed, never the password).
    pub fingerprint: u64,
    pub conn: Arc<dyn CibConnection>,
}

/// Why a RemoteNode has no PacemakerCluster to belong to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterLookupError {
    #[error("PacemakerCluster {0:?} does not exist")]
    Missing(String),
    #[error("no PacemakerCluster exists; create one first")]
    NoneExists,
    #[error("spec.clusterRef is required when several PacemakerClusters exist ({})", .0.join(", "))]
    Ambiguous(Vec<String>),
}

pub struct Context {
    pub client: kube::Client,
    /// The controller's namespace: Secrets and the Lease.
    pub namespace: String,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub clusters: Mutex<HashMap<String, ClusterSlot>>,
    pub triggers: broadcast::Sender<Trigger>,
    pub nodes: Store<Node>,
    /// The chart's remoted pods in the controller's namespace.
    pub remoted_pods: Store<Pod>,
    pub remote_nodes: Store<RemoteNode>,
    pub pacemaker_clusters: Store<PacemakerCluster>,
    /// (cluster, lowercased node name) of the nodes a one-write removal
    /// ([`CibConnection::remove_at_once`]) deleted along with the RemoteNode that asked for it:
    /// their own finalizers may find no CIB connection left to confirm it by.
    pub removed_at_once: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Consecutive failed reconciles per object, for exponential backoff.
    pub failures: std::sync::Mutex<HashMap<String, u32>>,
}

/// First retry after a failed reconcile; doubles per further failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Context {
    /// The delay before retrying `key` after one more failure.
    pub fn backoff(&self, key: &str) -> Duration {
        let n = match self.failures.lock() {
            Ok(mut m) => {
                let n = m.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            }
            Err(_) => 1,
        };
        FIRST_BACKOFF
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(MAX_BACKOFF)
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }

    /// The open connection to `cluster`, if the cluster reconciler has one.
    pub async fn connection(&self, cluster: &str) -> Option<Arc<dyn CibConnection>> {
        let map = self.clusters.lock().await;
        map.get(cluster)
            .map(|s| s.conn.clone())
            .filter(|c| c.is_alive())
    }

    /// The PacemakerCluster a RemoteNode belongs to: its clusterRef, or the only one there is.
    pub fn cluster_of(&self, rn: &RemoteNode) -> Result<Arc<PacemakerCluster>, ClusterLookupError> {
        match &rn.spec.cluster_ref {
            Some(r) => self
                .pacemaker_clusters
                .get(&ObjectRef::new(&r.name))
                .ok_or_else(|| ClusterLookupError::Missing(r.name.clone())),
            None => {
                let all = self.pacemaker_clusters.state();
                match all.as_slice() {
                    [one] => Ok(one.clone()),
                    [] => Err(ClusterLookupError::NoneExists),
                    _ => Err(ClusterLookupError::Ambiguous(
                        all.iter().filter_map(|c| c.metadata.name.clone()).collect(),
                    )),
                }
            }
        }
    }

    /// Name of the cluster a RemoteNode belongs to, without needing the cluster to exist.
    pub fn cluster_name_of(&self, rn: &RemoteNode) -> Option<String> {
        match &rn.spec.cluster_ref {
            Some(r) => Some(r.name.clone()),
            None => self
                .cluster_of(rn)
                .ok()
                .and_then(|c| c.metadata.name.clone()),
        }
    }

    /// Publishes an Event; failing to publish is logged, never fatal.
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) {
        let mut note: String = note.into();
        // The API refuses notes over 1 kB.
        if note.len() > 1000 {
            let mut cut = 990;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
            note.push_str(" …");
        }
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
            debug!(reason, error = %e, "publishing an event failed");
        }
    }

    /// The Kubernetes Node a RemoteNode is bound to, for events on it as well.
    pub fn bound_node(&self, rn: &RemoteNode) -> Option<ObjectReference> {
        let name = rn.spec.kubernetes_node.as_deref()?;
        self.nodes
            .get(&ObjectRef::new(name))
            .map(|n| n.object_ref(&()))
    }
}
