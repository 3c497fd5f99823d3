//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one reconciles. The rules are client-go's: a Lease is free when it has no holder or when its
//! record has not changed for `lease_duration` as measured on *our* clock (so clock skew between
//! replicas does not matter); every update carries the resourceVersion read, so two candidates
//! cannot both win. A leader that cannot renew within the renew deadline stops leading.
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

    /// Renews until a renewal has not succeeded within the renew deadline; returns then.
    pub async fn hold(&mut self) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.renew_interval).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.cfg.name, "another replica took the lease");
                    return;
                }
                Err(e) => {
                    warn!(lease = %self.cfg.name, error = %e, "renewing the lease failed");
                    if last_ok.elapsed() > self.cfg.renew_deadline() {
                        return;
                    }
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
