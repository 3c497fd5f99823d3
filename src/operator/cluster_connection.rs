//! One live connection per PacemakerCluster: a CIB client, the latest whole CIB (refreshed from
//! change notifications), and the batching every RemoteNode's writes and removals go through.
//!
//! Reconciles read the snapshot (cheap, shared) to decide whether anything must change; only the
//! writer reads the CIB fresh, re-validates and re-plans right before it writes (that procedure
//! is [`crate::cib::service`]'s), so a stale snapshot can cost a wasted request but never a wrong
//! write. What is the controller's: collecting requests that arrive together into one batch, the
//! snapshot (which is also how a removal waits for stops), and one writer at a time per cluster.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::cib::desired::DesiredNode;
use crate::cib::model::Cib;
use crate::cib::service::{
    ApplyError, ApplyOptions, CibService, InvalidNodes, NodeOutcome, RemovalError, RemovalOptions,
    StopWaiter,
};
use crate::cib::status::{self, NodeStatus};
use crate::cib::validate::Problem;
use crate::cib::{CibClient, CibError, ClientConfig, WatchEvent};
use crate::wire::Element;

use super::metrics::Metrics;

/// Nodes per `cib_apply_diff` transaction.
pub const MAX_BATCH: usize = 250;
/// After a notification, wait this long for more before reading the CIB again.
const NOTIFY_DEBOUNCE: Duration = Duration::from_millis(250);

/// The CIB as last read, with the per-node status derived from it.
#[derive(Debug)]
pub struct Snapshot {
    pub cib: Element,
    /// Lowercased node name → status.
    pub nodes: BTreeMap<String, NodeStatus>,
    /// Lowercased node name → digest of everything a RemoteNode's reconcile reads about it (its
    /// status, its resource, its node entry), to reconcile only the nodes a change touched.
    digests: BTreeMap<String, u64>,
}

/// Which nodes a CIB change concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Everything may have changed (first read, reconnect).
    All,
    /// Lowercased Pacemaker node names.
    Nodes(Arc<BTreeSet<String>>),
}

impl Snapshot {
    pub fn new(cib: Element) -> Snapshot {
        let nodes: BTreeMap<String, NodeStatus> = status::read_status(&cib)
            .into_iter()
            .map(|n| (n.name.to_ascii_lowercase(), n))
            .collect();
        let view = Cib::new(&cib);
        let mut digests: BTreeMap<String, DefaultHasher> = BTreeMap::new();
        for p in view.primitives() {
            if let Some(name) = p.defines_node().or(p.guest_node_name()) {
                let h = digests.entry(name.to_ascii_lowercase()).or_default();
                p.element.to_xml().hash(h);
            }
        }
        for (name, n) in &nodes {
            let h = digests.entry(name.clone()).or_default();
            format!("{n:?}").hash(h);
            if let Some(entry) = view.node_entry(name) {
                entry.to_xml().hash(h);
            }
        }
        let digests = digests.into_iter().map(|(k, h)| (k, h.finish())).collect();
        Snapshot {
            cib,
            nodes,
            digests,
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.get(&name.to_ascii_lowercase())
    }

    /// The nodes whose digest differs between `self` (older) and `newer`.
    pub fn changed_nodes(&self, newer: &Snapshot) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (k, v) in &newer.digests {
            if self.digests.get(k) != Some(v) {
                out.insert(k.clone());
            }
        }
        for k in self.digests.keys() {
            if !newer.digests.contains_key(k) {
                out.insert(k.clone());
            }
        }
        out
    }
}

/// Publishes `cib` as the new snapshot and reports which nodes changed.
fn publish(
    tx: &watch::Sender<Arc<Snapshot>>,
    changed: &mpsc::UnboundedSender<(String, Changed)>,
    cluster: &str,
    cib: Element,
) {
    let next = Arc::new(Snapshot::new(cib));
    let prev = tx.send_replace(next.clone());
    let nodes = prev.changed_nodes(&next);
    if !nodes.is_empty() {
        let _ = changed.send((cluster.to_string(), Changed::Nodes(Arc::new(nodes))));
    }
}

