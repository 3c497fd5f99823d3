//! The connected clients: who gets notifies, and which connections are IPC providers (cluster
//! connections that local tools are proxied through; newest first, as in Pacemaker).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc::UnboundedSender;
use tracing::debug;

use super::executor::{NotifySink, NotifyTarget};
use crate::wire::Element;

/// Where a client's outgoing messages go: its TLS session task, or the local IPC driver (which
/// delivers them to a libqb connection as events).
#[derive(Clone)]
pub enum Outbox {
    Remote(UnboundedSender<Element>),
    Local(UnboundedSender<(u64, Element)>, u64),
}

impl Outbox {
    fn send(&self, msg: Element) -> bool {
        match self {
            Outbox::Remote(tx) => tx.send(msg).is_ok(),
            Outbox::Local(tx, conn) => tx.send((*conn, msg)).is_ok(),
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
