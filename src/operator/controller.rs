//! `kubemaker controller`: wires the caches, the two reconcilers, leader election, the HTTP
//! endpoints and signal handling together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{Mutex, broadcast, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::cluster_connection::Changed;
use super::context::{Context, Trigger};
use super::crd::{CibAccess, PacemakerCluster, RemoteNode};
use super::leader_election::{LeaderElector, LeaseConfig, LeaseLost};
use super::metrics::Metrics;
use super::remoted_pods;
use super::{cluster_reconciler, http_endpoints, remote_node_reconciler};

#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace of the Secrets and the Lease; `None`: the kubeconfig's default namespace.
    pub namespace: Option<String>,
    pub identity: String,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_duration: Duration,
    pub lease_renew: Duration,
    pub metrics_addr: SocketAddr,
}

/// Why the controller stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT: stopped cleanly.
    Signalled,
    /// Another replica leads now; a restart makes this one a standby again.
    LostLeadership,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no Kubernetes API access (KUBECONFIG or in-cluster config): {0}")]
    NoApiAccess(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub async fn run(opts: Options) -> Result<Exit, StartError> {
    let client = Client::try_default()
        .await
        .map_err(StartError::NoApiAccess)?;
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let metrics = Arc::new(Metrics::default());
    http_endpoints::serve(opts.metrics_addr, metrics.clone())
        .await
        .map_err(|source| StartError::Listen {
            addr: opts.metrics_addr,
            source,
        })?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let stop_flag = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let new_elector = || {
        LeaderElector::new(
            Api::<Lease>::namespaced(client.clone(), &namespace),
            LeaseConfig {
                name: opts.lease_name.clone(),
                identity: opts.identity.clone(),
                lease_duration: opts.lease_duration,
                renew_interval: opts.lease_renew,
            },
        )
    };
    let mut elector = opts.leader_election.then(&new_elector);
    // One term of leadership per round: a leader whose renewals fail (the API server is down or
    // restarting) stops reconciling and competes for the Lease again, as a standby would.
    loop {
        // A standby is healthy and ready: it only waits.
        metrics.set_ready(true);
        if let Some(e) = elector.as_mut()
            && !e.acquire(stopped()).await
        {
            info!("stopped while waiting for leadership");
            return Ok(Exit::Signalled);
        }
        metrics.set_leader(true);
        metrics.set_ready(false);

        let (lost_tx, lost_rx) = watch::channel(None::<LeaseLost>);
        let holder = elector.take().map(|mut e| {
            tokio::spawn(async move {
                let why = e.hold().await;
                let _ = lost_tx.send(Some(why));
                e
            })
        });
        let electing = holder.is_some();
        let lost = {
            let mut rx = lost_rx.clone();
            async move {
                if electing {
                    let _ = rx.wait_for(Option::is_some).await;
                } else {
                    // Without leader election nothing can be lost (and the sender is already gone).
                    std::future::pending::<()>().await;
                }
            }
        };
        let shutdown = futures::future::select(Box::pin(stopped()), Box::pin(lost)).map(|_| ());
        let shutdown = shutdown.shared();

        reconcile_until(
            client.clone(),
            namespace.clone(),
            opts.identity.clone(),
            metrics.clone(),
            shutdown,
        )
        .await;
        metrics.set_leader(false);

        let lost = *lost_rx.borrow();
        match after_term(lost, *stop_flag.borrow()) {
            AfterTerm::Exit => {
                error!("lost leadership; exiting so that only one replica reconciles");
                return Ok(Exit::LostLeadership);
            }
            AfterTerm::StandBy => {
                warn!(
                    "stopped reconciling: the lease could not be renewed in time; competing for it again"
                );
                // The holder task has ended and hands its elector back.
                elector = match holder {
                    Some(h) => Some(h.await.unwrap_or_else(|_| new_elector())),
                    None => Some(new_elector()),
                };
                continue;
            }
            AfterTerm::Stop => {}
        }
        if let Some(h) = holder {
            h.abort();
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(1), h).await
                && !e.is_cancelled()
            {
                warn!(error = %e, "lease holder task failed");
            }
            // The aborted task took the elector with it; release through a fresh one.
            new_elector().release().await;
        }
        info!("controller stopped");
        return Ok(Exit::Signalled);
    }
}