/// What a write did for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The CIB already matched.
    Unchanged,
    /// Committed; the changes, described for an Event.
    Written(Vec<String>),
}

/// Why a write or a removal through the connection did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectionError {
    /// The live CIB checks refused the node; nothing of it was written.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    /// The node's batch could not be written.
    #[error("{0}")]
    Write(ApplyError),
    /// The node's removal failed or its resource did not stop in time.
    #[error("{0}")]
    Removal(RemovalError),
    /// The connection's writer (or remover) task has ended: the connection is being replaced.
    #[error("the CIB {0} has stopped")]
    Stopped(&'static str),
}

impl ConnectionError {
    /// A short stable name of the kind of failure, for an Event reason or a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectionError::Invalid(_) => "InvalidConfiguration",
            ConnectionError::Write(e) => e.reason(),
            ConnectionError::Removal(e) => e.reason(),
            ConnectionError::Stopped(_) => "CibConnectionClosed",
        }
    }
}

struct WriteRequest {
    desired: DesiredNode,
    reply: oneshot::Sender<Result<WriteOutcome, ConnectionError>>,
}

/// A running connection to one cluster. Dropping the last handle stops its tasks.
pub struct ClusterConnection {
    pub cluster: String,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    writes: mpsc::Sender<WriteRequest>,
    removals: mpsc::Sender<RemovalRequest>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ClusterConnection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for ClusterConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConnection")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl ClusterConnection {
    /// Logs in, reads the CIB, subscribes to its changes. `changed` gets the cluster's name and
    /// the nodes that differ after every refresh of the snapshot.
    pub async fn open(
        cluster: &str,
        cfg: ClientConfig,
        changed: mpsc::UnboundedSender<(String, Changed)>,
        metrics: Arc<Metrics>,
    ) -> Result<ClusterConnection, CibError> {
        let client = Arc::new(CibClient::connect(cfg).await?);
        let first = Arc::new(Snapshot::new(client.query_cib().await?));
        let (snap_tx, snap_rx) = watch::channel(first);
        let snap_tx = Arc::new(snap_tx);
        let mut notifications = client.watch().await?;
        let (wtx, wrx) = mpsc::channel(4096);

        let watcher = {
            let client = client.clone();
            let snap_tx = snap_tx.clone();
            let name = cluster.to_string();
            let changed = changed.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                while let Some(ev) = notifications.next().await {
                    if let WatchEvent::Lost { error } = &ev {
                        warn!(cluster = %name, %error, "CIB notifications lost");
                        metrics.set_cib_connected(&name, false);
                        break;
                    }
                    let mut resync = matches!(ev, WatchEvent::Resync { .. });
                    // Coalesce a burst (a transaction, a status update storm) into one read.
                    tokio::time::sleep(NOTIFY_DEBOUNCE).await;
                    while let Ok(ev) = notifications.receiver().try_recv() {
                        resync |= matches!(ev, WatchEvent::Resync { .. });
                    }
                    match client.query_cib().await {
                        Ok(cib) => {
                            metrics.set_cib_connected(&name, true);
                            publish(&snap_tx, &changed, &name, cib);
                            if resync {
                                // Changes may have been missed: look at every node again.
                                let _ = changed.send((name.clone(), Changed::All));
                            }
                        }
                        Err(e) => {
                            metrics.set_cib_connected(&name, false);
                            warn!(cluster = %name, error = %e, "reading the CIB after a change failed");
                        }
                    }
                }
            })
        };
        // The controller's own writes never race each other: one at a time per cluster.
        let write_lock = Arc::new(tokio::sync::Mutex::new(()));
        let (rtx, rrx) = mpsc::channel(4096);
        let remover = tokio::spawn(removal_loop(
            client.clone(),
            rrx,
            snap_rx.clone(),
            metrics.clone(),
            write_lock.clone(),
        ));
        let writer = tokio::spawn(write_loop(
            cluster.to_string(),
            client.clone(),
            write_lock,
            wrx,
            snap_tx,
            changed,
            metrics.clone(),
        ));
        metrics.set_cib_connected(cluster, true);
        info!(cluster, "connected to the cluster's CIB");
        Ok(ClusterConnection {
            cluster: cluster.to_string(),
            snapshot: snap_rx,
            writes: wtx,
            removals: rtx,
            tasks: vec![watcher, writer, remover],
        })
    }

    /// Whether the notification and writer tasks still run.
    pub fn is_alive(&self) -> bool {
        self.tasks.iter().all(|t| !t.is_finished())
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Queues `desired` for the next batched transaction and waits for its outcome.
    pub async fn write(&self, desired: DesiredNode) -> Result<WriteOutcome, ConnectionError> {
        let (reply, rx) = oneshot::channel();
        self.writes
            .send(WriteRequest { desired, reply })
            .await
            .map_err(|_| ConnectionError::Stopped("writer"))?;
        rx.await.map_err(|_| ConnectionError::Stopped("writer"))?
    }

    /// Queues node `name` for removal (stop, wait, delete, purge), batched with other removals,
    /// and waits for the outcome: the number of CIB transactions its batch used.
    pub async fn remove(&self, name: &str) -> Result<usize, ConnectionError> {
        self.queue_removal(vec![name.to_string()], false).await
    }

    /// Queues nodes `names` for removal in one write with no stop first
    /// ([`CibService::remove_nodes_at_once`]): the whole batch it lands in goes that way, since
    /// whoever asked expects the connection to be gone after it. Waits for the outcome: the
    /// number of CIB transactions.
    pub async fn remove_at_once(&self, names: &[String]) -> Result<usize, ConnectionError> {
        self.queue_removal(names.to_vec(), true).await
    }

    async fn queue_removal(
        &self,
        names: Vec<String>,
        at_once: bool,
    ) -> Result<usize, ConnectionError> {
        let (reply, rx) = oneshot::channel();
        self.removals
            .send(RemovalRequest {
                names,
                at_once,
                reply,
            })
            .await
            .map_err(|_| ConnectionError::Stopped("remover"))?;
        rx.await.map_err(|_| ConnectionError::Stopped("remover"))?
    }
}

