//! The CIB layer: everything kubemaker knows about Pacemaker's configuration XML, independent of
//! Kubernetes.
//!
//! - [`spec`]: the node description users write (`RemoteNode` manifests).
//! - [`model`]: typed CIB fragments with pcs's id conventions, and views over a live CIB.
//! - [`plan`]: pure planner, spec → desired fragments → changes against the live CIB.
//! - [`validate`]: the checks Pacemaker does not make (names, clashes, placement, values).
//! - [`status`]: pure status reader, CIB → per-node state (crm_mon is the oracle in tests).
//! - [`client`]: the remote CIB port client (login, query, versioned apply_diff with retry,
//!   notifications, failover).
//! - [`removal`]: stop, wait, delete and purge a node through the CIB.
//! - [`patch`]: patch paths and a local applier with Pacemaker's semantics.
//! - [`render`]: human-facing output (indented XML, node tables).
//!
//! The operator's reconcile step, in short:
//!
//! ```no_run
//! use kubemaker::cib::{
//!     ApplyOptions, CibClient, ClientConfig, DesiredNode, RemoteNodeManifest, WatchEvent,
//!     read_status,
//! };
//!
//! # async fn reconcile(manifests: Vec<RemoteNodeManifest>) -> Result<(), Box<dyn std::error::Error>> {
//! let client = CibClient::connect(ClientConfig::from_env()?).await?;
//! // Spec problems (names, ports, durations, values) come back before any cluster is asked.
//! let desired = manifests
//!     .iter()
//!     .map(DesiredNode::from_manifest)
//!     .collect::<Result<Vec<_>, _>>()
//!     .map_err(|problems| format!("{problems:?}"))?;
//! // Validate against the live CIB, plan, and write in versioned, batched transactions.
//! let report = client.apply_nodes(&desired, &ApplyOptions::default()).await?;
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
pub mod model;
pub mod patch;
pub mod plan;
pub mod removal;
pub mod render;
pub mod spec;
pub mod status;
pub mod validate;

pub use client::{
    ApplyOptions, ApplyReport, CibClient, CibDiff, CibError, ClientConfig, Endpoint, Query, Secret,
    Transport, VersionChain, Watch, WatchEvent,
};
pub use model::CibVersion;
pub use plan::{Change, DesiredKind, DesiredNode, Plan, plan};
pub use removal::{RemovalOptions, RemovalReport, removal_plan, remove_node};
pub use spec::{RemoteNodeManifest, RemoteNodeSpec};
pub use status::{NodeState, NodeStatus, read_status};
pub use validate::{Problem, check_against_cib, check_spec, warnings};
