//! The operator's custom resources, `kubemaker.io/v1alpha1`:
//!
//! - [`PacemakerCluster`]: how to reach one corosync/Pacemaker cluster (remote CIB endpoints, TLS,
//!   credentials; or `via: remoteNodes`, the CIB gateway of connected kubemaker nodes), the
//!   authkey Secret its remote nodes share, and defaults for those nodes.
//! - [`RemoteNode`]: one Pacemaker remote or guest node. Its spec is a superset of
//!   [`crate::cib::spec::RemoteNodeSpec`] (the same camelCase fields, plus the cluster and
//!   Kubernetes Node references), so a file `kubemaker render -f` reads is also a valid object.
//!
//! Both kinds are cluster-scoped: a Pacemaker node name is unique in its Pacemaker cluster, and the
//! Kubernetes Node a RemoteNode binds to is cluster-scoped too. Secrets they name live in the
//! controller's namespace, so the controller never needs cluster-wide Secret access.
//!
//! Doc comments on fields are the descriptions `kubectl explain` shows: write them for users.
//! Validation that the API server can do lives in the schema (patterns, ranges, enums, CEL rules);
//! what needs the live CIB stays in [`crate::cib::validate`].

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cib::spec as cib;

/// API group of both kinds.
pub const GROUP: &str = "kubemaker.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Pacemaker node names: a DNS label (lowercase, digits, `-`), so that the same string also works
/// as a Kubernetes object name, a host name and a CIB id.
pub const NODE_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// Longest node name: a DNS label's limit.
pub const NODE_NAME_MAX: u32 = 63;
/// Pacemaker's interval syntax, the subset [`crate::cib::validate::is_duration`] accepts: a
/// whole number with an optional unit (`30s`, `500ms`, `2min`, `1h`; bare numbers are seconds),
/// or an ISO 8601 duration (`PT1M`, `P1DT2H`).
pub const DURATION_PATTERN: &str = "^([0-9]+ ?(ms|msec|us|usec|s|sec|m|min|h|hr)?|P([0-9]+[YMWD])+(T([0-9]+[HMS])+)?|PT([0-9]+[HMS])+)$";
/// Kubernetes object names for Secret and cluster references (DNS subdomain).
pub const OBJECT_NAME_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

// ---------------------------------------------------------------------------------------------
// PacemakerCluster
// ---------------------------------------------------------------------------------------------

