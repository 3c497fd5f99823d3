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

use crate::cib::client::CibClient;
use crate::cib::desired::DesiredNode;
use crate::cib::plan::Plan;
use crate::wire::Element;

/// The service's procedures as methods of the client, as they were before the service existed
/// (the integration tests call them so); new code uses [`CibService`].
impl CibClient {
    /// [`CibService::apply_nodes`], refusing the whole request if any node is invalid.
    pub async fn apply_nodes(
        &self,
        desired: &[DesiredNode],
        opts: &ApplyOptions,
    ) -> Result<ApplyReport, ApplyError> {
        CibService::new(self)
            .apply_nodes(desired, opts, InvalidNodes::RefuseAll)
            .await
    }

    /// [`CibService::write_with_retry`].
    pub async fn apply_with_retry<F>(
        &self,
        make: F,
        dry_run: bool,
    ) -> Result<ApplyReport, ApplyError>
    where
        F: FnMut(&Element) -> Result<Plan, ApplyError>,
    {
        CibService::new(self).write_with_retry(make, dry_run).await
    }
}
