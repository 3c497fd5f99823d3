//! Kubernetes side of the operator's end-to-end tests, by concern:
//!
//! - [`api`]: the test API server of `scripts/test-apiserver.sh`, `kubectl`/`helm` with its admin
//!   kubeconfig, objects and Events;
//! - [`setup`]: a fresh namespace with the chart installed, a ServiceAccount kubeconfig (so
//!   `kubemaker controller` runs with exactly the chart's RBAC), credentials, Nodes, and the
//!   clean-up of what a crashed run left;
//! - [`controller`]: the controller process (logs, signals, `/metrics`, `/readyz`);
//! - [`objects`]: readers for JSON objects and their conditions;
//! - [`cib`]: readers for the live CIB.
//!
//! Every command and every wait is bounded in time. Secrets (the authkey, the hacluster password,
//! ServiceAccount tokens) are passed on stdin or in 0600 files, never on a command line, and never
//! appear in a panic message.

pub mod api;
pub mod cib;
pub mod controller;
pub mod objects;
pub mod setup;

pub use api::{
    Api, EventInfo, ExclusiveUse, apiserver_script, hold_apiserver, release_and_stop_if_unused,
};
pub use cib::{
    add_host_addresses, agent_of, assert_one_connection_each, cib_root, cib_version,
    has_node_entry, has_node_state, nvpair, op_interval, primitive, primitives,
    primitives_with_prefix,
};
pub use controller::{Controller, Metrics, http_get};
pub use objects::{
    condition, condition_is, describe, has_finalizer, parse_rfc3339, secret, str_at,
};

/// Where the e2e tests keep kubeconfigs, controller logs and key files.
pub const STATE_DIR: &str = "/var/tmp/kubemaker-test/operator-e2e";
/// Helm release name. Not `kubemaker`: `tests/operator_crds.rs` applies `manifests/` (the chart
/// rendered as release `kubemaker`), whose cluster-scoped RBAC objects helm could not adopt.
pub const RELEASE: &str = "kubemaker-e2e";
/// The controller ServiceAccount the chart creates for [`RELEASE`].
pub const CONTROLLER_SA: &str = "kubemaker-e2e-controller";
/// Label on every object the e2e tests create themselves (Nodes, RemoteNodes).
pub const TEST_LABEL: &str = "kubemaker-e2e";
/// The finalizer the controller puts on RemoteNodes.
pub const FINALIZER: &str = "kubemaker.io/cib-cleanup";
/// Default Lease name of the controller.
pub const LEASE: &str = "kubemaker-controller";
