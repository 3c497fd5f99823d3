//! Pure: what the Kubernetes Node a RemoteNode is bound to (`spec.kubernetesNode`) means for its
//! Pacemaker node, under the cluster's `nodeLifecycle` policy:
//!
//! - a cordoned Node (`spec.unschedulable`, set by `kubectl cordon` and `kubectl drain`) asks for
//!   standby ([`cordon_standby`]);
//! - chosen labels become permanent node attributes ([`label_attributes`], names by
//!   [`attribute_name`]);
//! - the Node's `Ready` condition becomes the RemoteNode's `KubeletReady` ([`kubelet_ready`]).
//!
//! The reconciler adds the results to what the RemoteNode's spec asks for; the CIB planner then
//! writes them into kubemaker's own attribute set of the node, so that removing a label or
//! uncordoning removes exactly what kubemaker wrote and nothing an administrator set.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use super::crd::{CordonPolicy, NodeLifecycle};

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
}