/// A connection to one corosync/Pacemaker cluster: where its CIB is reached, with which
/// credentials, which authkey its remote nodes share, and defaults for those nodes.
// Clippy reads repeated `type_ = "string"` inside separate `printcolumn(...)` groups as one
// attribute given twice; they are distinct columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[kube(
    group = "kubemaker.io",
    version = "v1alpha1",
    kind = "PacemakerCluster",
    plural = "pacemakerclusters",
    shortname = "pcmk",
    shortname = "pcl",
    category = "kubemaker",
    status = "PacemakerClusterStatus",
    doc = "A corosync/Pacemaker cluster that kubemaker joins Kubernetes nodes to as Pacemaker remote or guest nodes.",
    printcolumn(
        name = "Connection",
        type_ = "string",
        json_path = ".status.connection",
        description = "State of the controller's remote CIB connection"
    ),
    printcolumn(
        name = "DC",
        type_ = "string",
        json_path = ".status.dc",
        description = "Current designated controller"
    ),
    printcolumn(
        name = "Quorum",
        type_ = "boolean",
        json_path = ".status.quorum",
        description = "Whether the cluster has quorum"
    ),
    printcolumn(
        name = "CIB",
        type_ = "string",
        json_path = ".status.cibVersion",
        description = "admin_epoch.epoch.num_updates of the CIB last read"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.tlsMode != 'x509' || has(self.x509SecretName)").message("tlsMode: x509 needs x509SecretName (a kubernetes.io/tls Secret with ca.crt)"))]
#[x_kube(validation = Rule::new("self.tlsMode == 'x509' || !has(self.x509SecretName)").message("x509SecretName is used only with tlsMode: x509"))]
#[x_kube(validation = Rule::new("self.via == 'remoteNodes' || (has(self.endpoints) && size(self.endpoints) > 0)").message("endpoints: list the remote CIB port of every cluster node, or set via: remoteNodes to reach the CIB through connected kubemaker nodes"))]
#[x_kube(validation = Rule::new("self.via == 'remoteNodes' || has(self.credentialsSecretRef)").message("credentialsSecretRef is required unless via: remoteNodes (the remote CIB port needs a login)"))]
#[x_kube(validation = Rule::new("self.via == 'remoteNodes' || !has(self.gatewayPort)").message("gatewayPort is used only with via: remoteNodes"))]
#[serde(rename_all = "camelCase")]
pub struct PacemakerClusterSpec {
    /// How the controller reaches the CIB. `endpoints` (the default): the remote CIB port of the
    /// cluster nodes listed in `endpoints`, logging in with `credentialsSecretRef`.
    /// `remoteNodes`: through the CIB gateway of any kubemaker remote node that is connected to
    /// the cluster (the chart's `remoted.cibGateway.enabled`), authenticated with the authkey of
    /// `authkeySecretName`; no remote CIB port, password or `tlsMode` is needed. The first node
    /// must be joined once by hand (`kubemaker render --bootstrap` prints the command).
    #[serde(default)]
    pub via: CibAccess,

    /// For `via: remoteNodes`: TCP port of the CIB gateway on the remoted pods (the chart's
    /// `remoted.cibGateway.port`). Default 3122.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub gateway_port: Option<i32>,

    /// Remote CIB endpoints (the `remote-tls-port` or `remote-clear-port` of cluster nodes). The
    /// controller tries them in order and fails over to the next when one stops answering, so list
    /// every cluster node. Required unless `via: remoteNodes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<CibEndpoint>,

    /// How the remote CIB connection is protected. `anonymous`: anonymous Diffie-Hellman TLS, what
    /// Pacemaker 2.1's `remote-tls-port` speaks (deprecated in 3.0.2: it encrypts but authenticates
    /// nobody). `psk`: a pre-shared key (Pacemaker 3.0.2+; the cluster lists `user:hexkey` in
    /// `/etc/pacemaker/cib-credentials`; the key is in the credentials Secret). `x509`:
    /// certificates (Pacemaker 3.0.0+ with `PCMK_ca_file`, `PCMK_cert_file`, `PCMK_key_file` set
    /// on the cluster nodes; ours in `x509SecretName`). `none`: no encryption, for
    /// `remote-clear-port`; the password crosses the network in clear, so use it only in tests.
    #[serde(default)]
    pub tls_mode: TlsMode,

    /// For `tlsMode: x509`: a Secret of type `kubernetes.io/tls`, in the controller's namespace,
    /// with the controller's client certificate (`tls.crt`, `tls.key`) and the CA that signed the
    /// cluster's certificates (`ca.crt`): what a cert-manager Certificate issues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(max = 253))]
    pub x509_secret_name: Option<String>,

    /// Secret in the controller's namespace holding the credentials of a user in the `haclient`
    /// group (usually `hacluster`), used to log in to the remote CIB port. Required unless
    /// `via: remoteNodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,

    /// Name of the Secret, in the controller's namespace, whose `authkey` key holds the Pacemaker
    /// authkey (the contents of `/etc/pacemaker/authkey` on the cluster nodes). The remoted
    /// DaemonSet mounts this Secret, so it must match the chart's `authkey.secretName`.
    #[serde(default = "default_authkey_secret")]
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(max = 253))]
    pub authkey_secret_name: String,

    /// Values used for every RemoteNode of this cluster that does not set its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_node_defaults: Option<RemoteNodeDefaults>,

    /// When set, the controller creates a RemoteNode for every Kubernetes Node matching these
    /// labels (and deletes the RemoteNodes it created when a Node stops matching). Leave unset to
    /// manage RemoteNodes by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_join: Option<AutoJoin>,

    /// How the Kubernetes Node of a RemoteNode (`spec.kubernetesNode`) shapes its Pacemaker node:
    /// cordon → standby, chosen labels → node attributes. Left out: cordon means standby, no
    /// labels are copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_lifecycle: Option<NodeLifecycle>,
}

