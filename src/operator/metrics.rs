//! The controller's Prometheus metrics, kept in a `prometheus-client` registry and served in the
//! OpenMetrics text format by [`super::http_endpoints`].
//!
//! Reconciles are counted and timed per resource kind (`RemoteNode`, `PacemakerCluster`);
//! failed ones are also counted by the error's reason, the same word its Event carries.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `resource` label of reconciles of RemoteNodes.
pub const REMOTE_NODE: &str = "RemoteNode";
/// The `resource` label of reconciles of PacemakerClusters.
pub const PACEMAKER_CLUSTER: &str = "PacemakerCluster";

/// Upper bounds (seconds) of the reconcile duration buckets: a reconcile decided from the
/// snapshot takes milliseconds, one that writes waits for a batched transaction, a removal waits
/// for its resource to stop (up to minutes).
const DURATION_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    resource: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    resource: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

type DurationFamily = Family<ResourceLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    leader: Gauge,
    /// Not exported: `/readyz` answers from it.
    ready: AtomicBool,
    reconciles: Family<ResultLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    durations: DurationFamily,
    cib_transactions: Counter,
    cib_conflicts: Counter,
    cib_connected: Family<ClusterLabels, Gauge>,
    remote_nodes: Family<StateLabels, Gauge>,
    /// RemoteNode name → Pacemaker state last reported; `remote_nodes` counts its values.
    node_states: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("leader", &self.leader.get())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        fn histogram() -> Histogram {
            Histogram::new(DURATION_BUCKETS)
        }
        let m = Metrics {
            registry: Registry::default(),
            leader: Gauge::default(),
            ready: AtomicBool::new(false),
            reconciles: Family::default(),
            failures: Family::default(),
            durations: Family::new_with_constructor(histogram as fn() -> Histogram),
            cib_transactions: Counter::default(),
            cib_conflicts: Counter::default(),
            cib_connected: Family::default(),
            remote_nodes: Family::default(),
            node_states: Mutex::default(),
        };
        // The registry holds handles sharing each metric's value.
        let mut registry = Registry::default();
        registry.register(
            "kubemaker_leader",
            "1 while this replica holds the leader Lease and reconciles",
            m.leader.clone(),
        );
        registry.register(
            "kubemaker_reconcile",
            "Reconciles by resource kind and result (ok, error)",
            m.reconciles.clone(),
        );
        registry.register(
            "kubemaker_reconcile_failures",
            "Failed reconciles by resource kind and reason (the reason of the Event)",
            m.failures.clone(),
        );
        registry.register(
            "kubemaker_reconcile_duration_seconds",
            "Time spent in reconciles by resource kind",
            m.durations.clone(),
        );
        registry.register(
            "kubemaker_cib_transactions",
            "Committed CIB transactions (cib_apply_diff)",
            m.cib_transactions.clone(),
        );
        registry.register(
            "kubemaker_cib_conflicts",
            "CIB writes retried because the CIB changed since it was read",
            m.cib_conflicts.clone(),
        );
        registry.register(
            "kubemaker_cib_connected",
            "1 while the controller is connected to the cluster's CIB",
            m.cib_connected.clone(),
        );
        registry.register(
            "kubemaker_remote_nodes",
            "RemoteNodes by Pacemaker state",
            m.remote_nodes.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn set_leader(&self, v: bool) {
        self.leader.set(i64::from(v));
    }

    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    pub fn set_ready(&self, v: bool) {
        self.ready.store(v, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// One reconcile of a `resource` (see [`REMOTE_NODE`], [`PACEMAKER_CLUSTER`]) that took
    /// `took`; `failure` is the reason of its error, `None` when it succeeded.
    pub fn reconciled(
        &self,
        resource: &'static str,
        took: Duration,
        failure: Option<&'static str>,
    ) {
        let result = if failure.is_some() { "error" } else { "ok" };
        self.reconciles
            .get_or_create(&ResultLabels { resource, result })
            .inc();
        if let Some(reason) = failure {
            self.failures
                .get_or_create(&FailureLabels { resource, reason })
                .inc();
        }
        self.durations
            .get_or_create(&ResourceLabels { resource })
            .observe(took.as_secs_f64());
    }

    pub fn add_cib_writes(&self, transactions: usize, conflicts: usize) {
        self.cib_transactions.inc_by(transactions as u64);
        self.cib_conflicts.inc_by(conflicts as u64);
    }

    pub fn set_cib_connected(&self, cluster: &str, up: bool) {
        self.cib_connected
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_string(),
            })
            .set(i64::from(up));
    }

    pub fn forget_cluster(&self, cluster: &str) {
        self.cib_connected.remove(&ClusterLabels {
            cluster: cluster.to_string(),
        });
    }

    /// Records RemoteNode `node`'s Pacemaker state (`None`: it is gone or has none).
    pub fn set_node_state(&self, node: &str, state: Option<&str>) {
        let Ok(mut states) = self.node_states.lock() else {
            return;
        };
        let previous = match state {
            Some(s) => states.insert(node.to_string(), s.to_string()),
            None => states.remove(node),
        };
        if previous.as_deref() == state {
            return;
        }
        if let Some(old) = previous {
            let labels = StateLabels { state: old };
            // A state nobody is in any more disappears, as it did before it was first seen.
            if self.remote_nodes.get_or_create(&labels).dec() <= 1 {
                self.remote_nodes.remove(&labels);
            }
        }
        if let Some(new) = state {
            self.remote_nodes
                .get_or_create(&StateLabels {
                    state: new.to_string(),
                })
                .inc();
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = Metrics::default();
        m.set_leader(true);
        m.reconciled(REMOTE_NODE, Duration::from_millis(1500), None);
        m.reconciled(
            REMOTE_NODE,
            Duration::from_millis(500),
            Some("CibUnavailable"),
        );
        m.reconciled(PACEMAKER_CLUSTER, Duration::from_millis(20), None);
        m.add_cib_writes(2, 1);
        m.set_cib_connected("prod", true);
        m.set_cib_connected("gone", false);
        m.forget_cluster("gone");
        m.set_node_state("a", Some("online"));
        m.set_node_state("b", Some("online"));
        m.set_node_state("c", Some("offline"));
        m.set_node_state("d", Some("pending"));
        m.set_node_state("d", None);
        let text = m.render();
        for line in [
            "kubemaker_leader 1",
            "kubemaker_reconcile_total{resource=\"RemoteNode\",result=\"ok\"} 1",
            "kubemaker_reconcile_total{resource=\"RemoteNode\",result=\"error\"} 1",
            "kubemaker_reconcile_total{resource=\"PacemakerCluster\",result=\"ok\"} 1",
            "kubemaker_reconcile_failures_total{resource=\"RemoteNode\",reason=\"CibUnavailable\"} 1",
            "kubemaker_reconcile_duration_seconds_sum{resource=\"RemoteNode\"} 2.0",
            "kubemaker_reconcile_duration_seconds_count{resource=\"RemoteNode\"} 2",
            "kubemaker_reconcile_duration_seconds_bucket{le=\"0.5\",resource=\"RemoteNode\"} 1",
            "kubemaker_reconcile_duration_seconds_bucket{le=\"2.5\",resource=\"RemoteNode\"} 2",
            "kubemaker_cib_transactions_total 2",
            "kubemaker_cib_conflicts_total 1",
            "kubemaker_cib_connected{cluster=\"prod\"} 1",
            "kubemaker_remote_nodes{state=\"online\"} 2",
            "kubemaker_remote_nodes{state=\"offline\"} 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("gone"), "a forgotten cluster: {text}");
        assert!(!text.contains("pending"), "a state nobody is in: {text}");
    }
}
