//! Partitions of a remote host, kubemaker-remoted and the generation's reference side by side on
//! one real cluster: both hosts lose their link (the host side of their veth goes down) at the
//! same moment, for less and for more than the connection monitor's timeout (monitor every 5 s,
//! timeout 15 s), without and with `reconnect_interval`. For each scenario Pacemaker must record
//! the same outcome for both: the same failed actions, both nodes (and their pinned Dummies) back
//! or both not, and at no time a Dummy active on two nodes. A node that Pacemaker leaves down
//! (a failed connection without reconnect_interval) must rejoin after `crm_resource --cleanup`.
//!
//! Run: `sudo cargo test --test remoted_faults -- --ignored --nocapture`, with
//! `KUBEMAKER_PACEMAKER=3.0.3` (or 3.0.0) for another generation. Ignored in `.ci/run` until it has
//! proven stable: which failure a 40 s cut records depends on where the 5 s monitor falls.

mod support;

use std::time::{Duration, Instant};

use support::{Cluster, MonView, NetnsHost, ReferenceHost, RemoteHost, step};

const JOIN: Duration = Duration::from_secs(90);
const SETTLE: Duration = Duration::from_secs(120);

fn connection_xml(id: &str, addr: &str) -> String {
    format!(
        r#"<primitive class="ocf" id="{id}" provider="pacemaker" type="remote"><instance_attributes id="{id}-ia"><nvpair id="{id}-ia-server" name="server" value="{addr}"/></instance_attributes><operations><op id="{id}-monitor" interval="5s" name="monitor" timeout="15s"/></operations></primitive>"#
    )
}

/// One side: its node (connection resource), its host and its Dummies.
struct Side<'a> {
    node: &'static str,
    host: &'a NetnsHost,
    dummies: Vec<String>,
}

impl Side<'_> {
    fn up(&self, v: &MonView) -> bool {
        v.remote_node_up(self.node) && support::all_started_on(v, &self.dummies, self.node)
    }

    /// The link of the host's veth, as a cable pulled or plugged back.
    fn link(&self, up: bool) {
        support::run_ok(
            "ip",
            &[
                "link",
                "set",
                self.host.name(),
                if up { "up" } else { "down" },
            ],
        );
    }

    /// What Pacemaker shows of this side, its own names replaced so both sides compare: whether
    /// the node is online, where its Dummies are active, and its failed actions.
    fn outcome(&self, v: &MonView) -> String {
        let prefix = format!("{}-d", self.node);
        let mut failed: Vec<String> = v
            .failures()
            .into_iter()
            .filter(|(op, node)| op.starts_with(self.node) || node == self.node)
            .map(|(op, node)| {
                let op = op
                    .replacen(&prefix, "<dummy>", 1)
                    .replacen(self.node, "<node>", 1);
                format!("{op} on {}", node.replace(self.node, "<node>"))
            })
            .collect();
        failed.sort();
        failed.dedup();
        let dummies: Vec<String> = self
            .dummies
            .iter()
            .map(|id| {
                let nodes = v.resource(id).map(|r| r.nodes).unwrap_or_default();
                let nodes: Vec<String> = nodes
                    .iter()
                    .map(|n| n.replace(self.node, "<node>"))
                    .collect();
                format!("active on {nodes:?}")
            })
            .collect();
        format!(
            "online={} unclean={} dummies={dummies:?} failed={failed:?}",
            v.remote_node_up(self.node),
            v.node(self.node).is_some_and(|n| n.unclean)
        )
    }
}

/// No Dummy of either side is active on two nodes in `v`.
fn no_duplicates(v: &MonView, sides: &[&Side]) -> Result<(), String> {
    for side in sides {
        for id in &side.dummies {
            if let Some(r) = v.resource(id)
                && r.nodes.len() > 1
            {
                return Err(format!("{id} active on {:?}", r.nodes));
            }
        }
    }
    Ok(())
}

