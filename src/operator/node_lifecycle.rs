//! Pure: what the Kubernetes Node a RemoteNode is bound to (`spec.kubernetesNode`) means for its
//! Pacemaker node, under the cluster's `nodeLifecycle` policy:
//!
//! - a cordoned Node (`spec.unschedulable`, set by `kubectl cordon` and `kubectl drain`) asks for
//!   standby ([`cordon_standby`]);
//! - chosen labels become permanent node attributes ([`label_attributes`], names by
//!   [`attribute_name`]);
//! - the Node's `Ready` condition becomes the RemoteNode's `KubeletReady` ([`kubelet_ready`]);
//! - confirmed fencing of the remote node taints the Node out of service, until the node is back
//!   in both views ([`out_of_service`]);
//! - a connection failure that keeps the node offline is cleared once Kubernetes sees the node's
//!   daemon healthy again ([`connection_recovery`]).
//!
//! The reconciler adds the results to what the RemoteNode's spec asks for; the CIB planner then
//! writes them into kubemaker's own attribute set of the node, so that removing a label or
//! uncordoning removes exactly what kubemaker wrote and nothing an administrator set.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use super::crd::{CordonPolicy, FencingPolicy, NodeLifecycle, RecoveryPolicy};
use crate::cib::status::{NodeKind, NodeStatus as PacemakerNode};

/// The taint of non-graceful node shutdown: Kubernetes deletes the Node's pods and detaches their
/// volumes at once, instead of waiting for a kubelet that will not answer.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";
/// Its value and effect, as the Kubernetes documentation gives them.
pub const OUT_OF_SERVICE_VALUE: &str = "nodeshutdown";
pub const OUT_OF_SERVICE_EFFECT: &str = "NoExecute";
/// Annotation on a Node whose out-of-service taint kubemaker added: the `node_fenced` time of the
/// fencing it answers. Only a taint so marked is ever removed by kubemaker.
pub const TAINTED_BY_ANNOTATION: &str = "kubemaker.io/out-of-service-after-fencing";

/// Attribute names Pacemaker gives a meaning of its own: a label never writes them.
const RESERVED: [&str; 2] = ["standby", "maintenance"];

/// Whether `node` being cordoned puts its Pacemaker node in standby.
pub fn cordon_standby(policy: Option<&NodeLifecycle>, node: &Node) -> bool {
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    cordoned && policy.map_or(CordonPolicy::Standby, |p| p.cordon) == CordonPolicy::Standby
}

/// The node attribute a label key becomes: every character other than an ASCII letter, digit,
/// `.`, `-` or `_` replaced by `_` (`topology.kubernetes.io/zone` → `topology.kubernetes.io_zone`),
/// a name that `crm_attribute`, `pcs` rule expressions and CIB ids all take as it is.
pub fn attribute_name(label_key: &str) -> String {
    label_key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `selector` (a label key, or a prefix ending in `/`) selects `key`.
fn selects(selector: &str, key: &str) -> bool {
    if selector.ends_with('/') {
        key.starts_with(selector)
    } else {
        key == selector
    }
}

/// The node attributes the policy's `labels` select from `node`'s labels, by attribute name.
/// Labels whose names collide after mapping keep the first key in order; reserved names
/// (`standby`, `maintenance`) are skipped.
pub fn label_attributes(policy: Option<&NodeLifecycle>, node: &Node) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(policy) = policy.filter(|p| !p.labels.is_empty()) else {
        return out;
    };
    let Some(labels) = node.metadata.labels.as_ref() else {
        return out;
    };
    for (key, value) in labels {
        if policy.labels.iter().any(|s| selects(s, key)) {
            let name = attribute_name(key);
            if !RESERVED.contains(&name.as_str()) {
                out.entry(name).or_insert_with(|| value.clone());
            }
        }
    }
    out
}