/// What the controller does once a term of leadership has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterTerm {
    /// Another replica leads now: exit (a restart makes this one a standby again).
    Exit,
    /// The lease could not be renewed (the API server was unreachable): nobody else is known to
    /// lead, so compete for the lease again instead of exiting.
    StandBy,
    /// Stopped by a signal: release the lease and exit cleanly.
    Stop,
}

/// The decision after a term: `lost` says why leadership ended (None: it did not),
/// `stop_requested` whether SIGTERM/SIGINT came.
fn after_term(lost: Option<LeaseLost>, stop_requested: bool) -> AfterTerm {
    match (lost, stop_requested) {
        (Some(LeaseLost::TakenOver), _) => AfterTerm::Exit,
        (Some(LeaseLost::RenewalFailed), false) => AfterTerm::StandBy,
        (Some(LeaseLost::RenewalFailed), true) | (None, _) => AfterTerm::Stop,
    }
}

/// Runs both controllers until `shutdown` resolves, then lets in-flight reconciles finish.
async fn reconcile_until(
    client: Client,
    namespace: String,
    identity: String,
    metrics: Arc<Metrics>,
    shutdown: futures::future::Shared<impl std::future::Future<Output = ()> + Send + 'static>,
) {
    let (triggers, _) = broadcast::channel::<Trigger>(4096);

    // Nodes: one cache for addresses and auto-join; changes become triggers.
    let (nodes, nodes_watch) = cache_with_triggers(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        "Nodes",
        triggers.clone(),
        |node| Some(Trigger::NodeChanged(node.name_any())),
    );
    // The chart's remoted pods in our namespace: which one serves a Node (see remoted_pods).
    let (remoted_pods, pods_watch) = cache_with_triggers(
        Api::<Pod>::namespaced(client.clone(), &namespace),
        watcher::Config::default().labels(remoted_pods::REMOTED_POD_SELECTOR),
        "remoted pods",
        triggers.clone(),
        |pod| {
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .map(Trigger::RemotedPodChanged)
        },
    );

    let rn_api: Api<RemoteNode> = Api::all(client.clone());
    let pc_api: Api<PacemakerCluster> = Api::all(client.clone());
    let rn_controller = Controller::new(rn_api, watcher::Config::default());
    // A cluster's status follows its CIB; once a second is enough however busy the CIB is.
    let pc_controller = Controller::new(pc_api, watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().debounce(Duration::from_secs(1)));
    let remote_nodes = rn_controller.store();
    let clusters = pc_controller.store();

    let ctx = Arc::new(Context {
        client: client.clone(),
        namespace,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "kubemaker-controller".into(),
                instance: Some(identity),
            },
        ),
        metrics: metrics.clone(),
        clusters: Mutex::new(Default::default()),
        triggers: triggers.clone(),
        nodes: nodes.clone(),
        remoted_pods: remoted_pods.clone(),
        remote_nodes: remote_nodes.clone(),
        pacemaker_clusters: clusters.clone(),
        removed_at_once: Default::default(),
        failures: Default::default(),
    });

    // RemoteNodes: reconciled when their cluster's CIB changes or their Node changes.
    let rn_triggers = {
        let remote_nodes = remote_nodes.clone();
        let ctx = ctx.clone();
        trigger_stream(triggers.subscribe(), move |t| {
            remote_nodes
                .state()
                .iter()
                .filter(|rn| match t {
                    Trigger::CibChanged(c, changed) => {
                        ctx.cluster_name_of(rn).as_deref() == Some(c.as_str())
                            && match changed {
                                Changed::All => true,
                                Changed::Nodes(names) => {
                                    names.contains(&rn.node_name().to_ascii_lowercase())
                                }
                            }
                    }
                    Trigger::NodeChanged(n) | Trigger::RemotedPodChanged(n) => {
                        rn.spec.kubernetes_node.as_deref() == Some(n.as_str())
                    }
                    Trigger::RemoteNodeLeaving(_) => false,
                })
                .map(|rn| ObjectRef::from_obj(rn.as_ref()))
                .collect()
        })
    };
    // Clusters: status on CIB changes, auto-join on Node changes, gateway lists on pod changes
    // and RemoteNode deletions.
    let pc_triggers = {
        let clusters = clusters.clone();
        trigger_stream(triggers.subscribe(), move |t| {
            clusters
                .state()
                .iter()
                .filter(|pc| match t {
                    Trigger::CibChanged(c, _) => pc.name_any() == *c,
                    Trigger::NodeChanged(_) => pc.spec.auto_join.is_some(),
                    // The gateways a `via: remoteNodes` cluster connects through.
                    Trigger::RemotedPodChanged(_) => pc.spec.via == CibAccess::RemoteNodes,
                    Trigger::RemoteNodeLeaving(c) => {
                        pc.name_any() == *c && pc.spec.via == CibAccess::RemoteNodes
                    }
                })
                .map(|pc| ObjectRef::from_obj(pc.as_ref()))
                .collect()
        })
    };

    let ready = {
        let (n, r, c) = (nodes.clone(), remote_nodes.clone(), clusters.clone());
        let p = remoted_pods.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let synced = store_ready(&n).await
                && store_ready(&p).await
                && store_ready(&r).await
                && store_ready(&c).await;
            if synced {
                info!("caches synced; reconciling");
                metrics.set_ready(true);
            }
        })
    };

    let rn_run = rn_controller
        .reconcile_on(rn_triggers)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            remote_node_reconciler::reconcile,
            remote_node_reconciler::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "RemoteNode controller");
            }
        });
    let pc_run = pc_controller
        .reconcile_on(pc_triggers)
        .graceful_shutdown_on(shutdown)
        .run(
            cluster_reconciler::reconcile,
            cluster_reconciler::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "PacemakerCluster controller");
            }
        });
    futures::future::join(rn_run, pc_run).await;
    ready.abort();
    // The next term of leadership watches anew.
    nodes_watch.abort();
    pods_watch.abort();
    // Close the CIB connections politely.
    ctx.clusters.lock().await.clear();
}