type WriteLock = Arc<tokio::sync::Mutex<()>>;

struct RemovalRequest {
    names: Vec<String>,
    /// In one write, with no stop first.
    at_once: bool,
    reply: oneshot::Sender<Result<usize, ConnectionError>>,
}

/// Removals that arrive together share their transactions: one sets `target-role=Stopped` on all
/// their resources, one deletes everything of all of them once stopped. Each batch runs as its own
/// task, so a slow stop never holds up the next batch; their writes are versioned and retried.
async fn removal_loop(
    client: Arc<CibClient>,
    mut rx: mpsc::Receiver<RemovalRequest>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    write_lock: WriteLock,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                _ => break,
            }
        }
        tokio::spawn(remove_batch(
            client.clone(),
            batch,
            snapshot.clone(),
            metrics.clone(),
            write_lock.clone(),
        ));
    }
}

async fn remove_batch(
    client: Arc<CibClient>,
    batch: Vec<RemovalRequest>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    write_lock: WriteLock,
) {
    let names = batch_names(&batch);
    let service = CibService::new(&client).serialized(&write_lock);
    // One request for a single write decides for the batch: after that write the connection
    // may be gone, so a graceful removal of the others could never finish.
    let result = if batch.iter().any(|r| r.at_once) {
        service.remove_nodes_at_once(&names).await
    } else {
        service
            .remove_nodes(
                &names,
                &mut SnapshotWaiter(snapshot),
                &RemovalOptions::default(),
            )
            .await
    };
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            for r in batch {
                let _ = r.reply.send(Err(ConnectionError::Removal(e.clone())));
            }
            return;
        }
    };
    metrics.add_cib_writes(report.writes.transactions, report.writes.conflicts);
    for r in batch {
        let stuck = report.stuck.iter().find(
            |e| matches!(e, RemovalError::StillActive { node, .. } if r.names.contains(node)),
        );
        let _ = r.reply.send(match stuck {
            Some(e) => Err(ConnectionError::Removal(e.clone())),
            None => Ok(report.writes.transactions),
        });
    }
}

