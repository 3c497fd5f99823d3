//! The Kubernetes side of kubemaker: custom resource types now, the controller later.
//!
//! - [`crd`]: `PacemakerCluster` and `RemoteNode` (`kubemaker.io/v1alpha1`), whose generated
//!   CustomResourceDefinitions `kubemaker crds` prints and `crds/` holds.

pub mod crd;

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