/// A cache of `api`'s objects, kept by a background watch (the returned task) that sends
/// `trigger(object)` for every change it sees.
fn cache_with_triggers<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    triggers: broadcast::Sender<Trigger>,
    trigger: impl Fn(&K) -> Option<Trigger> + Send + 'static,
) -> (reflector::Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    // Deletions too: a deleted Node must make its auto-joined RemoteNode go now, not at the
    // cluster's next periodic reconcile (the store has dropped the object when the event comes).
    let events = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(events);
        while let Some(ev) = s.next().await {
            match ev {
                Ok(obj) => {
                    if let Some(t) = trigger(&obj) {
                        let _ = triggers.send(t);
                    }
                }
                Err(e) => warn!(error = %e, "watching {what} failed; retrying"),
            }
        }
    });
    (store, task)
}

/// Whether `store` finished its initial list. kube-runtime's `Store::wait_until_ready` wakes only
/// the task that polled it last, and each Controller's own runner waits on the same store, so a
/// single await here can miss its wake-up forever: poll again every 200 ms.
async fn store_ready<K>(store: &reflector::Store<K>) -> bool
where
    K: 'static + Clone + kube::runtime::reflector::Lookup,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await
        {
            return r.is_ok();
        }
    }
}

/// Turns the trigger broadcast into a stream of objects to reconcile. A lagging receiver (a
/// burst larger than the channel) is not an error: the periodic resync catches up.
fn trigger_stream<K, F>(
    rx: broadcast::Receiver<Trigger>,
    map: F,
) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + 'static,
    F: Fn(&Trigger) -> Vec<ObjectRef<K>> + Send + 'static,
{
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(t) => return Some((t, rx)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "reconcile triggers lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(move |t| futures::stream::iter(map(&t)))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still dies on SIGTERM, just not cleanly.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping"),
        _ = int.recv() => info!("SIGINT: stopping"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_leader_makes_the_controller_exit() {
        assert_eq!(
            after_term(Some(LeaseLost::TakenOver), false),
            AfterTerm::Exit
        );
        assert_eq!(
            after_term(Some(LeaseLost::TakenOver), true),
            AfterTerm::Exit
        );
    }

    #[test]
    fn an_unreachable_api_server_makes_the_leader_a_standby() {
        assert_eq!(
            after_term(Some(LeaseLost::RenewalFailed), false),
            AfterTerm::StandBy
        );
    }

    #[test]
    fn a_signal_stops_the_controller() {
        assert_eq!(after_term(None, true), AfterTerm::Stop);
        assert_eq!(
            after_term(Some(LeaseLost::RenewalFailed), true),
            AfterTerm::Stop
        );
    }
}
