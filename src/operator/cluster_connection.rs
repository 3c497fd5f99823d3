//! One live connection per PacemakerCluster: a CIB client, the latest whole CIB (refreshed from
//! change notifications), and the batch writer every RemoteNode's changes go through.
//!
//! Reconciles read the snapshot (cheap, shared) to decide whether anything must change; only the
//! writer reads the CIB fresh, re-validates and re-plans right before it writes, so a stale
//! snapshot can cost a wasted request but never a wrong write.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::cib::plan::{self, DesiredNode, Plan};
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
    pub nodes: std::collections::BTreeMap<String, NodeStatus>,
}

impl Snapshot {
    pub fn new(cib: Element) -> Snapshot {
        let nodes = status::read_status(&cib)
            .into_iter()
            .map(|n| (n.name.to_ascii_lowercase(), n))
            .collect();
        Snapshot { cib, nodes }
    }

    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.get(&name.to_ascii_lowercase())
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
    client: Arc<CibClient>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    writes: mpsc::Sender<WriteRequest>,
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
    /// Logs in, reads the CIB, subscribes to its changes. `changed` gets the cluster's name after
    /// every refresh of the snapshot.
    pub async fn open(
        cluster: &str,
        cfg: ClientConfig,
        changed: mpsc::UnboundedSender<String>,
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
                    // Coalesce a burst (a transaction, a status update storm) into one read.
                    tokio::time::sleep(NOTIFY_DEBOUNCE).await;
                    while notifications.receiver().try_recv().is_ok() {}
                    match client.query_cib().await {
                        Ok(cib) => {
                            metrics.set_cib_connected(&name, true);
                            snap_tx.send_replace(Arc::new(Snapshot::new(cib)));
                            let _ = changed.send(name.clone());
                        }
                        Err(e) => {
                            metrics.set_cib_connected(&name, false);
                            warn!(cluster = %name, error = %e, "reading the CIB after a change failed");
                        }
                    }
                }
            })
        };
        let writer = tokio::spawn(write_loop(
            cluster.to_string(),
            client.clone(),
            wrx,
            snap_tx,
            changed,
            metrics.clone(),
        ));
        metrics.set_cib_connected(cluster, true);
        info!(cluster, "connected to the cluster's CIB");
        Ok(ClusterConnection {
            cluster: cluster.to_string(),
            client,
            snapshot: snap_rx,
            writes: wtx,
            tasks: vec![watcher, writer],
        })
    }

    /// Whether the notification and writer tasks still run.
    pub fn is_alive(&self) -> bool {
        self.tasks.iter().all(|t| !t.is_finished())
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn client(&self) -> &CibClient {
        &self.client
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
}

/// Collects requests that arrive together into one transaction (up to [`MAX_BATCH`] nodes).
async fn write_loop(
    cluster: String,
    client: Arc<CibClient>,
    mut rx: mpsc::Receiver<WriteRequest>,
    snapshot: Arc<watch::Sender<Arc<Snapshot>>>,
    changed: mpsc::UnboundedSender<String>,
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
        let wrote = write_batch(&client, batch, &metrics).await;
        debug!(cluster = %cluster, nodes = n, wrote, "CIB write batch done");
        if wrote {
            match client.query_cib().await {
                Ok(cib) => {
                    snapshot.send_replace(Arc::new(Snapshot::new(cib)));
                    let _ = changed.send(cluster.clone());
                }
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
