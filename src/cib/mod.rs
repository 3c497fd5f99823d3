//! The CIB layer: everything kubemaker knows about Pacemaker's configuration XML, independent of
//! Kubernetes. From the bottom up:
//!
//! - [`spec`]: the node description users write (`RemoteNode` manifests).
//! - [`model`]: typed CIB fragments with pcs's id conventions, and views over a live CIB.
//! - [`validate`]: the checks Pacemaker does not make of a spec alone, and their [`Problem`];
//!   [`live_checks`]: desired nodes against each other and the live CIB (clashes, leftovers).
//! - [`desired`]: a checked spec as the fragments kubemaker wants in the CIB.
//! - [`patch`]: the patch vocabulary (changes, paths) and a local applier with Pacemaker's
//!   semantics.
//! - [`plan`]: pure planner, desired vs live → changes; also the stop and removal plans.
//! - [`status`]: pure status reader, CIB → per-node state (crm_mon is the oracle in tests).
//! - [`client`]: the remote CIB port transport (login, query, apply a patch, notifications,
//!   fail-over).
//! - [`service`]: the procedures on top, for the command line and the controller alike:
//!   validate → plan → versioned write with retry, and stop → wait → delete → purge, for N nodes.
//! - [`render`]: human-facing output (indented XML, node tables); [`cli`]: `kubemaker cib`.
//!
//! Imports point down this list only.
//!
//! The operator's reconcile step, in short (the controller batches and sets invalid nodes aside
//! instead; see `operator::cluster_connection`):
//!
//! ```no_run
//! use kubemaker::cib::{
//!     ApplyOptions, CibClient, CibService, ClientConfig, DesiredNode, InvalidNodes,
//!     RemoteNodeManifest, WatchEvent, read_status,
//! };
//!
//! # async fn reconcile(manifests: Vec<RemoteNodeManifest>) -> Result<(), Box<dyn std::error::Error>> {
//! let client = CibClient::connect(ClientConfig::from_env()?).await?;
//! let service = CibService::new(&client);
//! // Spec problems (names, ports, durations, values) come back before any cluster is asked.
//! let desired = manifests
//!     .iter()
//!     .map(DesiredNode::from_manifest)
//!     .collect::<Result<Vec<_>, _>>()
//!     .map_err(|problems| format!("{problems:?}"))?;
//! // Validate against the live CIB, plan, and write in versioned, batched transactions.
//! let report = service
//!     .apply_nodes(&desired, &ApplyOptions::default(), InvalidNodes::RefuseAll)
//!     .await?;
//! println!("{} transaction(s), {} retried", report.transactions, report.conflicts);
//! // Status for each node, and a stream of changes to re-read on.
//! for node in read_status(&client.query_cib().await?) {
//!     println!("{} is {}", node.name, node.state.as_str());
//! }
//! let mut watch = client.watch().await?;
//! while let Some(event) = watch.next().await {
//!     if let WatchEvent::Resync { .. } = event { /* read the whole CIB again */ }
//! }
//! # Ok(())
//! # }
//! ```

pub mod cli;
pub mod client;
pub mod desired;
pub mod live_checks;
pub mod model;
pub mod patch;
pub mod plan;
pub mod render;
pub mod service;
pub mod spec;
pub mod status;
pub mod validate;

pub use client::{
    CibClient, CibDiff, CibError, ClientConfig, Endpoint, Query, Secret, TlsAuth, Transport,
    VersionChain, Watch, WatchEvent,
};
pub use desired::{DesiredKind, DesiredNode};
pub use live_checks::{check_against_cib, warnings};
pub use model::CibVersion;
pub use patch::Change;
pub use plan::{Plan, plan, removal_plan};
pub use service::removal::remove_node;
pub use service::{
    ApplyError, ApplyOptions, ApplyReport, CibService, InvalidNodes, NodeOutcome, RemovalError,
    RemovalOptions, RemovalReport, RemovedNode, StopWaiter,
};
pub use spec::{RemoteNodeManifest, RemoteNodeSpec};
pub use status::{NodeState, NodeStatus, read_status};
pub use validate::{Problem, check_spec};
