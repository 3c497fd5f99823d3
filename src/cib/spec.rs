//! The node description users write in RemoteNode YAML files: plain serde types with no
//! Kubernetes dependency. The operator's CRD has its own `RemoteNodeSpec` (with schema
//! attributes) and converts it into this one.
//!
//! ```yaml
//! apiVersion: kubemaker.io/v1alpha1
//! kind: RemoteNode
//! metadata: {name: worker-1}
//! spec:
//!   type: remote
//!   address: 192.0.2.11
//!   attributes: {rack: r1}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "kubemaker.io/v1alpha1";
pub const KIND: &str = "RemoteNode";
/// Defaults of fields a spec may leave out.
pub const DEFAULT_REMOTE_PORT: u16 = 3121;
pub const DEFAULT_GUEST_AGENT: &str = "ocf:heartbeat:VirtualDomain";
pub const DEFAULT_HYPERVISOR: &str = "qemu:///system";

/// RemoteNode fields that matter to the operator only (see `RemoteNodeManifest::from_yaml`).
const OPERATOR_ONLY_FIELDS: [&str; 2] = ["clusterRef", "kubernetesNode"];

/// A whole manifest, as read by `kubemaker render -f FILE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteNodeManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: RemoteNodeSpec,
}

/// The part of Kubernetes' object metadata the CIB layer needs; other fields are ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    /// A host running pacemaker-remoted, reached by an `ocf:pacemaker:remote` connection resource.
    #[default]
    Remote,
    /// A VM or container managed by the cluster as a resource that carries `remote-node` meta.
    Guest,
}

/// What a user asks for. Missing values get the defaults of `pcs cluster node add-remote` /
/// `add-guest` when planned.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteNodeSpec {
    /// The Pacemaker node name; defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, rename = "type")]
    pub node_type: NodeType,
    /// Host name or IP address pacemaker-remoted listens on; defaults to the node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// TCP port of pacemaker-remoted (Pacemaker's default is 3121). A wide type so that an
    /// out-of-range value gets the validator's message rather than a parse error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Remote nodes only: wait this long before reconnecting after a failure (e.g. `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<String>,
    /// Permanent node attributes (`crm_attribute -N <node> -l forever`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub standby: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub maintenance: bool,
    /// Required when `type: guest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestSpec>,
    /// Remote nodes only: a new recovery mark for the connection (see
    /// [`crate::cib::model::Primitive::recovery`]). Set by the controller's connection recovery,
    /// never read from a manifest; `None` leaves the mark in the CIB as it is.
    #[serde(skip)]
    pub recovery_mark: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MonitorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestSpec {
    /// Id of the resource that runs the guest; defaults to `vm-<nodeName>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// `class:provider:type` (or `class:type`); defaults to `ocf:heartbeat:VirtualDomain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Instance attributes of the guest resource (for VirtualDomain: `config`, `hypervisor`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// `remote-connect-timeout`: how long the connection may take to come up after the guest
    /// resource started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// `remote-allow-migrate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_migrate: Option<bool>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot parse the manifest: {0}")]
    Parse(String),
    #[error("apiVersion is {found:?}; this version of kubemaker reads {API_VERSION:?}")]
    ApiVersion { found: String },
    #[error("kind is {found:?}; expected {KIND:?}")]
    Kind { found: String },
    #[error("metadata.name is empty; every RemoteNode needs a name")]
    NoName,
}

impl RemoteNodeManifest {
    /// Parses one YAML (or JSON) document and checks apiVersion and kind.
    pub fn from_yaml(text: &str) -> Result<RemoteNodeManifest, ManifestError> {
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        Self::from_value(value)
    }

    fn from_value(mut value: serde_yaml::Value) -> Result<RemoteNodeManifest, ManifestError> {
        // Fields only the operator uses: which PacemakerCluster, and the Kubernetes Node the
        // address comes from. They do not change the CIB a manifest becomes, so a file applied
        // with kubectl renders here too.
        if let Some(spec) = value.get_mut("spec").and_then(|s| s.as_mapping_mut()) {
            for key in OPERATOR_ONLY_FIELDS {
                spec.remove(key);
            }
        }
        let m: RemoteNodeManifest =
            serde_yaml::from_value(value).map_err(|e| ManifestError::Parse(e.to_string()))?;
        m.check_header()?;
        Ok(m)
    }

    /// Parses every document of a multi-document YAML stream (`---` separated).
    pub fn all_from_yaml(text: &str) -> Result<Vec<RemoteNodeManifest>, ManifestError> {
        let mut out = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = serde_yaml::Value::deserialize(doc)
                .map_err(|e| ManifestError::Parse(e.to_string()))?;
            if value.is_null() {
                continue; // an empty document, e.g. a trailing `---`
            }
            out.push(Self::from_value(value)?);
        }
        Ok(out)
    }

    fn check_header(&self) -> Result<(), ManifestError> {
        if self.api_version != API_VERSION {
            return Err(ManifestError::ApiVersion {
                found: self.api_version.clone(),
            });
        }
        if self.kind != KIND {
            return Err(ManifestError::Kind {
                found: self.kind.clone(),
            });
        }
        if self.metadata.name.is_empty() {
            return Err(ManifestError::NoName);
        }
        Ok(())
    }

    /// The Pacemaker node name this manifest describes.
    pub fn node_name(&self) -> &str {
        self.spec
            .node_name
            .as_deref()
            .unwrap_or(&self.metadata.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_guest_manifest() {
        let text = r#"
apiVersion: kubemaker.io/v1alpha1
kind: RemoteNode
metadata:
  name: guest1
  namespace: default
  labels: {a: b}
spec:
  type: guest
  address: 192.0.2.21
  port: 3121
  monitor: {interval: 20s, timeout: 40s}
  attributes: {rack: r1}
  standby: true
  guest:
    resourceId: vm-guest1
    parameters: {config: /etc/pacemaker/guest1.xml}
    connectTimeout: 90s
    allowMigrate: false
"#;
        let m = RemoteNodeManifest::from_yaml(text).unwrap();
        assert_eq!(m.node_name(), "guest1");
        assert_eq!(m.spec.node_type, NodeType::Guest);
        let g = m.spec.guest.as_ref().unwrap();
        assert_eq!(g.allow_migrate, Some(false));
        assert_eq!(
            m.spec.monitor.as_ref().unwrap().timeout.as_deref(),
            Some("40s")
        );
        assert!(m.spec.standby);
    }

    #[test]
    fn rejects_unknown_spec_fields_and_wrong_headers() {
        let base = "apiVersion: kubemaker.io/v1alpha1\nkind: RemoteNode\nmetadata: {name: a}\n";
        let e = RemoteNodeManifest::from_yaml(&format!("{base}spec: {{adress: x}}\n")).unwrap_err();
        assert!(e.to_string().contains("adress"), "{e}");
        let e = RemoteNodeManifest::from_yaml(
            "apiVersion: v1\nkind: RemoteNode\nmetadata: {name: a}\nspec: {}\n",
        )
        .unwrap_err();
        assert!(matches!(e, ManifestError::ApiVersion { .. }));
        let all = RemoteNodeManifest::all_from_yaml(&format!(
            "{base}spec: {{}}\n---\n{}spec: {{}}\n---\n",
            base.replace("name: a", "name: b")
        ))
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].node_name(), "b");
    }
}
