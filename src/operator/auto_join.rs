//! Auto-join, the pure part: which RemoteNodes a PacemakerCluster's node selector asks for, given
//! the Kubernetes Nodes and the RemoteNodes that exist. The cluster reconciler applies the result.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::crd::{ClusterRef, NODE_NAME_MAX, RemoteNode, RemoteNodeSpec};

/// Label on RemoteNodes made by auto-join; its value is the PacemakerCluster's name.
pub const AUTO_JOIN_LABEL: &str = "kubemaker.io/auto-join";

#[derive(Debug, Default)]
pub struct AutoJoinPlan {
    pub create: Vec<RemoteNode>,
    /// Names of auto-joined RemoteNodes whose Node left or no longer matches.
    pub delete: Vec<String>,
}

pub fn selector_matches(selector: &BTreeMap<String, String>, node: &Node) -> bool {
    let labels = node.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A Pacemaker node name for a Kubernetes Node: its name if that is a DNS label already, else
/// dots and other characters turned into `-`, lowercased, at most 63 characters.
pub fn pacemaker_name(node_name: &str) -> String {
    let mut s: String = node_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(NODE_NAME_MAX as usize);
    s.trim_matches('-').to_string()
}

pub fn plan(
    cluster: &str,
    selector: &BTreeMap<String, String>,
    nodes: &[&Node],
    remote_nodes: &[&RemoteNode],
) -> AutoJoinPlan {
    let wanted: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none() && selector_matches(selector, n))
        .map(|n| n.name_any())
        .collect();
    let existing: BTreeSet<String> = remote_nodes.iter().map(|r| r.name_any()).collect();
    let mine =
        |r: &&&RemoteNode| r.labels().get(AUTO_JOIN_LABEL).map(String::as_str) == Some(cluster);

    let create = wanted
        .iter()
        // A RemoteNode of that name made by hand (or for another cluster) is left alone.
        .filter(|name| !existing.contains(*name))
        .map(|name| new_remote_node(cluster, name))
        .collect();
    let delete = remote_nodes
        .iter()
        .filter(mine)
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .map(|r| r.name_any())
        .filter(|name| !wanted.contains(name))
        .collect();
    AutoJoinPlan { create, delete }
}

fn new_remote_node(cluster: &str, node_name: &str) -> RemoteNode {
    let pcmk = pacemaker_name(node_name);
    RemoteNode {
        metadata: ObjectMeta {
            name: Some(node_name.to_string()),
            labels: Some(BTreeMap::from([(
                AUTO_JOIN_LABEL.to_string(),
                cluster.to_string(),
            )])),
            ..Default::default()
        },
        spec: RemoteNodeSpec {
            cluster_ref: Some(ClusterRef {
                name: cluster.to_string(),
            }),
            node_name: (pcmk != node_name).then_some(pcmk),
            kubernetes_node: Some(node_name.to_string()),
            ..Default::default()
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn creates_for_matching_nodes_and_deletes_for_leavers() {
        let sel = BTreeMap::from([("role".to_string(), "pcmk".to_string())]);
        let a = node("worker-a", &[("role", "pcmk")]);
        let b = node("worker-b.example.com", &[("role", "pcmk")]);
        let c = node("worker-c", &[("role", "other")]);
        let mut manual = new_remote_node("prod", "worker-b.example.com");
        manual.metadata.labels = None;
        let stale = new_remote_node("prod", "worker-c");
        let other_cluster = new_remote_node("test", "worker-x");
        let p = plan(
            "prod",
            &sel,
            &[&a, &b, &c],
            &[&manual, &stale, &other_cluster],
        );
        let created: Vec<_> = p.create.iter().map(|r| r.name_any()).collect();
        assert_eq!(created, vec!["worker-a"], "the hand-made one is left alone");
        assert_eq!(
            p.create[0].spec.kubernetes_node.as_deref(),
            Some("worker-a")
        );
        assert_eq!(p.create[0].spec.node_name, None);
        assert_eq!(
            p.delete,
            vec!["worker-c"],
            "only this cluster's auto-joined ones go"
        );
        assert_eq!(
            pacemaker_name("worker-b.example.com"),
            "worker-b-example-com"
        );
    }
}
