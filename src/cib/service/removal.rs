//! Removing remote or guest nodes through the CIB alone, in the order `pcs cluster node
//! remove-remote` + `crm_node --force --remove` use (cib-access.md §3.6), for N nodes at once:
//!
//! 1. one transaction setting `target-role=Stopped` on every node's connection (remote) or
//!    guest resource, so the cluster disconnects cleanly and purges the node's transient
//!    attributes itself;
//! 2. wait until the status section shows them stopped; how to wait is the caller's
//!    ([`StopWaiter`]: the command line polls, the controller watches its notification-fed
//!    snapshot);
//! 3. one transaction deleting, for every node that stopped, the resource, constraints naming it
//!    or the node, the `<node>` entry and the `<node_state>`.
//!
//! Safe to repeat: every step skips what is already done. The plans are
//! [`crate::cib::plan::stop_resource`] and [`crate::cib::plan::removal_plan`].

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::cib::client::{CibClient, CibError};
use crate::cib::patch::{Change, STATUS_PATH};
use crate::cib::plan::{NodeChanges, Plan, defining_resource, removal_plan, stop_resource};
use crate::cib::status::resource_active;
use crate::wire::Element;

use super::write::{ApplyError, ApplyReport, CibService};

/// How long a removal waits for a node's resource to stop, unless told otherwise.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone)]
pub struct RemovalOptions {
    /// How long to wait for the resources to stop.
    pub stop_timeout: Duration,
    /// How often [`Polling`] reads the CIB while waiting.
    pub poll_interval: Duration,
    /// Delete even if the resource did not stop in time (the node may then need fencing or a
    /// manual `crm_resource --cleanup`).
    pub force: bool,
}

impl Default for RemovalOptions {
    fn default() -> Self {
        RemovalOptions {
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            poll_interval: Duration::from_millis(500),
            force: false,
        }
    }
}

/// Why nodes were not removed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemovalError {
    #[error("stopping before removal: {0}")]
    Stop(#[source] ApplyError),
    #[error("waiting for the stop: {0}")]
    Wait(#[source] CibError),
    #[error(
        "{resource} (node {node}) is still active {after:?} after target-role=Stopped; check `crm_mon` for a failed stop"
    )]
    StillActive {
        node: String,
        resource: String,
        after: Duration,
    },
    #[error("deleting: {0}")]
    Delete(#[source] ApplyError),
}

impl RemovalError {
    /// A short stable name of the kind of failure, for an Event reason or a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            RemovalError::Stop(e) | RemovalError::Delete(e) => e.reason(),
            RemovalError::Wait(e) => e.reason(),
            RemovalError::StillActive { .. } => "StopTimeout",
        }
    }
}

/// What became of one node that was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedNode {
    pub name: String,
    /// The resource that defined the node, if it still existed.
    pub resource: Option<String>,
    /// Whether the resource was seen stopped before deletion (`false` only when forced).
    pub stopped: bool,
}

/// What [`CibService::remove_nodes`] did.
#[derive(Debug, Clone, Default)]
pub struct RemovalReport {
    /// The nodes deleted and purged.
    pub removed: Vec<RemovedNode>,
    /// The nodes left in place because their resource did not stop in time
    /// ([`RemovalError::StillActive`]).
    pub stuck: Vec<RemovalError>,
    pub writes: ApplyReport,
}

/// The way a removal waits for resources to stop.
pub trait StopWaiter {
    /// Looks at the CIB until `still_active` finds nothing active in it or `timeout` has passed,
    /// and returns what it found last.
    fn wait_stopped<F>(
        &mut self,
        timeout: Duration,
        still_active: F,
    ) -> impl Future<Output = Result<Vec<String>, CibError>> + Send
    where
        F: Fn(&Element) -> Vec<String> + Send + Sync;
}

/// Waits by reading the whole CIB every `interval` (the command line, which has no snapshot).
#[derive(Debug)]
pub struct Polling<'a> {
    pub client: &'a CibClient,
    pub interval: Duration,
}

