//! The chart's remoted pods, as the RemoteNode reconciler sees them: which pod serves a Kubernetes
//! Node now, and the node attribute that tells Pacemaker a new one is there.
//!
//! Why: when a remoted pod ends (deleted, rolled out), its daemon leaves the cluster gracefully
//! and Pacemaker stops the node's connection resource. Pacemaker 2.1 starts it again only at its
//! next transition, up to `cluster-recheck-interval` (15 min by default) later. Recording the UID
//! of the Ready pod as a permanent node attribute is a configuration change, so Pacemaker runs a
//! transition as soon as the replacement is Ready, and the node rejoins at once. The value is
//! only ever moved to a pod that is Ready (listening with its key), never cleared while no pod
//! is, so a transition never finds the node without a daemon because of us.
//!
//! The same pods carry the CIB gateway a `via: remoteNodes` PacemakerCluster reaches the CIB
//! through ([`gateway_endpoints`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

use crate::cib::Endpoint;

/// Label selector of the chart's remoted pods (in the controller's namespace).
pub const REMOTED_POD_SELECTOR: &str = "app.kubernetes.io/component=remoted";

/// Permanent node attribute holding the UID of the remoted pod that serves the node.
pub const REMOTED_POD_ATTRIBUTE: &str = "kubemaker-remoted-pod";

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The UID of the Ready remoted pod on `node` (the newest if, briefly, there are two).
pub fn ready_pod_uid<'a>(pods: impl IntoIterator<Item = &'a Pod>, node: &str) -> Option<String> {
    pods.into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .filter(|p| is_ready(p))
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .and_then(|p| p.metadata.uid.clone())
}

/// The CIB gateways a `via: remoteNodes` cluster is reached through, in the order to try them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gateways {
    pub endpoints: Vec<Endpoint>,
    /// How many of the first `endpoints` are on a node that stays (its RemoteNode is not being
    /// deleted); the rest are on nodes being removed.
    pub staying: usize,
}

/// The CIB gateway endpoints of the Ready remoted `pods`, at `port`: first the pods on a
/// Kubernetes Node in `online` (its RemoteNode is Ready, so its daemon has a cluster connection to
/// carry requests over), then the others (a node joined by hand before the controller could
/// reach the CIB has no Ready RemoteNode yet, and its gateway may still answer), and last of all
/// those on a Node in `leaving` (its RemoteNode is being deleted: its removal stops the very
/// connection the gateway carries requests over, so the controller should be on another node by
/// then). Within each group, ordered by Node name so that the list is stable. The address is the
/// pod's IP (the DaemonSet uses the host network, so it is the Node's), else its host IP; one
/// endpoint per address.
pub fn gateway_endpoints<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    online: &BTreeSet<String>,
    leaving: &BTreeSet<String>,
    port: u16,
) -> Gateways {
    let mut candidates: Vec<((bool, bool), String, String)> = pods
        .into_iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| {
            let st = p.status.as_ref()?;
            let ip = st
                .pod_ip
                .clone()
                .or_else(|| st.host_ip.clone())
                .filter(|ip| !ip.is_empty())?;
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let rank = (leaving.contains(&node), !online.contains(&node));
            Some((rank, node, ip))
        })
        .collect();
    candidates.sort();
    let mut seen = BTreeSet::new();
    candidates.retain(|(_, _, ip)| seen.insert(ip.clone()));
    Gateways {
        staying: candidates.iter().filter(|((l, _), _, _)| !l).count(),
        endpoints: candidates
            .into_iter()
            .map(|(_, _, host)| Endpoint { host, port })
            .collect(),
    }
}

/// Kubernetes Nodes that carry a Ready remoted pod (a CIB gateway), of `pods`.
pub fn gateway_nodes<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> BTreeSet<String> {
    pods.into_iter()
        .filter(|p| is_ready(p))
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect()
}

/// How the nodes of a `via: remoteNodes` cluster being removed leave the CIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayRemoval {
    /// Stop first, wait, then delete ([`crate::cib::service::CibService::remove_nodes`]): a
    /// gateway on a node that stays online carries the controller's CIB session on.
    Graceful,
    /// Everything in one write, no stop first
    /// ([`crate::cib::service::CibService::remove_nodes_at_once`]): the nodes being removed
    /// carry every gateway that is online, so once their connections stop the controller can
    /// write nothing more.
    OneWrite,
}

/// Pure: how the nodes in `removing` (Kubernetes Node names of the RemoteNodes being deleted,
/// all of them: what applies to one applies to every node that leaves with it) are removed,
/// given `gateways`, the Kubernetes Nodes carrying a Ready remoted pod, each with whether its
/// node is online in Pacemaker (only an online node's remoted has a cluster connection to carry
/// CIB requests over).
///
/// [`GatewayRemoval::OneWrite`] when at least one online gateway is being removed and no online
/// gateway stays; [`GatewayRemoval::Graceful`] otherwise (another online gateway takes over; or
/// none of the nodes removed is an online gateway, so stopping them cuts nothing the controller
/// uses).
pub fn removal_mode(
    removing: &BTreeSet<String>,
    gateways: &BTreeMap<String, bool>,
) -> GatewayRemoval {
    let online = || gateways.iter().filter(|(_, up)| **up).map(|(n, _)| n);
    let removes_one = online().any(|n| removing.contains(n));
    let one_stays = online().any(|n| !removing.contains(n));
    if removes_one && !one_stays {
        GatewayRemoval::OneWrite
    } else {
        GatewayRemoval::Graceful
    }
}

