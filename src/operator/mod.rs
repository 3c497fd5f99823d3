//! The Kubernetes side of kubemaker: the custom resources and `kubemaker controller`.
//!
//! - [`crd`]: `PacemakerCluster` and `RemoteNode` (`kubemaker.io/v1alpha1`), whose generated
//!   CustomResourceDefinitions `kubemaker crds` prints and `crds/` holds.
//! - [`controller`]: start-up, leader election ([`leader_election`]), the caches and both
//!   reconcilers, `/healthz` `/readyz` `/metrics` ([`http_endpoints`], [`metrics`]).
//! - [`remote_node_reconciler`]: RemoteNode read → validate → plan → apply → status, and the
//!   finalizer's cleanup that removes the node from the CIB.
//! - [`cluster_reconciler`]: PacemakerCluster: authkey Secret ([`authkey_secret`]), the CIB
//!   connection ([`cluster_connection`]: snapshot from notifications, batched writes), status,
//!   auto-join ([`auto_join`]).
//! - [`node_status`]: pure mapping from Pacemaker's view to the RemoteNode status.
//! - [`node_lifecycle`]: pure mapping from a bound Kubernetes Node to its Pacemaker node (cordon →
//!   standby, labels → attributes, kubelet readiness → `KubeletReady`).
//! - [`remoted_pods`]: which remoted pod serves a Node, recorded so Pacemaker reconnects at once
//!   when a replacement pod is Ready.
//! - [`context`]: what every reconcile shares; its `CibConnection` trait is the part of a cluster
//!   connection the reconcilers use, which the unit tests' `fixtures` (a mocked API server and
//!   an in-memory CIB) stand in for.

pub mod authkey_secret;
pub mod auto_join;
pub mod cluster_connection;
pub mod cluster_reconciler;
pub mod context;
pub mod controller;
pub mod crd;
#[cfg(test)]
mod fixtures;
pub mod http_endpoints;
pub mod leader_election;
pub mod metrics;
pub mod node_lifecycle;
pub mod node_status;
pub mod remote_node_reconciler;
pub mod remoted_pods;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Both CRDs, with descriptions reflowed (see [`reflow_descriptions`]).
pub fn crds() -> Result<Vec<CustomResourceDefinition>, serde_json::Error> {
    [crd::PacemakerCluster::crd(), crd::RemoteNode::crd()]
        .into_iter()
        .map(|c| {
            let mut v = serde_json::to_value(c)?;
            reflow_descriptions(&mut v);
            serde_json::from_value(v)
        })
        .collect()
}

/// Both CRDs as one YAML stream (`PacemakerCluster` first, then `RemoteNode`, separated by
/// `---`). This is exactly what `crds/kubemaker.io.yaml` and the chart's copy hold, so CI can
/// regenerate and diff them.
pub fn crds_yaml() -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let docs = crds()?
        .iter()
        .map(serde_yaml::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

/// Doc comments are wrapped at 100 columns in the source; `kubectl explain` wraps again at its own
/// width, which leaves ragged half-lines. Joining the source's line breaks within a paragraph (a
/// blank line still separates paragraphs) lets `kubectl explain` do the only wrapping.
pub fn reflow_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    serde_json::Value::String(s) if key == "description" => {
                        *s = s
                            .split("\n\n")
                            .map(|para| para.split_whitespace().collect::<Vec<_>>().join(" "))
                            .collect::<Vec<_>>()
                            .join("\n\n");
                    }
                    _ => reflow_descriptions(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(reflow_descriptions),
        _ => {}
    }
}
