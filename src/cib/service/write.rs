//! The service's core: a CIB client plus the discipline of every write. A write reads the whole
//! CIB, plans on it, and sends the plan as a patch carrying the version it read; when the CIB
//! moved on meanwhile (-205/-206), it reads, plans and sends again with backoff.

use tokio::sync::Mutex;
use tracing::debug;

use crate::cib::client::{CibClient, CibError, RC_DIFF_FAILED, RC_OLD_DATA};
use crate::cib::model::{Cib, CibVersion};
use crate::cib::plan::Plan;
use crate::cib::validate::Problem;
use crate::wire::Element;

/// What the writes of one request did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Committed `cib_apply_diff` transactions.
    pub transactions: usize,
    /// Attempts rejected because the CIB had changed since it was read.
    pub conflicts: usize,
    /// Patch steps committed.
    pub changes: usize,
    /// The version the last read saw (before the last commit).
    pub last_read: CibVersion,
    /// Advice that did not block the write ([`crate::cib::validate::warnings`]).
    pub warnings: Vec<Problem>,
    /// For [`CibService::apply_nodes`]: what became of each desired node, in the order given.
    pub nodes: Vec<NodeOutcome>,
}

impl ApplyReport {
    pub(super) fn absorb(&mut self, other: &ApplyReport) {
        self.transactions += other.transactions;
        self.conflicts += other.conflicts;
        self.changes += other.changes;
        self.last_read = other.last_read;
    }
}

/// What became of one desired node in [`CibService::apply_nodes`].
#[derive(Debug, Clone)]
pub enum NodeOutcome {
    /// The CIB already matched (or the write was a dry run).
    Unchanged,
    /// Committed; the changes, described for humans.
    Written(Vec<String>),
    /// Left out: the live CIB checks refused it ([`InvalidNodes::SetAside`]).
    Refused(Vec<Problem>),
    /// Its batch could not be written ([`InvalidNodes::SetAside`]).
    Failed(ApplyError),
}

/// What [`CibService::apply_nodes`] does with nodes the live CIB checks refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidNodes {
    /// Write nothing and return every problem: a manifest file is applied whole or not at all
    /// (`kubemaker cib apply`). Warnings are computed too, for a human to read.
    RefuseAll,
    /// Leave them out and write the others; every node gets its own outcome, and a batch that
    /// fails never stops the next one (the controller: one bad object never blocks the others).
    SetAside,
}

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Cib(#[from] CibError),
    #[error(
        "the CIB kept changing while writing ({attempts} attempts got -205 \"update was older than existing configuration\"); try again later"
    )]
    Conflict { attempts: u32 },
    #[error("invalid configuration:\n  - {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - "))]
    Invalid(Vec<Problem>),
}

impl ApplyError {
    /// A short stable name of the kind of failure, for an Event reason or a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Cib(e) => e.reason(),
            ApplyError::Conflict { .. } => "CibConflict",
            ApplyError::Invalid(_) => "InvalidConfiguration",
        }
    }
}

/// The procedures kubemaker runs on a CIB, for the command line and the controller alike.
#[derive(Debug, Clone, Copy)]
pub struct CibService<'a> {
    client: &'a CibClient,
    write_lock: Option<&'a Mutex<()>>,
}

impl<'a> CibService<'a> {
    pub fn new(client: &'a CibClient) -> CibService<'a> {
        CibService {
            client,
            write_lock: None,
        }
    }

    /// Holds `lock` during each write, so that writers sharing it never race each other for the
    /// same version (the controller has one per cluster).
    pub fn serialized(self, lock: &'a Mutex<()>) -> CibService<'a> {
        CibService {
            write_lock: Some(lock),
            ..self
        }
    }

    pub fn client(&self) -> &'a CibClient {
        self.client
    }

    /// Read-plan-write with optimistic concurrency: `make` gets the whole live CIB and returns the
    /// plan; the patch carries the version read, and when the CIB moved on meanwhile (-205/-206),
    /// the service reads again, calls `make` again and retries with backoff.
    pub async fn write_with_retry<F>(
        &self,
        mut make: F,
        dry_run: bool,
    ) -> Result<ApplyReport, ApplyError>
    where
        F: FnMut(&Element) -> Result<Plan, ApplyError>,
    {
        let _serialized = match self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let retry = &self.client.config().retry;
        let mut report = ApplyReport::default();
        let attempts = retry.write_attempts.max(1);
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(retry.backoff(attempt - 1)).await;
            }
            let live = self.client.query_cib().await?;
            let version = Cib::new(&live).version();
            report.last_read = version;
            let plan = make(&live)?;
            if plan.is_empty() {
                return Ok(report);
            }
            let patch = plan.to_patch(version);
            match self.client.apply_patch(&patch, dry_run).await {
                Ok(()) => {
                    if !dry_run {
                        report.transactions += 1;
                        report.changes += plan.change_count();
                    }
                    debug!(%version, changes = plan.change_count(), dry_run, "CIB patch applied");
                    return Ok(report);
                }
                Err(CibError::Rejected { rc, .. }) if rc == RC_OLD_DATA || rc == RC_DIFF_FAILED => {
                    report.conflicts += 1;
                    debug!(%version, rc, attempt, "CIB changed since it was read; re-planning");
                }
                Err(CibError::ConnectionLost { .. } | CibError::Timeout { .. })
                    if attempt + 1 < attempts =>
                {
                    // Whether it was applied is unknown; the next read and plan tell.
                    report.conflicts += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApplyError::Conflict { attempts })
    }
}