/// What a Kubernetes Node's state does to its Pacemaker remote node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeLifecycle {
    /// `Standby` (the default): a cordoned Node (`kubectl cordon`, `kubectl drain`) puts its
    /// Pacemaker node in standby, so Pacemaker moves its resources away; `kubectl uncordon` takes
    /// it out again. A standby an administrator set in Pacemaker is never undone. `Ignore`:
    /// cordoning does nothing in Pacemaker.
    #[serde(default)]
    pub cordon: CordonPolicy,

    /// Node labels copied to permanent Pacemaker node attributes of the remote node, for location
    /// rules. Each entry is a label key (`topology.kubernetes.io/zone`), or a prefix ending in `/`
    /// (`example.com/`) for every label under it. The attribute's name is the label key with each
    /// character other than letters, digits, `.`, `-` and `_` replaced by `_`
    /// (`topology.kubernetes.io_zone`); an attribute the RemoteNode's `attributes` sets, or one
    /// an administrator set in Pacemaker, wins over a label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub labels: Vec<String>,

    /// `Taint` (the default): once Pacemaker has fenced the remote node (confirmed: the
    /// cluster's `node_fenced` mark, never a pending or failed fence), the Node gets the taint
    /// `node.kubernetes.io/out-of-service=nodeshutdown:NoExecute`, so Kubernetes deletes its pods
    /// and detaches their volumes; kubemaker removes that taint when the node is online in
    /// Pacemaker and its kubelet Ready again. `Ignore`: fencing does nothing to the Node (for
    /// clusters where another remediator owns the taint).
    #[serde(default)]
    pub fencing: FencingPolicy,

    /// `Auto` (the default): when a failure of the node's connection keeps it offline (after a
    /// partition or power loss longer than the connection monitor's timeout, Pacemaker's
    /// reconnect attempt fails and is kept until a cleanup), the controller clears that failure
    /// once the Node is Ready with a kubelet report newer than the failure and a remoted pod is
    /// Ready on it, at most once a minute. `Manual`: it never does (`crm_resource --cleanup
    /// --resource NODE` is the administrator's).
    #[serde(default)]
    pub connection_recovery: RecoveryPolicy,
}

/// See [`NodeLifecycle::connection_recovery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum RecoveryPolicy {
    #[default]
    Auto,
    Manual,
}

/// See [`NodeLifecycle::fencing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum FencingPolicy {
    #[default]
    Taint,
    Ignore,
}

/// See [`NodeLifecycle::cordon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum CordonPolicy {
    #[default]
    Standby,
    Ignore,
}

fn default_authkey_secret() -> String {
    "kubemaker-authkey".into()
}

/// How the controller reaches a cluster's CIB (see [`PacemakerClusterSpec::via`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CibAccess {
    /// The remote CIB port of the cluster nodes in `endpoints`.
    #[default]
    Endpoints,
    /// The CIB gateway of connected kubemaker remote nodes.
    RemoteNodes,
}

impl PacemakerClusterSpec {
    /// The CIB gateway's port for `via: remoteNodes`.
    pub fn gateway_port(&self) -> i32 {
        self.gateway_port
            .unwrap_or(i32::from(crate::wire::cib_gateway::DEFAULT_PORT))
    }
}

/// One remote CIB endpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CibEndpoint {
    /// Host name or IP address of a cluster node.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port of the remote CIB listener (the CIB's `remote-tls-port` or `remote-clear-port`
    /// property); Pacemaker has no default for it.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// Encryption and authentication of the remote CIB connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Anonymous,
    Psk,
    X509,
    None,
}

/// A reference to the Secret holding remote CIB credentials.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret, in the controller's namespace.
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(max = 253))]
    pub name: String,
    /// Key holding the user name (default `username`); when the Secret has no such key, the
    /// user is `hacluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// Key holding the password (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
    /// For `tlsMode: psk`: key holding the pre-shared key in hex, as the cluster's
    /// `/etc/pacemaker/cib-credentials` lists it for the user (default `psk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk_key: Option<String>,
}