impl StopWaiter for Polling<'_> {
    async fn wait_stopped<F>(
        &mut self,
        timeout: Duration,
        still_active: F,
    ) -> Result<Vec<String>, CibError>
    where
        F: Fn(&Element) -> Vec<String> + Send + Sync,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let active = still_active(&self.client.query_cib().await?);
            if active.is_empty() || Instant::now() >= deadline {
                return Ok(active);
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

/// A node being removed: its defining resource and the ids whose history shows it active.
struct Watched {
    node: String,
    resource: String,
    ids: Vec<String>,
}

/// The nodes among `watched` whose resources `cib` still shows active.
fn still_active(cib: &Element, watched: &[Watched]) -> Vec<String> {
    watched
        .iter()
        .filter(|w| w.ids.iter().any(|id| resource_active(cib, id)))
        .map(|w| w.node.clone())
        .collect()
}

/// Pure: the changes deleting every trace of nodes `names` from `live` ([`removal_plan`] of
/// each), a constraint naming two of them deleted once.
fn deletion_plan(live: &Element, names: &[String]) -> Plan {
    let mut seen = BTreeSet::new();
    let mut p = Plan::default();
    for n in names {
        for mut nc in removal_plan(live, n).nodes {
            nc.changes.retain(|c| seen.insert(c.describe()));
            p.nodes.push(nc);
        }
    }
    p
}

/// [`deletion_plan`] for a removal with no graceful stop: the `<node_state>`s stay. They are how
/// the scheduler knows what still runs on the node; deleted with the resource, it would think
/// nothing does and could start those resources elsewhere while they run on there. Kept, it
/// stops them, then the orphaned connection.
fn one_write_plan(live: &Element, names: &[String]) -> Plan {
    let mut p = deletion_plan(live, names);
    for nc in &mut p.nodes {
        nc.changes
            .retain(|c| !matches!(c, Change::Delete { path } if path.starts_with(STATUS_PATH)));
    }
    p.nodes.retain(|nc| !nc.changes.is_empty());
    p
}

/// After the wait: the nodes to delete (stopped, or forced) and the errors of those left in
/// place because they are still active.
fn settle(
    names: &[String],
    watched: &[Watched],
    active: &[String],
    opts: &RemovalOptions,
) -> (Vec<RemovedNode>, Vec<RemovalError>) {
    let mut ready = Vec::new();
    let mut stuck = Vec::new();
    for n in names {
        let resource = watched
            .iter()
            .find(|w| &w.node == n)
            .map(|w| w.resource.clone());
        let stopped = !active.contains(n);
        if !stopped && !opts.force {
            stuck.push(RemovalError::StillActive {
                node: n.clone(),
                resource: resource.unwrap_or_default(),
                after: opts.stop_timeout,
            });
            continue;
        }
        if !stopped {
            debug!(node = %n, "resource still active; deleting anyway (forced)");
        }
        ready.push(RemovedNode {
            name: n.clone(),
            resource,
            stopped,
        });
    }
    (ready, stuck)
}

impl CibService<'_> {
    /// Stops, waits for, deletes and purges nodes `names`, sharing one transaction for all stops
    /// and one for all deletions. A node whose resource does not stop within the timeout is left
    /// in place (in [`RemovalReport::stuck`]) unless `opts.force`; the others go on.
    pub async fn remove_nodes<W: StopWaiter>(
        &self,
        names: &[String],
        waiter: &mut W,
        opts: &RemovalOptions,
    ) -> Result<RemovalReport, RemovalError> {
        let mut report = RemovalReport::default();
        info!(nodes = names.len(), "removing nodes from the CIB");
        // 1. Stop.
        let mut watched: Vec<Watched> = Vec::new();
        let stop = self
            .write_with_retry(
                |live| {
                    watched.clear();
                    let mut p = Plan::default();
                    for n in names {
                        if let Some((resource, ids)) = defining_resource(live, n) {
                            let changes = stop_resource(live, &resource);
                            if !changes.is_empty() {
                                p.nodes.push(NodeChanges {
                                    node: n.clone(),
                                    changes,
                                });
                            }
                            watched.push(Watched {
                                node: n.clone(),
                                resource,
                                ids,
                            });
                        }
                    }
                    Ok(p)
                },
                false,
            )
            .await
            .map_err(RemovalError::Stop)?;
        report.writes.absorb(&stop);
        // 2. Wait.
        let active = if watched.is_empty() {
            Vec::new()
        } else {
            waiter
                .wait_stopped(opts.stop_timeout, |cib| still_active(cib, &watched))
                .await
                .map_err(RemovalError::Wait)?
        };
        let (ready, stuck) = settle(names, &watched, &active, opts);
        report.stuck = stuck;
        if ready.is_empty() {
            return Ok(report);
        }
        // 3. Delete and purge.
        let ready_names: Vec<String> = ready.iter().map(|n| n.name.clone()).collect();
        let delete = self
            .write_with_retry(|live| Ok(deletion_plan(live, &ready_names)), false)
            .await
            .map_err(RemovalError::Delete)?;
        report.writes.absorb(&delete);
        info!(
            nodes = ready.len(),
            transactions = report.writes.transactions,
            "nodes removed from the CIB"
        );
        report.removed = ready;
        Ok(report)
    }

    /// Deletes nodes `names` in one transaction, with no stop and no wait first: the resource,
    /// the constraints naming it or the node and the `<node>` entry (step 3 of
    /// [`CibService::remove_nodes`] without the purge of the status, see [`one_write_plan`]).
    /// Pacemaker then stops what ran on the node and the connection it no longer has a resource
    /// for by itself; the node's `<node_state>` stays behind (`crm_node --force --remove`).
    ///
    /// For the controller when the stop of step 1 would cut the connection its CIB session rides
    /// on (the last kubemaker node carrying its CIB gateway): after it, nothing more could be
    /// written, so everything has to go in the first write.
    pub async fn remove_nodes_at_once(
        &self,
        names: &[String],
    ) -> Result<RemovalReport, RemovalError> {
        info!(
            nodes = names.len(),
            "removing nodes from the CIB in one transaction, without stopping them first"
        );
        let mut removed = Vec::new();
        let delete = self
            .write_with_retry(
                |live| {
                    removed = names
                        .iter()
                        .map(|n| RemovedNode {
                            name: n.clone(),
                            resource: defining_resource(live, n).map(|(id, _)| id),
                            stopped: false,
                        })
                        .collect();
                    Ok(one_write_plan(live, names))
                },
                false,
            )
            .await
            .map_err(RemovalError::Delete)?;
        let mut report = RemovalReport::default();
        report.writes.absorb(&delete);
        report.removed = removed;
        Ok(report)
    }

    /// Removes one node, waiting for its stop by polling the CIB; an error if it does not stop
    /// in time (unless forced).
    pub async fn remove_node(
        &self,
        name: &str,
        opts: &RemovalOptions,
    ) -> Result<RemovedNode, RemovalError> {
        let mut waiter = Polling {
            client: self.client(),
            interval: opts.poll_interval,
        };
        let mut report = self
            .remove_nodes(&[name.to_string()], &mut waiter, opts)
            .await?;
        if let Some(e) = report.stuck.pop() {
            return Err(e);
        }
        // One name in, so it was either left in place or removed.
        Ok(report.removed.pop().unwrap_or_else(|| RemovedNode {
            name: name.into(),
            resource: None,
            stopped: true,
        }))
    }
}