/// The kubelet's health as the Node's `Ready` condition reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletView {
    /// `True`, `False` or `Unknown` (the node controller's verdict when the kubelet stops posting).
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// The `KubeletReady` view of `node`; `None` for no Node (the caller says why).
pub fn kubelet_ready(node: Option<&Node>) -> KubeletView {
    let Some(node) = node else {
        return KubeletView {
            status: "False".into(),
            reason: "NodeNotFound".into(),
            message: "the Kubernetes Node does not exist".into(),
        };
    };
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) => KubeletView {
            status: match c.status.as_str() {
                "True" | "False" => c.status.clone(),
                _ => "Unknown".into(),
            },
            reason: c
                .reason
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "KubeletReady".into()),
            message: c.message.clone().unwrap_or_default(),
        },
        None => KubeletView {
            status: "Unknown".into(),
            reason: "NodeStatusUnknown".into(),
            message: "the Node reports no Ready condition yet".into(),
        },
    }
}

/// What to do about the out-of-service taint of a bound Node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaintAction {
    /// Pacemaker confirmed fencing (`fenced_at`): add the taint, marked as kubemaker's.
    Add {
        fenced_at: i64,
    },
    /// The node is back (online in Pacemaker, no fencing mark, kubelet Ready): remove the taint
    /// kubemaker added.
    Remove,
    Keep,
}

/// The out-of-service decision. Only confirmed fencing adds the taint (a pending or failed fence
/// leaves no `node_fenced` mark, and a taint on a running node can corrupt data); only a taint
/// kubemaker added is removed, and only once Pacemaker has the node online again and its kubelet
/// is Ready.
pub fn out_of_service(
    policy: Option<&NodeLifecycle>,
    node: &Node,
    fenced_at: Option<i64>,
    pacemaker_online: bool,
) -> TaintAction {
    if policy.map_or(FencingPolicy::Taint, |p| p.fencing) == FencingPolicy::Ignore {
        return TaintAction::Keep;
    }
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT));
    let ours = node
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(TAINTED_BY_ANNOTATION));
    match fenced_at {
        Some(t) if !tainted => TaintAction::Add { fenced_at: t },
        None if tainted
            && ours
            && pacemaker_online
            && kubelet_ready(Some(node)).status == "True" =>
        {
            TaintAction::Remove
        }
        _ => TaintAction::Keep,
    }
}

/// The least time between two recoveries of one connection: a node that Kubernetes still sees
/// healthy while the cluster cannot reach it (a partition shorter than the Node's grace period)
/// costs one failed start a minute, not a loop.
pub const RECOVERY_COOLDOWN_SECS: i64 = 60;

/// When the kubelet last reported the Node's Ready condition (epoch seconds).
fn kubelet_heartbeat(node: &Node) -> Option<i64> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?
        .last_heartbeat_time
        .as_ref()
        .map(|t| t.0.as_second())
}

/// What to do about a remote node's connection failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionRecovery {
    /// No failure holds the node offline (or it is not a connection kubemaker can recover).
    Nothing,
    /// A failure holds the node offline, but it may not be cleared yet: why.
    Wait(&'static str),
    /// Clear it now; what failed, for the Event.
    Clear { failure: String },
}