/// The nodes of a removal batch, each once (case-insensitively, as Pacemaker's node names),
/// in the order first asked for.
fn batch_names(batch: &[RemovalRequest]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    batch
        .iter()
        .flat_map(|r| r.names.iter())
        .filter(|n| seen.insert(n.to_ascii_lowercase()))
        .cloned()
        .collect()
}

/// A removal waits for stops on the snapshot notifications keep fresh.
struct SnapshotWaiter(watch::Receiver<Arc<Snapshot>>);

impl StopWaiter for SnapshotWaiter {
    async fn wait_stopped<F>(
        &mut self,
        timeout: Duration,
        still_active: F,
    ) -> Result<Vec<String>, CibError>
    where
        F: Fn(&Element) -> Vec<String> + Send + Sync,
    {
        let started = Instant::now();
        let mut active = still_active(&self.0.borrow_and_update().cib);
        while !active.is_empty() && started.elapsed() < timeout {
            let left = timeout.saturating_sub(started.elapsed());
            // A missed notification costs at most 5 s: look again anyway.
            let wait = tokio::time::timeout(left.min(Duration::from_secs(5)), self.0.changed());
            if let Ok(Err(_)) = wait.await {
                break;
            }
            active = still_active(&self.0.borrow_and_update().cib);
        }
        Ok(active)
    }
}

/// Collects requests that arrive together into one transaction (up to [`MAX_BATCH`] nodes).
async fn write_loop(
    cluster: String,
    client: Arc<CibClient>,
    write_lock: WriteLock,
    mut rx: mpsc::Receiver<WriteRequest>,
    snapshot: Arc<watch::Sender<Arc<Snapshot>>>,
    changed: mpsc::UnboundedSender<(String, Changed)>,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Reconciles triggered together arrive within a few milliseconds of each other.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                _ => break,
            }
        }
        let n = batch.len();
        let wrote = write_batch(&client, &write_lock, batch, &metrics).await;
        debug!(cluster = %cluster, nodes = n, wrote, "CIB write batch done");
        if wrote {
            match client.query_cib().await {
                Ok(cib) => publish(&snapshot, &changed, &cluster, cib),
                Err(e) => {
                    warn!(cluster = %cluster, error = %e, "reading the CIB after a write failed")
                }
            }
        }
    }
}

/// Writes a batch in one versioned transaction; a node the live CIB checks refuse is answered
/// alone and never blocks the others. Returns whether anything was committed.
async fn write_batch(
    client: &CibClient,
    write_lock: &tokio::sync::Mutex<()>,
    batch: Vec<WriteRequest>,
    metrics: &Metrics,
) -> bool {
    let (desired, replies): (Vec<DesiredNode>, Vec<_>) =
        batch.into_iter().map(|r| (r.desired, r.reply)).unzip();
    let opts = ApplyOptions {
        batch_size: MAX_BATCH,
        dry_run: false,
    };
    let result = CibService::new(client)
        .serialized(write_lock)
        .apply_nodes(&desired, &opts, InvalidNodes::SetAside)
        .await;
    let report = match result {
        Ok(report) => report,
        // Only a request refused as a whole ends here, which SetAside never is; answer anyway.
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(ConnectionError::Write(e.clone())));
            }
            return false;
        }
    };
    metrics.add_cib_writes(report.transactions, report.conflicts);
    for (reply, outcome) in replies.into_iter().zip(report.nodes) {
        let _ = reply.send(match outcome {
            NodeOutcome::Unchanged => Ok(WriteOutcome::Unchanged),
            NodeOutcome::Written(changes) => Ok(WriteOutcome::Written(changes)),
            NodeOutcome::Refused(problems) => Err(ConnectionError::Invalid(problems)),
            NodeOutcome::Failed(e) => Err(ConnectionError::Write(e)),
        });
    }
    report.transactions > 0
}