/// [`CibService::remove_node`] without the service.
pub async fn remove_node(
    client: &CibClient,
    name: &str,
    opts: &RemovalOptions,
) -> Result<RemovedNode, RemovalError> {
    CibService::new(client).remove_node(name, opts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two running remote nodes sharing a constraint: one write deletes both resources, the
    /// shared constraint once and both `<node>` entries, keeps both `<node_state>`s (what runs
    /// there must be stopped, not forgotten), and leaves the cluster node alone.
    #[test]
    fn one_write_deletes_everything_of_every_node_once() {
        let live = Element::parse(concat!(
            r#"<cib epoch="5" num_updates="3" admin_epoch="0"><configuration><crm_config/>"#,
            r#"<nodes><node id="1" uname="node1"/><node id="w1" uname="w1" type="remote"/><node id="w2" uname="w2" type="remote"/></nodes>"#,
            r#"<resources><primitive id="w1" class="ocf" provider="pacemaker" type="remote"/><primitive id="w2" class="ocf" provider="pacemaker" type="remote"/><primitive id="app" class="ocf" provider="heartbeat" type="Dummy"/></resources>"#,
            r#"<constraints><rsc_colocation id="c-w1-w2" rsc="w1" with-rsc="w2" score="INFINITY"/><rsc_location id="l-app-w1" rsc="app" node="w1" score="100"/></constraints></configuration>"#,
            r#"<status><node_state id="1" uname="node1"/><node_state id="w1" uname="w1" remote_node="true"/><node_state id="w2" uname="w2" remote_node="true"/></status></cib>"#,
        ))
        .unwrap();
        let names: Vec<String> = ["w1", "w2"].map(String::from).into();
        let described: Vec<String> = one_write_plan(&live, &names)
            .changes()
            .map(|c| c.describe())
            .collect();
        let mut sorted = described.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            described.len(),
            "each change once: {described:#?}"
        );
        for want in [
            "primitive[@id='w1']",
            "primitive[@id='w2']",
            "rsc_colocation[@id='c-w1-w2']",
            "rsc_location[@id='l-app-w1']",
            "node[@id='w1']",
            "node[@id='w2']",
        ] {
            assert!(
                described.iter().any(|d| d.ends_with(want)),
                "{want} missing from {described:#?}"
            );
        }
        assert!(
            !described
                .iter()
                .any(|d| d.contains("'node1'") || d.contains("'app'") || d.contains("node_state")),
            "{described:#?}"
        );
        assert_eq!(described.len(), 6, "{described:#?}");
    }

    #[test]
    fn nodes_still_active_stay_unless_forced() {
        let names: Vec<String> = ["gone", "slow", "bare"].map(String::from).into();
        let watched = ["gone", "slow"].map(|n| Watched {
            node: n.into(),
            resource: format!("rsc-{n}"),
            ids: vec![format!("rsc-{n}")],
        });
        let active = vec!["slow".to_string()];
        let opts = RemovalOptions::default();
        let (ready, stuck) = settle(&names, &watched, &active, &opts);
        let removed: Vec<(&str, Option<&str>, bool)> = ready
            .iter()
            .map(|r| (r.name.as_str(), r.resource.as_deref(), r.stopped))
            .collect();
        assert_eq!(
            removed,
            vec![("gone", Some("rsc-gone"), true), ("bare", None, true)]
        );
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].reason(), "StopTimeout");
        assert_eq!(
            stuck[0].to_string(),
            "rsc-slow (node slow) is still active 180s after target-role=Stopped; check `crm_mon` for a failed stop"
        );

        let forced = RemovalOptions {
            force: true,
            ..RemovalOptions::default()
        };
        let (ready, stuck) = settle(&names, &watched, &active, &forced);
        assert!(stuck.is_empty());
        assert_eq!(
            ready.iter().map(|r| r.stopped).collect::<Vec<_>>(),
            vec![true, false, true]
        );
    }
}
