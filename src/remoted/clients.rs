//! The connected clients: who gets notifies, and which connections are IPC providers (cluster
//! connections that local tools are proxied through; newest first, as in Pacemaker).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::sync::mpsc::{self, UnboundedSender, error::TrySendError};
use tracing::debug;

use super::executor::{NotifySink, NotifyTarget};
use crate::wire::Element;

/// Where a client's outgoing messages go: its TLS session task, or the local IPC driver (which
/// delivers them to a libqb connection as events).
#[derive(Clone)]
pub enum Outbox {
    Remote(RemoteOutbox),
    Local(UnboundedSender<(u64, Element)>, u64),
}

impl Outbox {
    fn send(&self, msg: Element) -> bool {
        match self {
            Outbox::Remote(outbox) => outbox.push(msg),
            Outbox::Local(tx, conn) => tx.send((*conn, msg)).is_ok(),
        }
    }
}

/// Messages a remote connection may have queued and not yet written. A peer that stops reading
/// blocks the session's writes; without a bound, notifies would pile up in memory for as long as
/// the peer stays. At the bound the client is stalled and its session ends the connection.
pub const MAX_QUEUED_MESSAGES: usize = 4096;

/// A remote connection's queue of outgoing messages, bounded (see [`MAX_QUEUED_MESSAGES`]).
#[derive(Clone)]
pub struct RemoteOutbox {
    tx: mpsc::Sender<Element>,
    stalled: Arc<Notify>,
}

impl RemoteOutbox {
    /// The queue, its receiving end for the session, and the signal the session waits on: raised
    /// when a message found the queue full.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Element>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity);
        let stalled = Arc::new(Notify::new());
        let outbox = Self {
            tx,
            stalled: Arc::clone(&stalled),
        };
        (outbox, rx, stalled)
    }

    /// Queues `msg`; false when the connection is gone or its queue is full (then the session
    /// is told to end it).
    pub fn push(&self, msg: Element) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.stalled.notify_one();
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

struct Client {
    /// Set by the first request carrying `lrmd_clientname` (the register). Unnamed clients get no notifies.
    name: Option<String>,
    tx: Outbox,
}

#[derive(Default)]
pub struct Clients {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<String, Client>,
    /// Newest first.
    providers: Vec<String>,
}

/// What removing a client left behind.
pub struct Departure {
    pub was_provider: bool,
    pub remaining_clients: usize,
    pub remaining_providers: usize,
}

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a client whose TLS handshake just completed, and tells every other named client
    /// (`lrmd_rsc_new_client`): the cluster's old connection uses it to detect a takeover.
    pub fn add(&self, id: &str, tx: Outbox) {
        let mut g = self.lock();
        let notice = Element::new("lrmd_notify")
            .with_attr("lrmd_origin", "notify_of_new_client")
            .with_attr("lrmd_op", "lrmd_rsc_new_client");
        for (other_id, c) in g.clients.iter() {
            if other_id != id && c.name.is_some() {
                let _ = c.tx.send(notice.clone());
            }
        }
        g.clients.insert(id.to_string(), Client { name: None, tx });
    }

    pub fn set_name_if_unset(&self, id: &str, name: &str) {
        if let Some(c) = self.lock().clients.get_mut(id)
            && c.name.is_none()
        {
            c.name = Some(name.to_string());
        }
    }

    pub fn name(&self, id: &str) -> Option<String> {
        self.lock().clients.get(id).and_then(|c| c.name.clone())
    }

    pub fn add_provider(&self, id: &str) {
        let mut g = self.lock();
        g.providers.retain(|p| p != id);
        g.providers.insert(0, id.to_string());
    }

    pub fn newest_provider(&self) -> Option<String> {
        self.lock().providers.first().cloned()
    }

    pub fn provider_count(&self) -> usize {
        self.lock().providers.len()
    }

    pub fn count(&self) -> usize {
        self.lock().clients.len()
    }

    pub fn remove(&self, id: &str) -> Departure {
        let mut g = self.lock();
        g.clients.remove(id);
        let before = g.providers.len();
        g.providers.retain(|p| p != id);
        Departure {
            was_provider: g.providers.len() != before,
            remaining_clients: g.clients.len(),
            remaining_providers: g.providers.len(),
        }
    }

    /// Queues a message for one client; false when it is gone.
    pub fn send(&self, id: &str, msg: Element) -> bool {
        match self.lock().clients.get(id) {
            Some(c) => c.tx.send(msg),
            None => false,
        }
    }

    /// Queues a message for every named client.
    pub fn broadcast(&self, msg: &Element) {
        let g = self.lock();
        for (id, c) in g.clients.iter() {
            if c.name.is_some() && !c.tx.send(msg.clone()) {
                debug!(client = %id, "Client went away before a notify could be queued");
            }
        }
    }
}

impl NotifySink for Clients {
    fn notify(&self, target: NotifyTarget, msg: Element) {
        match target {
            NotifyTarget::All => self.broadcast(&msg),
            NotifyTarget::Client(id) => {
                self.send(&id, msg);
            }
        }
    }
}