/// Defaults applied to the cluster's RemoteNodes; a RemoteNode's own value wins.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteNodeDefaults {
    /// TCP port `kubemaker remoted` listens on (Pacemaker's default is 3121). Must match the
    /// chart's `remoted.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// How long the cluster waits before reconnecting to a remote node after a failed connection
    /// (`reconnect_interval` of the connection resource), e.g. `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub reconnect_interval: Option<String>,
    /// Recurring monitor of the connection resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,
    /// Timeout of the connection resource's start operation, e.g. `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub start_timeout: Option<String>,
    /// Timeout of the connection resource's stop operation, e.g. `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub stop_timeout: Option<String>,
}

/// Automatic RemoteNodes for Kubernetes Nodes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoJoin {
    /// Node labels that must all match (as in a Pod's `nodeSelector`). An empty map matches
    /// every Node. Should select the same Nodes as the remoted DaemonSet's node selector.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
}

/// What the controller last saw of the cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PacemakerClusterStatus {
    /// State of the CIB connection: `Connected`, `Connecting`, `Disconnected`, `Failed`
    /// (credentials refused, TLS mismatch: see `message`) or, with `via: remoteNodes`, `Waiting`
    /// (no kubemaker node to connect through yet: see `message` for the bootstrap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Human-readable detail about the connection state, such as the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The endpoint (`host:port`) the controller is connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_endpoint: Option<String>,
    /// The cluster node currently elected designated controller (DC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<String>,
    /// Whether the cluster partition the controller talks to has quorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<bool>,
    /// CIB version last read, as `admin_epoch.epoch.num_updates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cib_version: Option<String>,
    /// Pacemaker version the DC reports (`dc-version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacemaker_version: Option<String>,
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions (`Connected`, `Ready`), each with a reason and a transition time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// RemoteNode
// ---------------------------------------------------------------------------------------------

