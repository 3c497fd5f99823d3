//! One live connection per PacemakerCluster: a CIB client, the latest whole CIB (refreshed from
//! change notifications), and the batch writer every RemoteNode's changes go through.
//!
//! Reconciles read the snapshot (cheap, shared) to decide whether anything must change; only the
//! writer reads the CIB fresh, re-validates and re-plans right before it writes, so a stale
//! snapshot can cost a wasted request but never a wrong write.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::cib::model::Cib;
use crate::cib::plan::{self, DesiredNode, NodeChanges, Plan};
use crate::cib::removal;
use crate::cib::status::{self, NodeStatus};
use crate::cib::validate::{self, Problem};
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

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
    #[error("{0}")]
    Cib(String),
}

struct WriteRequest {
    desired: DesiredNode,
    reply: oneshot::Sender<Result<WriteOutcome, WriteError>>,
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
    pub async fn write(&self, desired: DesiredNode) -> Result<WriteOutcome, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.writes
            .send(WriteRequest { desired, reply })
            .await
            .map_err(|_| WriteError::Cib("the CIB writer has stopped".into()))?;
        rx.await
            .map_err(|_| WriteError::Cib("the CIB writer has stopped".into()))?
    }

    /// Queues node `name` for removal (stop, wait, delete, purge), batched with other removals,
    /// and waits for the outcome: the number of CIB transactions its batch used.
    pub async fn remove(&self, name: &str) -> Result<usize, String> {
        let (reply, rx) = oneshot::channel();
        self.removals
            .send(RemovalRequest {
                name: name.to_string(),
                reply,
            })
            .await
            .map_err(|_| "the CIB remover has stopped".to_string())?;
        rx.await
            .map_err(|_| "the CIB remover has stopped".to_string())?
    }
}

type WriteLock = Arc<tokio::sync::Mutex<()>>;

struct RemovalRequest {
    name: String,
    reply: oneshot::Sender<Result<usize, String>>,
}

