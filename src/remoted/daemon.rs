//! The state every connection shares: the client registry, the executor and the id counters.
//! The TLS server is the listener's (`listener::Handshake`). Ways to the other subsystems
//! (shutdown control, local IPC) are not here: handlers return effects and `routing::Routes`
//! delivers them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use super::clients::Clients;
use super::executor::Executor;

pub struct Daemon {
    pub clients: Arc<Clients>,
    pub executor: Executor,
    pub max_message: u32,
    /// Reported as `uptime` on register: Pacemaker 2.1.6+ keeps a remote node's transient
    /// attributes over a reconnect when the daemon has been up since before the link dropped.
    pub started: Instant,
    /// `PCMK_node_start_state`, reported on register (Pacemaker 2.1.7+ applies it).
    pub node_start_state: Option<String>,
    call_id: AtomicI64,
    msg_id: AtomicU64,
}

impl Daemon {
    pub fn new(clients: Arc<Clients>, executor: Executor, max_message: u32) -> Daemon {
        Daemon {
            clients,
            executor,
            max_message,
            started: Instant::now(),
            node_start_state: None,
            call_id: AtomicI64::new(0),
            msg_id: AtomicU64::new(0),
        }
    }

    /// Server-assigned call id, one per request, wrapping to 1 like Pacemaker's.
    pub fn next_call_id(&self) -> i64 {
        let mut id = self.call_id.fetch_add(1, Ordering::Relaxed) + 1;
        if id <= 0 || id > i64::from(i32::MAX) {
            self.call_id.store(1, Ordering::Relaxed);
            id = 1;
        }
        id
    }

    /// Header id: a per-process counter over all connections (nobody reads it).
    pub fn next_msg_id(&self) -> u64 {
        self.msg_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}
