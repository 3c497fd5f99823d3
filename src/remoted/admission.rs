//! Who may start a TLS handshake, and how loudly refusals are logged. Before its handshake a peer
//! is unauthenticated, so nothing it does may cost the daemon without bound:
//!
//! - at most [`Limits::pending`] handshakes at once, and [`Limits::pending_per_address`] from one
//!   address, so a flood of connections that never finish holds bounded memory and descriptors,
//!   and one flooding address cannot take every slot from the cluster's nodes;
//! - failed and refused handshakes are logged individually up to [`Limits::log_burst`] per
//!   [`Limits::log_window`]; beyond that they are counted, and the count is logged once per window,
//!   so a flood cannot fill the disk while the first failures stay visible.
//!
//! The decisions are pure ([`Admission::begin`], [`LogBudget`]); the listener does the I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The bounds on unauthenticated peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub pending: usize,
    pub pending_per_address: usize,
    pub log_burst: u32,
    pub log_window: Duration,
}

impl Default for Limits {
    /// A cluster opens one connection per cluster node to each remote node, so even a large
    /// cluster's reconnect storm fits well within these.
    fn default() -> Self {
        Self {
            pending: 256,
            pending_per_address: 16,
            log_burst: 20,
            log_window: Duration::from_secs(60),
        }
    }
}

/// Why a connection was closed before its handshake began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Limits::pending` handshakes are in progress.
    TooManyPending(usize),
    /// `Limits::pending_per_address` handshakes from this address are in progress.
    TooManyFromAddress(usize),
}

/// Whether one failure is logged, and the count of the window that just closed (if one did and
/// anything in it went unlogged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDecision {
    pub log: bool,
    /// This failure is the last one logged in its window: say that more will be counted.
    pub last_before_quiet: bool,
    pub unlogged_in_closed_window: Option<u64>,
}

/// A fixed-window budget of log lines.
#[derive(Debug)]
pub struct LogBudget {
    burst: u32,
    window: Duration,
    window_start: Option<Instant>,
    logged: u32,
    unlogged: u64,
}

impl LogBudget {
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            window_start: None,
            logged: 0,
            unlogged: 0,
        }
    }

    /// One failure at `now`.
    pub fn failure(&mut self, now: Instant) -> LogDecision {
        let closed = self.roll(now);
        self.window_start.get_or_insert(now);
        if self.logged < self.burst {
            self.logged += 1;
            LogDecision {
                log: true,
                last_before_quiet: self.logged == self.burst,
                unlogged_in_closed_window: closed,
            }
        } else {
            self.unlogged += 1;
            LogDecision {
                log: false,
                last_before_quiet: false,
                unlogged_in_closed_window: closed,
            }
        }
    }

    /// Closes the window if it has ended at `now`; returns its unlogged count when not zero.
    /// Called on each failure and from a timer, so that the count of the flood's last window is
    /// logged even when nothing follows it.
    pub fn roll(&mut self, now: Instant) -> Option<u64> {
        let start = self.window_start?;
        if now.duration_since(start) < self.window {
            return None;
        }
        let unlogged = std::mem::take(&mut self.unlogged);
        self.window_start = None;
        self.logged = 0;
        (unlogged > 0).then_some(unlogged)
    }
}

#[derive(Debug)]
struct State {
    pending: usize,
    per_address: HashMap<IpAddr, usize>,
    log: LogBudget,
}

/// The listener's gate; shared by every connection task.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    state: Mutex<State>,
}

/// Holds a handshake slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Pending {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State {
                pending: 0,
                per_address: HashMap::new(),
                log: LogBudget::new(limits.log_burst, limits.log_window),
            }),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under a panic elsewhere: take it as it is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a handshake from `address`, or why there is none.
    pub fn begin(self: &Arc<Self>, address: IpAddr) -> Result<Pending, Refusal> {
        // An IPv4 peer on the dual-stack socket shows as ::ffff:a.b.c.d; count it as a.b.c.d.
        let address = address.to_canonical();
        let mut s = self.lock();
        if s.pending >= self.limits.pending {
            return Err(Refusal::TooManyPending(self.limits.pending));
        }
        let from = s.per_address.entry(address).or_insert(0);
        if *from >= self.limits.pending_per_address {
            return Err(Refusal::TooManyFromAddress(self.limits.pending_per_address));
        }
        *from += 1;
        s.pending += 1;
        Ok(Pending {
            admission: Arc::clone(self),
            address,
        })
    }

    /// Handshakes in progress (for tests and diagnostics).
    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    /// A failed or refused handshake at `now`: whether to log it (see [`LogBudget::failure`]).
    pub fn failure(&self, now: Instant) -> LogDecision {
        self.lock().log.failure(now)
    }

    /// The unlogged count of a window that has ended by `now` (see [`LogBudget::roll`]).
    pub fn roll_log(&self, now: Instant) -> Option<u64> {
        self.lock().log.roll(now)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut s = self.admission.lock();
        s.pending = s.pending.saturating_sub(1);
        if let Some(n) = s.per_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pending: usize, per: usize) -> Limits {
        Limits {
            pending,
            pending_per_address: per,
            ..Limits::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn slots_are_bounded_overall_and_per_address_and_freed_on_drop() {
        let a = Admission::new(limits(3, 2));
        let first = a.begin(ip("10.0.0.1")).unwrap();
        let _second = a.begin(ip("10.0.0.1")).unwrap();
        assert_eq!(
            a.begin(ip("10.0.0.1")).unwrap_err(),
            Refusal::TooManyFromAddress(2)
        );
        // The mapped form of the same IPv4 address is the same peer.
        assert_eq!(
            a.begin(ip("::ffff:10.0.0.1")).unwrap_err(),
            Refusal::TooManyFromAddress(2)
        );
        let _third = a.begin(ip("10.0.0.2")).unwrap();
        assert_eq!(
            a.begin(ip("10.0.0.3")).unwrap_err(),
            Refusal::TooManyPending(3)
        );
        assert_eq!(a.pending(), 3);
        drop(first);
        assert_eq!(a.pending(), 2);
        assert!(a.begin(ip("10.0.0.1")).is_ok(), "a freed slot is reusable");
    }

    #[test]
    fn the_log_budget_logs_a_burst_then_counts_and_reports_each_window() {
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let mut b = LogBudget::new(3, w);
        let d: Vec<LogDecision> = (0..5)
            .map(|i| b.failure(t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(
            d.iter().map(|d| d.log).collect::<Vec<_>>(),
            [true, true, true, false, false]
        );
        assert!(d[2].last_before_quiet && !d[1].last_before_quiet);
        assert!(d.iter().all(|d| d.unlogged_in_closed_window.is_none()));
        // Nothing to report before the window ends; its count once it has.
        assert_eq!(b.roll(t0 + Duration::from_secs(59)), None);
        assert_eq!(b.roll(t0 + w), Some(2));
        assert_eq!(b.roll(t0 + w * 2), None, "reported once");
        // A new window logs again from the start.
        let next = b.failure(t0 + w * 3);
        assert!(next.log);
        // A failure after an ended window carries that window's count.
        for i in 0..4 {
            b.failure(t0 + w * 3 + Duration::from_secs(i));
        }
        let late = b.failure(t0 + w * 5);
        assert_eq!(late.unlogged_in_closed_window, Some(2));
        assert!(late.log);
    }

    #[test]
    fn a_quiet_window_reports_nothing() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(3, Duration::from_secs(60));
        b.failure(t0);
        assert_eq!(b.roll(t0 + Duration::from_secs(61)), None);
    }
}
