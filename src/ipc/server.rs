//! libqb IPC servers driven by tokio on the current thread: the safe layer over `service.rs`.
//!
//! [`IpcServers::next_event`] runs libqb's queued jobs, lets libqb handle its ready descriptors,
//! retries sends libqb refused for lack of room, and otherwise sleeps until tokio sees one of
//! libqb's descriptors become ready. What libqb reported comes back as [`IpcEvent`]s.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::os::fd::{OwnedFd, RawFd};

use nix::poll::PollFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tracing::warn;

use super::error::IpcError;
use super::service::{self, SendError, Services};
use super::types::{AcceptPolicy, ConnId, IpcEvent, IpcTransport};

/// Queued sends per connection before a client that does not read is dropped.
const MAX_QUEUED_PER_CLIENT: usize = 1024;
/// How often sends that libqb refused (client buffer full) are retried.
const BACKLOG_RETRY: std::time::Duration = std::time::Duration::from_millis(50);
/// Descriptor dispatches per turn before yielding to other tasks.
const MAX_DISPATCH_PER_TURN: usize = 256;

/// The set of libqb services of this thread. Not `Send`: libqb must only be used from here.
pub struct IpcServers {
    services: Services,
    /// tokio's watch on a duplicate of each libqb descriptor, with the event mask it was made for.
    watchers: HashMap<RawFd, (i32, AsyncFd<OwnedFd>)>,
    /// Sends libqb refused with EAGAIN, per connection, retried every turn: (is_event, bytes).
    backlogs: HashMap<ConnId, VecDeque<(bool, Vec<u8>)>>,
}

impl IpcServers {
    /// One instance per thread: libqb's poll callbacks cannot tell two apart.
    pub fn new(accept: AcceptPolicy) -> Result<IpcServers, IpcError> {
        Ok(IpcServers {
            services: Services::new(accept)?,
            watchers: HashMap::new(),
            backlogs: HashMap::new(),
        })
    }

    /// Creates and starts the service `name` (the abstract socket `@name` in this network namespace).
    pub fn add(
        &mut self,
        name: &str,
        transport: IpcTransport,
        buffer_size: usize,
    ) -> Result<(), IpcError> {
        self.services.add(name, transport, buffer_size)
    }

    /// Waits for the next connection, request or disconnect. Cancel-safe: everything that
    /// happened is queued by the callbacks and returned by a later call.
    pub async fn next_event(&mut self) -> IpcEvent {
        loop {
            if let Some(ev) = self.services.next_event() {
                if let IpcEvent::Closed { conn, .. } = &ev {
                    self.backlogs.remove(conn);
                }
                return ev;
            }
            let worked = self.services.run_jobs(MAX_DISPATCH_PER_TURN)
                | self.services.dispatch_ready()
                | self.flush_backlogs();
            if worked {
                tokio::task::yield_now().await;
                continue;
            }
            self.sync_watchers();
            self.wait_readiness().await;
        }
    }

    fn sync_watchers(&mut self) {
        let wanted = self.services.watched();
        self.watchers
            .retain(|fd, (ev, _)| wanted.get(fd) == Some(ev));
        for (fd, events) in wanted {
            if self.watchers.contains_key(&fd) {
                continue;
            }
            let interest = if events & i32::from(PollFlags::POLLOUT.bits()) != 0 {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match service::watch(fd, interest) {
                Ok(w) => {
                    self.watchers.insert(fd, (events, w));
                }
                Err(e) => warn!(fd, error = %e, "Cannot watch an IPC descriptor"),
            }
        }
    }

    /// Sleeps until tokio sees any watched descriptor become ready (a wake-up hint only: the
    /// level-triggered probe decides what to dispatch).
    async fn wait_readiness(&mut self) {
        // Sends libqb refused for lack of room are retried on a short timer: nothing else
        // would wake us for them.
        let backlog = self.backlogs.values().any(|b| !b.is_empty());
        let retry = async {
            if backlog {
                tokio::time::sleep(BACKLOG_RETRY).await
            } else {
                std::future::pending().await
            }
        };
        if self.watchers.is_empty() {
            return retry.await;
        }
        tokio::select! {
            _ = retry => {}
            _ = self.wait_descriptors() => {}
        }
    }

    async fn wait_descriptors(&self) {
        std::future::poll_fn(|cx| {
            let mut ready = false;
            for (_, w) in self.watchers.values() {
                if let std::task::Poll::Ready(Ok(mut g)) = w.poll_read_ready(cx) {
                    g.clear_ready();
                    ready = true;
                }
                if let std::task::Poll::Ready(Ok(mut g)) = w.poll_write_ready(cx) {
                    g.clear_ready();
                    ready = true;
                }
            }
            if ready {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    fn flush_backlogs(&mut self) -> bool {
        let mut any = false;
        for (conn, backlog) in self.backlogs.iter_mut() {
            while let Some((is_event, bytes)) = backlog.pop_front() {
                match self.services.send(*conn, is_event, &bytes) {
                    Ok(()) => any = true,
                    Err(SendError::Again) => {
                        backlog.push_front((is_event, bytes));
                        break;
                    }
                    // Gone: the rest goes with it. Failed: as before, that message is dropped
                    // and the rest waits for the next turn.
                    Err(SendError::Gone) => backlog.clear(),
                    Err(SendError::Failed(_)) => break,
                }
            }
        }
        self.backlogs.retain(|_, b| !b.is_empty());
        any
    }

    pub fn send_response(&mut self, conn: ConnId, data: &[u8]) -> Result<(), IpcError> {
        self.send(conn, false, data)
    }

    pub fn send_event(&mut self, conn: ConnId, data: &[u8]) -> Result<(), IpcError> {
        self.send(conn, true, data)
    }

    fn send(&mut self, conn: ConnId, is_event: bool, data: &[u8]) -> Result<(), IpcError> {
        if !self.services.is_open(conn) {
            return Err(IpcError::NoSuchConnection(conn));
        }
        let queued = self.backlogs.get(&conn).map_or(0, VecDeque::len);
        // Keep order: once something waits, everything after it waits too.
        let result = if queued > 0 {
            Err(SendError::Again)
        } else {
            self.services.send(conn, is_event, data)
        };
        match result {
            Ok(()) => Ok(()),
            Err(SendError::Again) if queued < MAX_QUEUED_PER_CLIENT => {
                self.backlogs
                    .entry(conn)
                    .or_default()
                    .push_back((is_event, data.to_vec()));
                Ok(())
            }
            Err(SendError::Again) => {
                warn!(conn = %conn, "Local IPC client is not reading its messages; disconnecting it");
                self.disconnect(conn);
                Err(IpcError::Send(
                    conn,
                    std::io::Error::from_raw_os_error(nix::libc::EAGAIN),
                ))
            }
            Err(SendError::Gone) => Err(IpcError::NoSuchConnection(conn)),
            Err(SendError::Failed(e)) => Err(IpcError::Send(conn, e)),
        }
    }

    pub fn disconnect(&mut self, conn: ConnId) {
        self.services.disconnect(conn);
    }

    pub fn connections(&self) -> Vec<(ConnId, String)> {
        self.services.connections()
    }
}

impl Drop for IpcServers {
    fn drop(&mut self) {
        // Stop watching libqb's descriptors before the services (and their descriptors) go.
        self.watchers.clear();
    }
}
