//! Fail-over: one command connection at a time over several endpoints (one per cluster node),
//! re-made on the next endpoint when it breaks, with backoff between rounds.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::wire::Element;

use super::config::ClientConfig;
use super::connection::{Connection, Request};
use super::error::CibError;

/// Tries each endpoint, starting with `first`, for `rounds` rounds with backoff in between.
pub(super) async fn connect_any(
    cfg: &ClientConfig,
    first: usize,
) -> Result<(usize, Connection), CibError> {
    if cfg.endpoints.is_empty() {
        return Err(CibError::Config("no CIB endpoints configured".into()));
    }
    if cfg.password.is_empty() && cfg.tls_auth.needs_password() {
        return Err(CibError::Config(format!(
            "no password for user {}; set CIB_passwd",
            cfg.user
        )));
    }
    let n = cfg.endpoints.len();
    let mut tried = Vec::new();
    let rounds = cfg.retry.connect_rounds.max(1);
    for round in 0..rounds {
        if round > 0 {
            tokio::time::sleep(cfg.retry.backoff(round)).await;
        }
        for k in 0..n {
            let i = (first + k) % n;
            let ep = &cfg.endpoints[i];
            match Connection::open(ep, cfg).await {
                Ok(c) => {
                    info!(endpoint = %ep, "connected to the CIB");
                    return Ok((i, c));
                }
                // Another node would refuse the same password too, after PAM's delay.
                Err(e @ CibError::LoginRefused { .. }) => return Err(e),
                // Our own key or certificate is unusable: the same for every endpoint.
                Err(e @ CibError::Credentials(_)) => return Err(e),
                Err(CibError::Unreachable { tried: t }) => {
                    debug!(endpoint = %ep, error = ?t, "CIB endpoint unreachable");
                    tried.extend(t);
                }
                Err(e) => {
                    debug!(endpoint = %ep, error = %e, "CIB endpoint failed");
                    tried.push(format!("{ep}: {e}"));
                }
            }
        }
    }
    // The same endpoint failing the same way in every round is said once.
    tried.dedup();
    Err(CibError::Unreachable { tried })
}
/// The command connection of a client: at most one open at a time, re-made on demand, starting
/// with the endpoint that worked last.
pub(super) struct Failover {
    cfg: ClientConfig,
    conn: Mutex<Option<Connection>>,
    /// Index of the endpoint that worked last; tried first next time.
    preferred: AtomicUsize,
}

impl Failover {
    /// Connects and logs in now, so a wrong password or an unreachable cluster shows at once.
    pub(super) async fn connect(cfg: ClientConfig) -> Result<Failover, CibError> {
        let (i, conn) = connect_any(&cfg, 0).await?;
        Ok(Failover {
            cfg,
            conn: Mutex::new(Some(conn)),
            preferred: AtomicUsize::new(i),
        })
    }

    pub(super) fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The endpoint to try first.
    pub(super) fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// Sends one request; reconnects (failing over) if there is no connection. A request that
    /// failed on a broken connection is retried once elsewhere only if `idempotent`.
    pub(super) async fn request(
        &self,
        req: Request<'_>,
        idempotent: bool,
    ) -> Result<Element, CibError> {
        let mut guard = self.conn.lock().await;
        let mut attempt = 0;
        loop {
            if guard.is_none() {
                let (i, c) = connect_any(&self.cfg, self.preferred.load(Ordering::Relaxed)).await?;
                self.preferred.store(i, Ordering::Relaxed);
                *guard = Some(c);
            }
            let Some(conn) = guard.as_mut() else {
                continue;
            };
            let req_again = Request {
                op: req.op,
                section: req.section.clone(),
                options: req.options,
                data: req.data,
            };
            match conn.call(req_again, &self.cfg).await {
                Ok(reply) => return Ok(reply),
                Err(e @ (CibError::Timeout { .. } | CibError::ConnectionLost { .. })) => {
                    // The connection's state is unknown now (a late reply could be mistaken
                    // for the next one's): drop it, and move on to the next endpoint.
                    warn!(error = %e, "dropping CIB connection");
                    *guard = None;
                    let n = self.cfg.endpoints.len().max(1);
                    let next = (self.preferred.load(Ordering::Relaxed) + 1) % n;
                    self.preferred.store(next, Ordering::Relaxed);
                    attempt += 1;
                    if !idempotent || attempt > 1 {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The open connection, if any, to close it politely.
    pub(super) fn into_connection(self) -> Option<Connection> {
        self.conn.into_inner()
    }
}
