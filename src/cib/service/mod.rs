//! One CIB service for the command line and the controller: the procedures kubemaker runs on a
//! CIB, over the transport [`crate::cib::client::CibClient`].
//!
//! - `write`: [`CibService`] and the discipline of every write (read, plan, versioned patch,
//!   re-plan and retry when the CIB moved on).
//! - [`apply`]: validate → plan → write for N nodes, in batches.
//! - [`removal`]: stop → wait until stopped → delete → purge for N nodes, the way of waiting
//!   injected ([`StopWaiter`]).
//!
//! What stays with each caller: the command line reads manifests and prints; the controller
//! batches requests from many reconciles, keeps a notification-fed snapshot (its
//! [`StopWaiter`]), and serializes a cluster's writes ([`CibService::serialized`]).

pub mod apply;
pub mod removal;
mod write;

pub use apply::ApplyOptions;
pub use removal::{
    DEFAULT_STOP_TIMEOUT, Polling, RemovalError, RemovalOptions, RemovalReport, RemovedNode,
    StopWaiter,
};
pub use write::{ApplyError, ApplyReport, CibService, InvalidNodes, NodeOutcome};