/// The attribute's desired value: the Ready pod's UID, else whatever the CIB holds now.
pub fn attribute_value(ready_uid: Option<String>, in_cib: Option<&str>) -> Option<String> {
    ready_uid.or_else(|| in_cib.map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, node: &str, ready: bool, created: &str, deleting: bool) -> Pod {
        let mut v = json!({
            "metadata": {"name": uid, "uid": uid, "creationTimestamp": created},
            "spec": {"nodeName": node, "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-12-04T10:00:00Z");
        }
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn picks_the_ready_pod_on_the_node() {
        let t1 = "2026-12-04T09:00:00Z";
        let t2 = "2026-12-04T09:05:00Z";
        let cases: Vec<(&str, Vec<Pod>, Option<&str>)> = vec![
            ("no pods", vec![], None),
            (
                "other node only",
                vec![pod("a", "w2", true, t1, false)],
                None,
            ),
            ("not ready", vec![pod("a", "w1", false, t1, false)], None),
            ("terminating", vec![pod("a", "w1", true, t1, true)], None),
            ("ready", vec![pod("a", "w1", true, t1, false)], Some("a")),
            (
                "old terminating, new ready",
                vec![
                    pod("a", "w1", true, t1, true),
                    pod("b", "w1", true, t2, false),
                ],
                Some("b"),
            ),
            (
                "old ready, new starting",
                vec![
                    pod("a", "w1", true, t1, false),
                    pod("b", "w1", false, t2, false),
                ],
                Some("a"),
            ),
            (
                "two ready: the newest",
                vec![
                    pod("b", "w1", true, t2, false),
                    pod("a", "w1", true, t1, false),
                ],
                Some("b"),
            ),
        ];
        for (what, pods, want) in cases {
            assert_eq!(ready_pod_uid(&pods, "w1").as_deref(), want, "{what}");
        }
    }

    /// A Ready pod on `node` with the given IPs.
    fn gateway_pod(node: &str, ready: bool, pod_ip: Option<&str>, host_ip: Option<&str>) -> Pod {
        let mut p = pod(node, node, ready, "2026-12-04T09:00:00Z", false);
        let st = p.status.get_or_insert_with(Default::default);
        st.pod_ip = pod_ip.map(str::to_string);
        st.host_ip = host_ip.map(str::to_string);
        p
    }

    #[test]
    fn gateway_endpoints_put_online_nodes_first() {
        let online = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let ep = |h: &str| Endpoint {
            host: h.into(),
            port: 3122,
        };
        let w1 = gateway_pod("w1", true, Some("10.0.0.1"), Some("10.0.0.1"));
        let w2 = gateway_pod("w2", true, Some("10.0.0.2"), None);
        let w3 = gateway_pod("w3", true, None, Some("10.0.0.3"));
        type Case = (&'static str, Vec<Pod>, BTreeSet<String>, Vec<Endpoint>);
        let cases: Vec<Case> = vec![
            ("no pods", vec![], online(&["w1"]), vec![]),
            (
                "not ready, or no address yet",
                vec![
                    gateway_pod("w1", false, Some("10.0.0.1"), None),
                    gateway_pod("w2", true, None, None),
                ],
                online(&["w1", "w2"]),
                vec![],
            ),
            (
                "none online: all, by node name",
                vec![w3.clone(), w1.clone(), w2.clone()],
                online(&[]),
                vec![ep("10.0.0.1"), ep("10.0.0.2"), ep("10.0.0.3")],
            ),
            (
                "online first; host IP when there is no pod IP",
                vec![w1.clone(), w2.clone(), w3.clone()],
                online(&["w3", "w2"]),
                vec![ep("10.0.0.2"), ep("10.0.0.3"), ep("10.0.0.1")],
            ),
            (
                "an online node without a Ready pod is skipped",
                vec![w1.clone(), gateway_pod("w2", false, Some("10.0.0.2"), None)],
                online(&["w2"]),
                vec![ep("10.0.0.1")],
            ),
            (
                "one endpoint per address (an old and a new pod on one host)",
                vec![w1.clone(), w1.clone()],
                online(&["w1"]),
                vec![ep("10.0.0.1")],
            ),
        ];
        for (what, pods, online, want) in cases {
            let got = gateway_endpoints(&pods, &online, &BTreeSet::new(), 3122);
            assert_eq!(got.staying, want.len(), "{what}");
            assert_eq!(got.endpoints, want, "{what}");
        }
    }

    #[test]
    fn gateway_endpoints_put_nodes_being_removed_last() {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let ep = |h: &str| Endpoint {
            host: h.into(),
            port: 3122,
        };
        let pods = [
            gateway_pod("w1", true, Some("10.0.0.1"), None),
            gateway_pod("w2", true, Some("10.0.0.2"), None),
            gateway_pod("w3", true, Some("10.0.0.3"), None),
        ];
        // (what, online, leaving, endpoints in order, how many stay)
        type Case = (
            &'static str,
            BTreeSet<String>,
            BTreeSet<String>,
            Vec<&'static str>,
            usize,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing leaving",
                set(&["w1", "w2", "w3"]),
                set(&[]),
                vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                3,
            ),
            (
                "the first online node leaving goes last",
                set(&["w1", "w2", "w3"]),
                set(&["w1"]),
                vec!["10.0.0.2", "10.0.0.3", "10.0.0.1"],
                2,
            ),
            (
                "a leaving online node after a staying node that is not online",
                set(&["w1"]),
                set(&["w1"]),
                vec!["10.0.0.2", "10.0.0.3", "10.0.0.1"],
                2,
            ),
            (
                "among the leaving, online first",
                set(&["w2"]),
                set(&["w1", "w2"]),
                vec!["10.0.0.3", "10.0.0.2", "10.0.0.1"],
                1,
            ),
            (
                "all leaving: still all of them, online first",
                set(&["w3"]),
                set(&["w1", "w2", "w3"]),
                vec!["10.0.0.3", "10.0.0.1", "10.0.0.2"],
                0,
            ),
            (
                "a leaving node without a Ready pod changes nothing",
                set(&["w1", "w2", "w3"]),
                set(&["w9"]),
                vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                3,
            ),
        ];
        for (what, online, leaving, want, staying) in cases {
            let got = gateway_endpoints(&pods, &online, &leaving, 3122);
            let want: Vec<Endpoint> = want.into_iter().map(ep).collect();
            assert_eq!(got.endpoints, want, "{what}");
            assert_eq!(got.staying, staying, "{what}");
        }
    }

    #[test]
    fn gateway_nodes_are_those_with_a_ready_pod() {
        let pods = [
            gateway_pod("w1", true, Some("10.0.0.1"), None),
            gateway_pod("w2", false, Some("10.0.0.2"), None),
            pod("old", "w3", true, "2026-12-04T09:00:00Z", true),
        ];
        assert_eq!(gateway_nodes(&pods), BTreeSet::from(["w1".to_string()]));
    }

    #[test]
    fn removing_the_last_online_gateway_is_one_write() {
        use GatewayRemoval::{Graceful, OneWrite};
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let gw = |entries: &[(&str, bool)]| {
            entries
                .iter()
                .map(|(n, up)| (n.to_string(), *up))
                .collect::<BTreeMap<_, _>>()
        };
        // (what, removing, gateways (node, online), mode)
        type Case = (
            &'static str,
            BTreeSet<String>,
            BTreeMap<String, bool>,
            GatewayRemoval,
        );
        let cases: Vec<Case> = vec![
            (
                "the only node, online gateway",
                set(&["w1"]),
                gw(&[("w1", true)]),
                OneWrite,
            ),
            (
                "another online gateway stays",
                set(&["w1"]),
                gw(&[("w1", true), ("w2", true)]),
                Graceful,
            ),
            (
                "the other gateway is offline in Pacemaker: it cannot carry the session",
                set(&["w1"]),
                gw(&[("w1", true), ("w2", false)]),
                OneWrite,
            ),
            (
                "uninstall: every node at once",
                set(&["w1", "w2", "w3"]),
                gw(&[("w1", true), ("w2", true), ("w3", false)]),
                OneWrite,
            ),
            (
                "a node that is no gateway, with every online gateway, leaves with them",
                set(&["w1", "w4"]),
                gw(&[("w1", true)]),
                OneWrite,
            ),
            (
                "a node that is no gateway, the gateway stays",
                set(&["w4"]),
                gw(&[("w1", true)]),
                Graceful,
            ),
            (
                "an offline gateway removed, an online one stays",
                set(&["w2"]),
                gw(&[("w1", true), ("w2", false)]),
                Graceful,
            ),
            (
                "no gateway online at all: stopping cuts nothing known",
                set(&["w1"]),
                gw(&[("w1", false)]),
                Graceful,
            ),
            ("no gateways", set(&["w1"]), gw(&[]), Graceful),
            ("nothing removed", set(&[]), gw(&[("w1", true)]), Graceful),
        ];
        for (what, removing, gateways, want) in cases {
            assert_eq!(removal_mode(&removing, &gateways), want, "{what}");
        }
    }

    #[test]
    fn keeps_the_recorded_pod_while_none_is_ready() {
        assert_eq!(attribute_value(None, None), None);
        assert_eq!(attribute_value(None, Some("a")).as_deref(), Some("a"));
        assert_eq!(
            attribute_value(Some("b".into()), Some("a")).as_deref(),
            Some("b")
        );
        assert_eq!(
            attribute_value(Some("b".into()), None).as_deref(),
            Some("b")
        );
    }
}
