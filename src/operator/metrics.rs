//! The controller's Prometheus metrics, kept in plain atomics and printed in the text exposition
//! format; a handful of counters and gauges does not warrant a metrics library.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Metrics {
    leader: AtomicBool,
    ready: AtomicBool,
    reconcile_ok: AtomicU64,
    reconcile_error: AtomicU64,
    /// Microseconds, summed.
    reconcile_micros: AtomicU64,
    cib_transactions: AtomicU64,
    cib_conflicts: AtomicU64,
    cib_connected: Mutex<BTreeMap<String, bool>>,
    /// RemoteNode name → Pacemaker state last reported.
    node_states: Mutex<BTreeMap<String, String>>,
}

impl Metrics {
    pub fn set_leader(&self, v: bool) {
        self.leader.store(v, Ordering::Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, v: bool) {
        self.ready.store(v, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn reconciled(&self, ok: bool, took: Duration) {
        let c = if ok {
            &self.reconcile_ok
        } else {
            &self.reconcile_error
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.reconcile_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn add_cib_writes(&self, transactions: usize, conflicts: usize) {
        self.cib_transactions
            .fetch_add(transactions as u64, Ordering::Relaxed);
        self.cib_conflicts
            .fetch_add(conflicts as u64, Ordering::Relaxed);
    }

    pub fn set_cib_connected(&self, cluster: &str, up: bool) {
        if let Ok(mut m) = self.cib_connected.lock() {
            m.insert(cluster.to_string(), up);
        }
    }

    pub fn forget_cluster(&self, cluster: &str) {
        if let Ok(mut m) = self.cib_connected.lock() {
            m.remove(cluster);
        }
    }

    pub fn set_node_state(&self, node: &str, state: Option<&str>) {
        if let Ok(mut m) = self.node_states.lock() {
            match state {
                Some(s) => m.insert(node.to_string(), s.to_string()),
                None => m.remove(node),
            };
        }
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |b: &AtomicBool| u8::from(b.load(Ordering::Relaxed));
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP kubemaker_leader 1 while this replica holds the leader Lease and reconciles.\n# TYPE kubemaker_leader gauge\nkubemaker_leader {}",
            g(&self.leader)
        );
        let _ = writeln!(
            out,
            "# HELP kubemaker_reconcile_total RemoteNode reconciles by result.\n# TYPE kubemaker_reconcile_total counter\nkubemaker_reconcile_total{{result=\"ok\"}} {}\nkubemaker_reconcile_total{{result=\"error\"}} {}",
            n(&self.reconcile_ok),
            n(&self.reconcile_error)
        );
        let _ = writeln!(
            out,
            "# HELP kubemaker_reconcile_duration_seconds Time spent in RemoteNode reconciles.\n# TYPE kubemaker_reconcile_duration_seconds summary\nkubemaker_reconcile_duration_seconds_sum {:.6}\nkubemaker_reconcile_duration_seconds_count {}",
            n(&self.reconcile_micros) as f64 / 1e6,
            n(&self.reconcile_ok) + n(&self.reconcile_error)
        );
        let _ = writeln!(
            out,
            "# HELP kubemaker_cib_transactions_total Committed CIB transactions (cib_apply_diff).\n# TYPE kubemaker_cib_transactions_total counter\nkubemaker_cib_transactions_total {}",
            n(&self.cib_transactions)
        );
        let _ = writeln!(
            out,
            "# HELP kubemaker_cib_conflicts_total CIB writes retried because the CIB changed since it was read.\n# TYPE kubemaker_cib_conflicts_total counter\nkubemaker_cib_conflicts_total {}",
            n(&self.cib_conflicts)
        );
        let _ = writeln!(
            out,
            "# HELP kubemaker_cib_connected 1 while the controller is connected to the cluster's CIB.\n# TYPE kubemaker_cib_connected gauge"
        );
        if let Ok(m) = self.cib_connected.lock() {
            for (cluster, up) in m.iter() {
                let _ = writeln!(
                    out,
                    "kubemaker_cib_connected{{cluster=\"{}\"}} {}",
                    escape(cluster),
                    u8::from(*up)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP kubemaker_remote_nodes RemoteNodes by Pacemaker state.\n# TYPE kubemaker_remote_nodes gauge"
        );
        if let Ok(m) = self.node_states.lock() {
            let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
            for s in m.values() {
                *by_state.entry(s.as_str()).or_default() += 1;
            }
            for (state, count) in by_state {
                let _ = writeln!(
                    out,
                    "kubemaker_remote_nodes{{state=\"{}\"}} {count}",
                    escape(state)
                );
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_format() {
        let m = Metrics::default();
        m.set_leader(true);
        m.reconciled(true, Duration::from_millis(1500));
        m.reconciled(false, Duration::from_millis(500));
        m.add_cib_writes(2, 1);
        m.set_cib_connected("prod", true);
        m.set_node_state("a", Some("online"));
        m.set_node_state("b", Some("online"));
        m.set_node_state("c", Some("offline"));
        let text = m.render();
        for line in [
            "kubemaker_leader 1",
            "kubemaker_reconcile_total{result=\"ok\"} 1",
            "kubemaker_reconcile_total{result=\"error\"} 1",
            "kubemaker_reconcile_duration_seconds_sum 2.000000",
            "kubemaker_reconcile_duration_seconds_count 2",
            "kubemaker_cib_transactions_total 2",
            "kubemaker_cib_conflicts_total 1",
            "kubemaker_cib_connected{cluster=\"prod\"} 1",
            "kubemaker_remote_nodes{state=\"online\"} 2",
            "kubemaker_remote_nodes{state=\"offline\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