/// How long a removal waits for a node's resource to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(180);

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
    mut snapshot: watch::Receiver<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    write_lock: WriteLock,
) {
    let names: Vec<String> = batch.iter().map(|r| r.name.clone()).collect();
    info!(nodes = names.len(), "removing nodes from the CIB");
    // 1. Stop: one transaction for the whole batch.
    let mut watched: Vec<(String, Vec<String>)> = Vec::new();
    let guard = write_lock.lock().await;
    let stop = client
        .apply_with_retry(
            |live| {
                watched.clear();
                let mut p = Plan::default();
                for n in &names {
                    if let Some((rsc, watch)) = removal::defining_resource(live, n) {
                        let changes = plan::stop_resource(live, &rsc);
                        if !changes.is_empty() {
                            p.nodes.push(NodeChanges {
                                node: n.clone(),
                                changes,
                            });
                        }
                        watched.push((n.clone(), watch));
                    }
                }
                Ok(p)
            },
            false,
        )
        .await;
    drop(guard);
    let mut transactions = 0;
    match stop {
        Ok(r) => {
            metrics.add_cib_writes(r.transactions, r.conflicts);
            transactions += r.transactions;
        }
        Err(e) => {
            let msg = format!("stopping before removal: {e}");
            for r in batch {
                let _ = r.reply.send(Err(msg.clone()));
            }
            return;
        }
    }
    // 2. Wait, on the snapshot notifications keep fresh, until nothing watched is active.
    let started = Instant::now();
    let still_active = |snap: &Snapshot| -> Vec<String> {
        watched
            .iter()
            .filter(|(_, ids)| ids.iter().any(|id| status::resource_active(&snap.cib, id)))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let mut active = still_active(&snapshot.borrow_and_update());
    while !active.is_empty() && started.elapsed() < STOP_TIMEOUT {
        let left = STOP_TIMEOUT.saturating_sub(started.elapsed());
        // A missed notification costs at most 5 s: look again anyway.
        let wait = tokio::time::timeout(left.min(Duration::from_secs(5)), snapshot.changed());
        if let Ok(Err(_)) = wait.await {
            break;
        }
        active = still_active(&snapshot.borrow_and_update());
    }
    let (stuck, ready): (Vec<RemovalRequest>, Vec<RemovalRequest>) = batch
        .into_iter()
        .partition(|r| active.iter().any(|a| a == &r.name));
    for r in stuck {
        let _ = r.reply.send(Err(format!(
            "the resource of node {} is still active {:?} after target-role=Stopped; check `crm_mon` for a failed stop",
            r.name, STOP_TIMEOUT
        )));
    }
    if ready.is_empty() {
        return;
    }
    // 3. Delete and purge: one transaction for the rest.
    let names: Vec<String> = ready.iter().map(|r| r.name.clone()).collect();
    let guard = write_lock.lock().await;
    let delete = client
        .apply_with_retry(
            |live| {
                let mut seen = BTreeSet::new();
                let mut p = Plan::default();
                for n in &names {
                    for mut nc in removal::removal_plan(live, n).nodes {
                        // A constraint naming two of these nodes is deleted once.
                        nc.changes.retain(|c| seen.insert(c.describe()));
                        p.nodes.push(nc);
                    }
                }
                Ok(p)
            },
            false,
        )
        .await;
    drop(guard);
    match delete {
        Ok(r) => {
            metrics.add_cib_writes(r.transactions, r.conflicts);
            transactions += r.transactions;
            info!(
                nodes = names.len(),
                transactions, "nodes removed from the CIB"
            );
            for req in ready {
                let _ = req.reply.send(Ok(transactions));
            }
        }
        Err(e) => {
            let msg = format!("deleting: {e}");
            for req in ready {
                let _ = req.reply.send(Err(msg.clone()));
            }
        }
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
        let guard = write_lock.lock().await;
        let wrote = write_batch(&client, batch, &metrics).await;
        drop(guard);
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

/// Validates each node against the live CIB (a bad node is answered alone and never blocks the
/// others), then writes the rest in one versioned transaction. Returns whether anything was
/// committed.
async fn write_batch(client: &CibClient, batch: Vec<WriteRequest>, metrics: &Metrics) -> bool {
    let mut pending: Vec<WriteRequest> = batch;
    let mut described: Vec<Vec<String>> = Vec::new();
    let result = client
        .apply_with_retry(
            |live| {
                let (ok, bad) = split_valid(std::mem::take(&mut pending), live);
                for (req, problems) in bad {
                    let _ = req.reply.send(Err(WriteError::Invalid(problems)));
                }
                pending = ok;
                let desired: Vec<DesiredNode> = pending.iter().map(|r| r.desired.clone()).collect();
                let p: Plan = plan::plan(&desired, live);
                described = desired
                    .iter()
                    .map(|d| {
                        p.nodes
                            .iter()
                            .filter(|nc| nc.node == d.name)
                            .flat_map(|nc| nc.changes.iter().map(|c| c.describe()))
                            .collect()
                    })
                    .collect();
                Ok(p)
            },
            false,
        )
        .await;
    match result {
        Ok(report) => {
            metrics.add_cib_writes(report.transactions, report.conflicts);
            let wrote = report.transactions > 0;
            for (req, changes) in pending.into_iter().zip(described) {
                let outcome = if !wrote || changes.is_empty() {
                    WriteOutcome::Unchanged
                } else {
                    WriteOutcome::Written(changes)
                };
                let _ = req.reply.send(Ok(outcome));
            }
            wrote
        }
        Err(e) => {
            let msg = e.to_string();
            for req in pending {
                let _ = req.reply.send(Err(WriteError::Cib(msg.clone())));
            }
            false
        }
    }
}

/// Splits requests into those the CIB checks accept (alone and together) and those they refuse.
#[allow(clippy::type_complexity)]
fn split_valid(
    reqs: Vec<WriteRequest>,
    live: &Element,
) -> (Vec<WriteRequest>, Vec<(WriteRequest, Vec<Problem>)>) {
    let mut ok = Vec::with_capacity(reqs.len());
    let mut bad = Vec::new();
    for r in reqs {
        let problems = validate::check_against_cib(std::slice::from_ref(&r.desired), live);
        if problems.is_empty() {
            ok.push(r);
        } else {
            bad.push((r, problems));
        }
    }
    // Clashes between nodes of the same batch (two objects naming one Pacemaker node).
    let desired: Vec<DesiredNode> = ok.iter().map(|r| r.desired.clone()).collect();
    let together = validate::check_against_cib(&desired, live);
    if !together.is_empty() {
        let (clashing, fine): (Vec<_>, Vec<_>) = ok.into_iter().partition(|r| {
            together
                .iter()
                .any(|p| p.node().eq_ignore_ascii_case(&r.desired.name))
        });
        ok = fine;
        for r in clashing {
            let mine = together
                .iter()
                .filter(|p| p.node().eq_ignore_ascii_case(&r.desired.name))
                .cloned()
                .collect();
            bad.push((r, mine));
        }
    }
    (ok, bad)
}