/// One Pacemaker remote node (a host running `kubemaker remoted`) or guest node (a VM or
/// container the cluster runs as a resource).
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[kube(
    group = "kubemaker.io",
    version = "v1alpha1",
    kind = "RemoteNode",
    plural = "remotenodes",
    shortname = "rn",
    category = "kubemaker",
    status = "RemoteNodeStatus",
    doc = "A Pacemaker remote node or guest node, joined to the cluster named by spec.clusterRef.",
    validation = Rule::new(
        "has(self.spec.nodeName) || (size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))"
    ).message("metadata.name is the Pacemaker node name unless spec.nodeName is set, so it must be a DNS label: lowercase letters, digits and '-', at most 63 characters"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName", description = "Pacemaker node name"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type", description = "remote or guest"),
    printcolumn(name = "Address", type_ = "string", json_path = ".status.address", description = "Address the cluster connects to"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.pacemakerState", description = "Node state as Pacemaker reports it"),
    printcolumn(name = "Host", type_ = "string", json_path = ".status.host", description = "Cluster node hosting the connection"),
    printcolumn(name = "Resources", type_ = "integer", json_path = ".status.resourcesActive", description = "Resources active on the node"),
    printcolumn(name = "Kubelet", type_ = "string", json_path = ".status.conditions[?(@.type==\"KubeletReady\")].status", description = "Whether the bound Kubernetes Node's kubelet is Ready"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.type != 'guest' || has(self.guest)").message("type: guest needs a guest section (at least guest.parameters for the agent)"))]
#[x_kube(validation = Rule::new("self.type != 'guest' || !has(self.reconnectInterval)").message("reconnectInterval applies to remote nodes only"))]
#[serde(rename_all = "camelCase")]
pub struct RemoteNodeSpec {
    /// The PacemakerCluster this node joins. May be left out while exactly one PacemakerCluster
    /// exists (then that one is meant), so that a file written for `kubemaker render -f` is also a
    /// valid object; required as soon as there are several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<ClusterRef>,

    /// The Pacemaker node name (`crm_node -n` on the node). Defaults to the object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = NODE_NAME_PATTERN), length(min = 1, max = 63))]
    pub node_name: Option<String>,

    /// `remote`: a host running `kubemaker remoted` (usually the DaemonSet pod on a Kubernetes
    /// Node), reached by an `ocf:pacemaker:remote` connection resource. `guest`: a VM or container
    /// the cluster runs as a resource (see `guest`), whose connection Pacemaker makes itself.
    #[serde(default, rename = "type")]
    pub node_type: NodeType,

    /// The Kubernetes Node this remote node runs on. When `address` is empty the cluster connects
    /// to this Node's InternalIP; the controller also uses it to tell the two views of one machine
    /// apart. Remote nodes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(max = 253))]
    pub kubernetes_node: Option<String>,

    /// Host name or IP address the cluster connects to. Defaults to the InternalIP of
    /// `kubernetesNode`, else to the node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub address: Option<String>,

    /// TCP port of the node's `kubemaker remoted` (or pacemaker-remoted). Defaults to the
    /// cluster's `remoteNodeDefaults.port`, else 3121.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i64>,

    /// Remote nodes only: how long the cluster waits before reconnecting after the connection
    /// failed, e.g. `60s`. Defaults to the cluster's `remoteNodeDefaults.reconnectInterval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub reconnect_interval: Option<String>,

    /// Recurring monitor of the connection (remote) or of the guest's resource (guest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Monitor>,

    /// Timeout of the connection resource's start operation, e.g. `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub start_timeout: Option<String>,

    /// Timeout of the connection resource's stop operation, e.g. `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub stop_timeout: Option<String>,

    /// Permanent node attributes (as `crm_attribute -N NODE -l forever` sets them), usable in
    /// location rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,

    /// Put the node in standby: Pacemaker moves its resources away and places none there.
    #[serde(default, skip_serializing_if = "is_false")]
    pub standby: bool,

    /// Put the node in maintenance: Pacemaker stops monitoring and managing its resources, which
    /// keep running as they are.
    #[serde(default, skip_serializing_if = "is_false")]
    pub maintenance: bool,

    /// Guest nodes only (required for `type: guest`): the resource that runs the VM or container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<Guest>,
}

/// A reference to a PacemakerCluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Name of the PacemakerCluster this node joins.
    #[schemars(regex(pattern = OBJECT_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,
}

/// Kind of Pacemaker node (see `spec.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    #[default]
    Remote,
    Guest,
}

/// Timings of a recurring monitor operation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Monitor {
    /// How often the monitor runs, e.g. `60s` (Pacemaker's default for connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// How long one monitor may take before it counts as failed, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
}

/// The resource that runs a guest node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Guest {
    /// Id of the guest's resource in the CIB. Defaults to `vm-<nodeName>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub resource_id: Option<String>,
    /// Resource agent, `class:provider:type` or `class:type`. Defaults to
    /// `ocf:heartbeat:VirtualDomain`. It must be installed on every cluster node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[a-z0-9_-]+(:[A-Za-z0-9_.-]+){1,2}$"))]
    pub agent: Option<String>,
    /// Instance attributes of the guest's resource (for VirtualDomain: `config`, `hypervisor`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// How long the connection may take to come up after the guest's resource started
    /// (`remote-connect-timeout`), e.g. `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub connect_timeout: Option<String>,
    /// Whether the guest's resource may live-migrate (`remote-allow-migrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_migrate: Option<bool>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the controller last saw of the node, in Kubernetes and in Pacemaker.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteNodeStatus {
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions `Configured` (the CIB holds what the spec asks for), `Connected` (the cluster
    /// reaches the node), `Ready` (online, not in standby or maintenance) and, for a node bound to
    /// a Kubernetes Node, `KubeletReady` (that Node's `Ready` condition), each with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The Pacemaker node name in effect (`spec.nodeName` or the object's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The address in effect: `spec.address`, the bound Node's InternalIP, or the node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Node state as Pacemaker reports it: `online`, `standby`, `maintenance`, `pending`,
    /// `offline` or `unclean`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacemaker_state: Option<String>,
    /// The cluster node running this node's connection resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Number of resources active on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_active: Option<i32>,
    /// Id of the connection resource in the CIB (the node name for guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_resource: Option<String>,
}

impl From<NodeType> for cib::NodeType {
    fn from(t: NodeType) -> Self {
        match t {
            NodeType::Remote => cib::NodeType::Remote,
            NodeType::Guest => cib::NodeType::Guest,
        }
    }
}

impl RemoteNodeSpec {
    /// The CIB layer's view of this spec, after the cluster's defaults filled what the object
    /// leaves open. `address` is what the controller resolved (explicit address, the bound Node's
    /// InternalIP, or none to let the planner fall back to the node name).
    pub fn to_cib_spec(
        &self,
        defaults: Option<&RemoteNodeDefaults>,
        address: Option<String>,
    ) -> cib::RemoteNodeSpec {
        let d = defaults.cloned().unwrap_or_default();
        let monitor = self
            .monitor
            .clone()
            .or(d.monitor)
            .map(|m| cib::MonitorSpec {
                interval: m.interval,
                timeout: m.timeout,
            });
        let remote = self.node_type == NodeType::Remote;
        cib::RemoteNodeSpec {
            node_name: self.node_name.clone(),
            node_type: self.node_type.into(),
            address: address.or_else(|| self.address.clone()),
            port: self.port.or(d.port.map(i64::from)),
            reconnect_interval: self.reconnect_interval.clone().or(if remote {
                d.reconnect_interval
            } else {
                None
            }),
            monitor,
            start_timeout: self.start_timeout.clone().or(d.start_timeout),
            stop_timeout: self.stop_timeout.clone().or(d.stop_timeout),
            attributes: self.attributes.clone(),
            standby: self.standby,
            maintenance: self.maintenance,
            guest: self.guest.clone().map(|g| cib::GuestSpec {
                resource_id: g.resource_id,
                agent: g.agent,
                parameters: g.parameters,
                connect_timeout: g.connect_timeout,
                allow_migrate: g.allow_migrate,
            }),
            recovery_mark: None,
        }
    }
}

impl RemoteNode {
    /// The Pacemaker node name: `spec.nodeName`, else the object's name.
    pub fn node_name(&self) -> &str {
        self.spec
            .node_name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the CIB layer's spec round-trips through the CRD spec, so a manifest
    /// `kubemaker render -f` reads keeps its meaning as a RemoteNode object.
    #[test]
    fn cib_spec_fields_map_one_to_one() {
        let yaml = r#"
clusterRef: {name: prod}
nodeName: guest1
type: guest
address: 192.0.2.21
port: 3121
monitor: {interval: 20s, timeout: 40s}
startTimeout: 60s
stopTimeout: 60s
attributes: {rack: r1}
standby: true
maintenance: true
guest:
  resourceId: vm-guest1
  agent: ocf:heartbeat:VirtualDomain
  parameters: {config: /etc/pacemaker/guest1.xml}
  connectTimeout: 90s
  allowMigrate: false
"#;
        let ours: RemoteNodeSpec = serde_yaml::from_str(yaml).unwrap();
        let theirs: cib::RemoteNodeSpec =
            serde_yaml::from_str(&yaml.replace("clusterRef: {name: prod}\n", "")).unwrap();
        assert_eq!(ours.to_cib_spec(None, None), theirs);
    }

    #[test]
    fn cluster_defaults_fill_gaps_but_never_override() {
        let spec: RemoteNodeSpec =
            serde_yaml::from_str("clusterRef: {name: c}\nport: 3200\n").unwrap();
        let d = RemoteNodeDefaults {
            port: Some(3121),
            reconnect_interval: Some("30s".into()),
            monitor: Some(Monitor {
                interval: Some("10s".into()),
                timeout: None,
            }),
            start_timeout: None,
            stop_timeout: Some("90s".into()),
        };
        let c = spec.to_cib_spec(Some(&d), Some("10.1.2.3".into()));
        assert_eq!(c.port, Some(3200));
        assert_eq!(c.reconnect_interval.as_deref(), Some("30s"));
        assert_eq!(c.stop_timeout.as_deref(), Some("90s"));
        assert_eq!(c.address.as_deref(), Some("10.1.2.3"));
        assert_eq!(c.monitor.unwrap().interval.as_deref(), Some("10s"));
    }
}