/// Polls `crm_mon` until both sides' outcomes have not changed for 15 s (at most 180 s), checking
/// at every look that no Dummy runs twice; returns the last view and both outcomes.
fn stable_outcome(
    cluster: &Cluster,
    km: &Side,
    rf: &Side,
    label: &str,
) -> (MonView, String, String) {
    let start = Instant::now();
    let mut last: Option<(String, String)> = None;
    let mut since = Instant::now();
    loop {
        let v = cluster.mon();
        assert_eq!(no_duplicates(&v, &[km, rf]), Ok(()), "{label}");
        let now = (km.outcome(&v), rf.outcome(&v));
        if last.as_ref() != Some(&now) {
            last = Some(now.clone());
            since = Instant::now();
        }
        if since.elapsed() >= Duration::from_secs(15) || start.elapsed() >= Duration::from_secs(180)
        {
            return (v, now.0, now.1);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "new: one CI run saw both nodes left UNCLEAN after the 40 s cut (where the 5 s monitor falls decides between a timed-out monitor and a failed start); not yet proven stable across runs. Run: sudo cargo test --test remoted_faults -- --ignored --nocapture"]
fn partitions_side_by_side_with_the_reference() {
    if !support::require_root() || !support::require_tools(&["ip", "ss", "crm_mon", "crm_resource"])
    {
        return;
    }
    let cluster = Cluster::acquire();
    let key = support::test_authkey();
    support::install_cluster_authkey(&key);
    let ours = RemoteHost::start_in_netns("flt-km", &key);
    let reference = ReferenceHost::start("flt-ref", &key);
    cluster.create_resource_xml(&connection_xml("rn-flt-km", &ours.addr()));
    cluster.create_resource_xml(&connection_xml("rn-flt-ref", &reference.addr()));
    let km = Side {
        node: "rn-flt-km",
        host: ours.netns(),
        dummies: support::create_pinned_dummies(&cluster, "rn-flt-km-d", 0..2, "rn-flt-km", "5s"),
    };
    let rf = Side {
        node: "rn-flt-ref",
        host: &reference.host,
        dummies: support::create_pinned_dummies(&cluster, "rn-flt-ref-d", 0..2, "rn-flt-ref", "5s"),
    };
    let both = [&km, &rf];
    let both_up = |v: &MonView| km.up(v) && rf.up(v) && no_duplicates(v, &both).is_ok();
    cluster.wait_until("both nodes online with their Dummies", JOIN, both_up);
    cluster.settle(SETTLE);

    for reconnect in [None, Some("10s")] {
        if let Some(interval) = reconnect {
            for node in [km.node, rf.node] {
                cluster.run_ok(
                    "crm_resource",
                    &[
                        "--resource",
                        node,
                        "--set-parameter",
                        "reconnect_interval",
                        "--parameter-value",
                        interval,
                    ],
                );
            }
            cluster.settle(SETTLE);
        }
        for (name, partition) in [
            ("shorter than the monitor timeout", Duration::from_secs(3)),
            ("longer than the monitor timeout", Duration::from_secs(40)),
        ] {
            let label = match reconnect {
                Some(r) => format!("{name}, reconnect_interval={r}"),
                None => format!("{name}, no reconnect_interval"),
            };
            step(&format!(
                "partition of both hosts for {partition:?}: {label}"
            ));
            let t0 = Instant::now();
            for s in both {
                s.link(false);
            }
            while t0.elapsed() < partition {
                let v = cluster.mon();
                assert_eq!(no_duplicates(&v, &both), Ok(()), "{label}");
                std::thread::sleep(Duration::from_millis(500));
            }
            for s in both {
                s.link(true);
            }
            // Let Pacemaker finish what the partition started, watching for duplicates. A cluster
            // without fencing may never settle (an unclean remote node stays so), so the outcome is
            // taken once it has not changed for 15 s.
            let (v, o, r) = stable_outcome(&cluster, &km, &rf, &label);
            step(&format!("   kubemaker: {o}\n   reference: {r}"));
            assert_eq!(
                o, r,
                "{label}: Pacemaker recorded different outcomes for kubemaker-remoted and the reference"
            );
            if partition < Duration::from_secs(15) {
                assert!(
                    km.up(&v) && rf.up(&v),
                    "{label}: a short partition took a node down"
                );
            }
            // Back to the start: failures cleaned up, both online with their Dummies.
            cluster.run_ok("crm_resource", &["--cleanup"]);
            cluster.wait_until(
                &format!("{label}: both back after the partition"),
                SETTLE,
                both_up,
            );
            cluster.settle(SETTLE);
        }
    }
    drop(ours);
    drop(reference);
    cluster.reset();
    step("done");
}
