//! Graceful stop, as fixed in Pacemaker 2.1.6: on SIGTERM with a cluster connected, ask the
//! cluster to move our resources away (`shutdown_req`), stop listening, and exit only once it
//! has acknowledged and disconnected (or refused, or not answered in time).

use std::time::{Duration, Instant};

use tracing::info;

/// Events that drive the daemon's life cycle, sent from sessions and handlers to the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    ShutdownAck,
    ShutdownNack,
    ClientGone {
        remaining_providers: usize,
    },
    /// Unsafe to continue (watchdog fencing configured without sbd).
    Fatal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    AwaitingAck { deadline: Instant },
    AwaitingDisconnect,
}

/// What the main loop must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Send `shutdown_req` and close the listener.
    RequestShutdown,
    Exit(i32),
}

/// `CRM_EX_FATAL`: do not respawn.
pub const EXIT_FATAL: i32 = 100;

/// The shutdown state machine, kept free of I/O so every path is unit-tested.
pub struct Shutdown {
    pub phase: Phase,
    ack_timeout: Duration,
}

impl Shutdown {
    pub fn new(ack_timeout: Duration) -> Shutdown {
        Shutdown {
            phase: Phase::Serving,
            ack_timeout,
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.phase != Phase::Serving
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingAck { deadline } => Some(deadline),
            _ => None,
        }
    }

    pub fn on_sigterm(&mut self, providers: usize, now: Instant) -> Action {
        match self.phase {
            Phase::Serving if providers == 0 => {
                info!("No cluster connection; exiting now");
                Action::Exit(0)
            }
            Phase::Serving => {
                info!("Sending shutdown request to cluster");
                self.phase = Phase::AwaitingAck {
                    deadline: now + self.ack_timeout,
                };
                Action::RequestShutdown
            }
            _ => {
                info!("Waiting for cluster to stop resources before exiting");
                Action::Continue
            }
        }
    }

    pub fn on_control(&mut self, c: Control) -> Action {
        match (c, self.phase) {
            (Control::Fatal, _) => Action::Exit(EXIT_FATAL),
            (Control::ShutdownAck, Phase::AwaitingAck { .. }) => {
                self.phase = Phase::AwaitingDisconnect;
                Action::Continue
            }
            (Control::ShutdownNack, Phase::AwaitingAck { .. } | Phase::AwaitingDisconnect) => {
                Action::Exit(0)
            }
            (
                Control::ClientGone {
                    remaining_providers: 0,
                },
                Phase::AwaitingAck { .. } | Phase::AwaitingDisconnect,
            ) => {
                info!("Cluster disconnected; exiting");
                Action::Exit(0)
            }
            _ => Action::Continue,
        }
    }

    pub fn on_deadline(&mut self) -> Action {
        match self.phase {
            Phase::AwaitingAck { .. } => {
                info!("No answer from the cluster to the shutdown request; exiting");
                Action::Exit(0)
            }
            _ => Action::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm() -> Shutdown {
        Shutdown::new(Duration::from_secs(20))
    }

    #[test]
    fn no_cluster_means_exit_now() {
        assert_eq!(sm().on_sigterm(0, Instant::now()), Action::Exit(0));
    }

    #[test]
    fn ack_then_disconnect() {
        let mut s = sm();
        assert_eq!(s.on_sigterm(1, Instant::now()), Action::RequestShutdown);
        assert_eq!(
            s.on_sigterm(1, Instant::now()),
            Action::Continue,
            "a second SIGTERM only logs"
        );
        assert_eq!(s.on_control(Control::ShutdownAck), Action::Continue);
        assert_eq!(
            s.on_deadline(),
            Action::Continue,
            "the timer is cancelled by the ack"
        );
        assert_eq!(
            s.on_control(Control::ClientGone {
                remaining_providers: 1
            }),
            Action::Continue
        );
        assert_eq!(
            s.on_control(Control::ClientGone {
                remaining_providers: 0
            }),
            Action::Exit(0)
        );
    }

    #[test]
    fn nack_or_timeout_exits() {
        let mut s = sm();
        s.on_sigterm(1, Instant::now());
        assert_eq!(s.on_control(Control::ShutdownNack), Action::Exit(0));
        let mut s = sm();
        s.on_sigterm(1, Instant::now());
        assert_eq!(s.on_deadline(), Action::Exit(0));
    }

    #[test]
    fn stray_ack_while_serving_is_ignored() {
        let mut s = sm();
        assert_eq!(s.on_control(Control::ShutdownAck), Action::Continue);
        assert_eq!(
            s.on_control(Control::ClientGone {
                remaining_providers: 0
            }),
            Action::Continue
        );
        assert!(!s.shutting_down());
        assert_eq!(s.on_control(Control::Fatal), Action::Exit(EXIT_FATAL));
    }
}
