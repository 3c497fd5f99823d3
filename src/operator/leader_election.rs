//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one reconciles. The rules are client-go's: a Lease is free when it has no holder or when its
//! record has not changed for `lease_duration` as measured on *our* clock (so clock skew between
//! replicas does not matter); every update carries the resourceVersion read, so two candidates
//! cannot both win. A leader that sees another holder, or cannot renew within the renew
//! deadline, stops leading and says which ([`LeaseLost`]).
//!
//! Kept rather than a crate: `kube-leader-election` is still on kube 4, and `kube-lease-manager`
//! (on kube 5) judges expiry by the holder's `renewTime` against the local wall clock, so clock
//! skew between nodes shortens or stretches a lease, and it writes by server-side apply, which the
//! chart's Role (get, create, update on Leases) does not allow.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    /// How often the holder renews (and a candidate retries).
    pub renew_interval: Duration,
}

impl LeaseConfig {
    /// Leadership is given up when no renewal succeeded for this long; shorter than the lease so
    /// that the old leader stops before anyone else may start.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration.mul_f64(2.0 / 3.0)
    }
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLost {
    /// Another replica holds the Lease now.
    TakenOver,
    /// No renewal succeeded within the renew deadline (the API server was unreachable, restarting
    /// or failing). The Lease may expire for the others, so the leader stops reconciling now; it
    /// still names us as holder unless someone else took it, so we may well get it back.
    RenewalFailed,
}

/// The outcome of one renewal attempt by the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renewal {
    Renewed,
    /// The Lease names another holder, or our update lost the race for it.
    HeldByOther,
    /// The API server did not answer or refused the request.
    Failed,
}

/// Whether a leader stops leading after `renewal`, when its last successful renewal was
/// `since_renewed` ago.
fn after_renewal(
    renewal: Renewal,
    since_renewed: Duration,
    renew_deadline: Duration,
) -> Option<LeaseLost> {
    match renewal {
        Renewal::Renewed => None,
        Renewal::HeldByOther => Some(LeaseLost::TakenOver),
        Renewal::Failed if since_renewed > renew_deadline => Some(LeaseLost::RenewalFailed),
        Renewal::Failed => None,
    }
}

/// What a candidate saw of the Lease last, and when (on its own clock).
#[derive(Debug, Default)]
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    since: Option<Instant>,
}

pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Observed,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, cfg: LeaseConfig) -> LeaderElector {
        LeaderElector {
            api,
            cfg,
            observed: Observed::default(),
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// Waits until this replica holds the Lease, or `cancel` resolves (then `false`).
    pub async fn acquire(&mut self, cancel: impl std::future::Future<Output = ()>) -> bool {
        tokio::pin!(cancel);
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
                    return true;
                }
                Ok(false) => {
                    if !announced {
                        info!(lease = %self.cfg.name, "waiting for leadership");
                        announced = true;
                    }
                }
                Err(e) => {
                    warn!(lease = %self.cfg.name, error = %e, "leader election failed; retrying")
                }
            }
            tokio::select! {
                _ = &mut cancel => return false,
                _ = tokio::time::sleep(self.cfg.renew_interval) => {}
            }
        }
    }

    /// Renews until another replica holds the Lease or a renewal has not succeeded within the
    /// renew deadline; returns which.
    pub async fn hold(&mut self) -> LeaseLost {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.renew_interval).await;
            let renewal = match self.try_acquire_or_renew().await {
                Ok(true) => Renewal::Renewed,
                Ok(false) => Renewal::HeldByOther,
                Err(e) => {
                    warn!(lease = %self.cfg.name, error = %e, "renewing the lease failed");
                    Renewal::Failed
                }
            };
            if renewal == Renewal::Renewed {
                last_ok = Instant::now();
            }
            match after_renewal(renewal, last_ok.elapsed(), self.cfg.renew_deadline()) {
                None => {}
                Some(LeaseLost::TakenOver) => {
                    warn!(lease = %self.cfg.name, "another replica took the lease");
                    return LeaseLost::TakenOver;
                }
                Some(LeaseLost::RenewalFailed) => {
                    warn!(
                        lease = %self.cfg.name,
                        deadline = ?self.cfg.renew_deadline(),
                        "no renewal of the lease succeeded within the renew deadline"
                    );
                    return LeaseLost::RenewalFailed;
                }
            }
        }
    }

    /// Clears the holder so a standby takes over at once instead of after the lease expires.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.cfg.name, "released the lease"),
            Err(e) => warn!(lease = %self.cfg.name, error = %e, "releasing the lease failed"),
        }
    }

    /// One round: `Ok(true)` if we hold the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let secs = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = (holder.clone(), spec.renew_time.clone());
        if self.observed.record.as_ref() != Some(&record) {
            self.observed = Observed {
                record: Some(record),
                since: Some(Instant::now()),
            };
        }
        let mine = holder.as_deref() == Some(self.cfg.identity.as_str());
        // The holder's own duration counts, so a released lease (1 s) is free almost at once.
        let held_for = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(u64::try_from(s.max(0)).unwrap_or(0)))
            .unwrap_or(self.cfg.lease_duration);
        let expired = self.observed.since.is_some_and(|t| t.elapsed() > held_for);
        if !mine && holder.is_some() && !expired {
            debug!(holder = ?holder, "lease held by another replica");
            return Ok(false);
        }
        if !mine {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.cfg.identity.clone());
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(secs);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else wrote first (resourceVersion mismatch).
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(4);

    #[test]
    fn a_renewal_keeps_the_lease_however_late() {
        assert_eq!(
            after_renewal(Renewal::Renewed, Duration::from_secs(60), DEADLINE),
            None
        );
    }

    #[test]
    fn another_holder_ends_leadership_at_once() {
        assert_eq!(
            after_renewal(Renewal::HeldByOther, Duration::ZERO, DEADLINE),
            Some(LeaseLost::TakenOver)
        );
    }

    #[test]
    fn failed_renewals_end_leadership_only_after_the_deadline() {
        assert_eq!(
            after_renewal(Renewal::Failed, Duration::from_secs(2), DEADLINE),
            None
        );
        assert_eq!(after_renewal(Renewal::Failed, DEADLINE, DEADLINE), None);
        assert_eq!(
            after_renewal(Renewal::Failed, Duration::from_secs(5), DEADLINE),
            Some(LeaseLost::RenewalFailed)
        );
    }

    #[test]
    fn the_renew_deadline_ends_before_the_lease() {
        let cfg = LeaseConfig {
            name: "l".into(),
            identity: "i".into(),
            lease_duration: Duration::from_secs(6),
            renew_interval: Duration::from_secs(2),
        };
        assert!(cfg.renew_deadline() < cfg.lease_duration);
        assert!(cfg.renew_deadline() > cfg.renew_interval);
    }
}