/// Whether the controller clears the failure of remote node `pacemaker`'s connection (never under
/// the policy `connectionRecovery: Manual`). After a partition longer than the connection
/// monitor's timeout, the cluster's reconnect attempt fails ("Key was rejected by service") and
/// Pacemaker keeps the node offline until a cleanup. It is cleared only when the node is offline because of a failed start or monitor of its own
/// connection, its Kubernetes Node is Ready with a kubelet report newer than the failure, a
/// remoted pod is Ready on it (both views say the daemon is reachable and serving again), not
/// while Pacemaker still has to fence the node, and at most once per [`RECOVERY_COOLDOWN_SECS`]
/// (`last_recovery`, `now`: epoch seconds; the CIB's and the kubelet's clocks agree, as NTP keeps
/// a cluster's).
pub fn connection_recovery(
    policy: Option<&NodeLifecycle>,
    pacemaker: &PacemakerNode,
    node: &Node,
    remoted_ready: bool,
    last_recovery: Option<i64>,
    now: i64,
) -> ConnectionRecovery {
    let manual = policy.is_some_and(|p| p.connection_recovery == RecoveryPolicy::Manual);
    if manual || pacemaker.kind != NodeKind::Remote || pacemaker.online || pacemaker.pending {
        return ConnectionRecovery::Nothing;
    }
    // The newest, so that the kubelet must have reported after every one of them.
    let Some(failure) = pacemaker
        .failed_actions
        .iter()
        .filter(|f| {
            f.resource == pacemaker.connection && matches!(f.task.as_str(), "start" | "monitor")
        })
        .max_by_key(|f| f.last_rc_change)
    else {
        return ConnectionRecovery::Nothing;
    };
    if pacemaker.unclean {
        return ConnectionRecovery::Wait("Pacemaker has to fence the node first");
    }
    if kubelet_ready(Some(node)).status != "True" {
        return ConnectionRecovery::Wait("its Kubernetes Node is not Ready");
    }
    if !remoted_ready {
        return ConnectionRecovery::Wait("no remoted pod is Ready on its Node");
    }
    // Proof that the node is reachable again: its kubelet reported after the failure (a Ready
    // condition older than the failure may be one Kubernetes has not yet noticed is stale).
    if failure
        .last_rc_change
        .is_some_and(|t| kubelet_heartbeat(node).is_none_or(|h| h < t))
    {
        return ConnectionRecovery::Wait("its kubelet has not reported since the failure");
    }
    if last_recovery.is_some_and(|t| now - t < RECOVERY_COOLDOWN_SECS) {
        return ConnectionRecovery::Wait("recovered less than a minute ago");
    }
    let why = if failure.exit_reason.is_empty() {
        format!("rc={} status={}", failure.rc, failure.status)
    } else {
        failure.exit_reason.clone()
    };
    ConnectionRecovery::Clear {
        failure: format!(
            "{} of {} on {} failed: {why}",
            failure.task, failure.resource, failure.node
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn node(unschedulable: Option<bool>, labels: &[(&str, &str)]) -> Node {
        let mut n = Node {
            spec: Some(NodeSpec {
                unschedulable,
                ..Default::default()
            }),
            ..Default::default()
        };
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    fn policy(cordon: CordonPolicy, labels: &[&str]) -> NodeLifecycle {
        NodeLifecycle {
            cordon,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn cordon_means_standby_unless_ignored() {
        let cases = [
            (None, Some(true), true),
            (None, Some(false), false),
            (None, None, false),
            (Some(CordonPolicy::Standby), Some(true), true),
            (Some(CordonPolicy::Ignore), Some(true), false),
        ];
        for (p, unschedulable, want) in cases {
            let pol = p.map(|c| policy(c, &[]));
            assert_eq!(
                cordon_standby(pol.as_ref(), &node(unschedulable, &[])),
                want,
                "{p:?} {unschedulable:?}"
            );
        }
    }

    #[test]
    fn label_keys_map_to_attribute_names() {
        let cases = [
            ("topology.kubernetes.io/zone", "topology.kubernetes.io_zone"),
            ("kubernetes.io/arch", "kubernetes.io_arch"),
            ("rack", "rack"),
            ("example.com/rack_2-b", "example.com_rack_2-b"),
        ];
        for (key, want) in cases {
            assert_eq!(attribute_name(key), want);
        }
    }

    #[test]
    fn chosen_labels_by_key_and_prefix() {
        let n = node(
            None,
            &[
                ("topology.kubernetes.io/zone", "a"),
                ("topology.kubernetes.io/region", "eu"),
                ("example.com/rack", "r1"),
                ("example.com/row", "3"),
                ("example.com.evil/x", "no"),
                ("kubernetes.io/hostname", "w1"),
                ("standby", "on"),
            ],
        );
        let p = policy(
            CordonPolicy::Standby,
            &["topology.kubernetes.io/zone", "example.com/", "standby"],
        );
        let got = label_attributes(Some(&p), &n);
        let want: BTreeMap<String, String> = [
            ("example.com_rack", "r1"),
            ("example.com_row", "3"),
            ("topology.kubernetes.io_zone", "a"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert!(
            label_attributes(None, &n).is_empty(),
            "no policy, no labels"
        );
    }

    #[test]
    fn out_of_service_only_after_confirmed_fencing_and_only_ours_removed() {
        use k8s_openapi::api::core::v1::Taint;
        let n = |tainted: bool, ours: bool, ready: &str| {
            let mut n = node(None, &[]);
            if tainted {
                n.spec.as_mut().unwrap().taints = Some(vec![Taint {
                    key: OUT_OF_SERVICE_TAINT.into(),
                    value: Some(OUT_OF_SERVICE_VALUE.into()),
                    effect: OUT_OF_SERVICE_EFFECT.into(),
                    ..Default::default()
                }]);
            }
            if ours {
                n.metadata.annotations =
                    Some([(TAINTED_BY_ANNOTATION.to_string(), "1".to_string())].into());
            }
            n.status = Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            n
        };
        use TaintAction::*;
        // (tainted, ours, kubelet, fenced_at, pacemaker online) → action
        let cases = [
            (
                false,
                false,
                "Unknown",
                Some(7),
                false,
                Add { fenced_at: 7 },
            ),
            (false, false, "True", None, false, Keep), // failed/pending fence: no mark
            (true, true, "Unknown", Some(7), false, Keep), // already tainted
            (true, true, "True", Some(7), true, Keep), // still marked fenced
            (true, true, "False", None, true, Keep),   // kubelet not Ready yet
            (true, true, "True", None, false, Keep),   // Pacemaker has it offline
            (true, true, "True", None, true, Remove),
            (true, false, "True", None, true, Keep), // someone else's taint
        ];
        for (tainted, ours, ready, fenced, online, want) in cases {
            assert_eq!(
                out_of_service(None, &n(tainted, ours, ready), fenced, online),
                want,
                "{tainted} {ours} {ready} {fenced:?} {online}"
            );
        }
        let ignore = NodeLifecycle {
            fencing: FencingPolicy::Ignore,
            ..Default::default()
        };
        assert_eq!(
            out_of_service(Some(&ignore), &n(false, false, "Unknown"), Some(7), false),
            Keep
        );
    }

    #[test]
    fn kubelet_view_follows_the_ready_condition() {
        let with = |status: &str, reason: Option<&str>| Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    reason: reason.map(str::to_string),
                    message: Some("m".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = kubelet_ready(Some(&with("True", Some("KubeletReady"))));
        assert_eq!(
            (v.status.as_str(), v.reason.as_str()),
            ("True", "KubeletReady")
        );
        let v = kubelet_ready(Some(&with("False", Some("KubeletNotReady"))));
        assert_eq!(
            (v.status.as_str(), v.reason.as_str()),
            ("False", "KubeletNotReady")
        );
        let v = kubelet_ready(Some(&with("Unknown", Some("NodeStatusUnknown"))));
        assert_eq!(v.status, "Unknown");
        assert_eq!(kubelet_ready(Some(&Node::default())).status, "Unknown");
        assert_eq!(kubelet_ready(None).reason, "NodeNotFound");
    }

    #[test]
    fn connection_failure_cleared_only_when_both_views_agree() {
        use crate::cib::status::{FailedAction, NodeState};
        let failed = |task: &str, resource: &str| FailedAction {
            resource: resource.into(),
            node: "node1".into(),
            task: task.into(),
            interval_ms: 0,
            rc: 1,
            status: 4,
            exit_reason: "Key was rejected by service".into(),
            last_rc_change: Some(900),
        };
        let pacemaker =
            |online: bool, unclean: bool, kind: NodeKind, failures: Vec<FailedAction>| {
                PacemakerNode {
                    name: "w1".into(),
                    kind,
                    state: if online {
                        NodeState::Online
                    } else {
                        NodeState::Offline
                    },
                    online,
                    standby: false,
                    maintenance: false,
                    unclean,
                    pending: false,
                    standby_configured: false,
                    maintenance_configured: false,
                    connection: "w1".into(),
                    guest_resource: None,
                    address: "192.0.2.1".into(),
                    host: None,
                    resources: Vec::new(),
                    failed_actions: failures,
                    fenced_at: None,
                }
            };
        let heard = |r: &str, at: i64| {
            let mut n = node(None, &[]);
            n.status = Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: r.into(),
                    last_heartbeat_time: Some(
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                            k8s_openapi::jiff::Timestamp::from_second(at).unwrap(),
                        ),
                    ),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            n
        };
        let ready = |r: &str| heard(r, 950);
        let start = || vec![failed("start", "w1")];
        let now = 1000;
        use ConnectionRecovery::*;
        let clear = Clear {
            failure: "start of w1 on node1 failed: Key was rejected by service".into(),
        };
        // (case, pacemaker, Node Ready, remoted pod Ready, last recovery) → decision
        let cases = [
            (
                "offline, start failed, both views healthy",
                pacemaker(false, false, NodeKind::Remote, start()),
                "True",
                true,
                None,
                clear.clone(),
            ),
            (
                "a monitor failure too",
                pacemaker(
                    false,
                    false,
                    NodeKind::Remote,
                    vec![failed("monitor", "w1")],
                ),
                "True",
                true,
                None,
                Clear {
                    failure: "monitor of w1 on node1 failed: Key was rejected by service".into(),
                },
            ),
            (
                "the last recovery a minute ago",
                pacemaker(false, false, NodeKind::Remote, start()),
                "True",
                true,
                Some(now - 60),
                clear.clone(),
            ),
            (
                "online: nothing holds it",
                pacemaker(true, false, NodeKind::Remote, start()),
                "True",
                true,
                None,
                Nothing,
            ),
            (
                "no failure",
                pacemaker(false, false, NodeKind::Remote, vec![]),
                "True",
                true,
                None,
                Nothing,
            ),
            (
                "a failure of another resource",
                pacemaker(false, false, NodeKind::Remote, vec![failed("start", "db")]),
                "True",
                true,
                None,
                Nothing,
            ),
            (
                "a stop failure (fencing's business)",
                pacemaker(false, false, NodeKind::Remote, vec![failed("stop", "w1")]),
                "True",
                true,
                None,
                Nothing,
            ),
            (
                "a guest node",
                pacemaker(false, false, NodeKind::Guest, start()),
                "True",
                true,
                None,
                Nothing,
            ),
            (
                "unclean",
                pacemaker(false, true, NodeKind::Remote, start()),
                "True",
                true,
                None,
                Wait("Pacemaker has to fence the node first"),
            ),
            (
                "Node not Ready",
                pacemaker(false, false, NodeKind::Remote, start()),
                "Unknown",
                true,
                None,
                Wait("its Kubernetes Node is not Ready"),
            ),
            (
                "no Ready remoted pod",
                pacemaker(false, false, NodeKind::Remote, start()),
                "True",
                false,
                None,
                Wait("no remoted pod is Ready on its Node"),
            ),
            (
                "recovered 30 s ago",
                pacemaker(false, false, NodeKind::Remote, start()),
                "True",
                true,
                Some(now - 30),
                Wait("recovered less than a minute ago"),
            ),
        ];
        assert_eq!(
            connection_recovery(
                None,
                &pacemaker(false, false, NodeKind::Remote, start()),
                &heard("True", 899),
                true,
                None,
                now
            ),
            Wait("its kubelet has not reported since the failure"),
            "a Ready condition older than the failure"
        );
        let later_start = FailedAction {
            last_rc_change: Some(960),
            ..failed("start", "w1")
        };
        assert_eq!(
            connection_recovery(
                None,
                &pacemaker(
                    false,
                    false,
                    NodeKind::Remote,
                    vec![failed("monitor", "w1"), later_start]
                ),
                &ready("True"),
                true,
                None,
                now
            ),
            Wait("its kubelet has not reported since the failure"),
            "the kubelet reported after the monitor failure but before the failed start"
        );
        let manual = NodeLifecycle {
            connection_recovery: RecoveryPolicy::Manual,
            ..Default::default()
        };
        assert_eq!(
            connection_recovery(
                Some(&manual),
                &pacemaker(false, false, NodeKind::Remote, start()),
                &ready("True"),
                true,
                None,
                now
            ),
            Nothing,
            "connectionRecovery: Manual"
        );
        for (case, p, node_ready, pod_ready, last, want) in cases {
            assert_eq!(
                connection_recovery(None, &p, &ready(node_ready), pod_ready, last, now),
                want,
                "{case}"
            );
        }
    }
}
