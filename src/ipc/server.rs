//! libqb IPC servers driven by tokio on the current thread.
//!
//! libqb is single-threaded and reports everything through C callbacks without a user pointer
//! (poll handlers) or with libqb's own objects (service handlers). All state those callbacks
//! touch lives in one thread-local [`Registry`]; the callbacks only record what happened and the
//! async side ([`IpcServers::next_event`]) acts on it. Rule kept throughout: the registry is never
//! borrowed while calling into libqb, because libqb calls straight back.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, c_int, c_void};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

use super::ffi;
use super::{AcceptPolicy, ConnId, IpcError, IpcEvent, IpcTransport, Peer};

/// Queued sends per connection before a client that does not read is dropped.
const MAX_QUEUED_PER_CLIENT: usize = 1024;
/// How often sends that libqb refused (client buffer full) are retried.
const BACKLOG_RETRY: std::time::Duration = std::time::Duration::from_millis(50);
/// Descriptor dispatches per turn before yielding to other tasks.
const MAX_DISPATCH_PER_TURN: usize = 256;

struct FdWatch {
    events: i32,
    data: *mut c_void,
    dispatch: ffi::qb_ipcs_dispatch_fn_t,
}

struct Conn {
    id: ConnId,
    service: usize,
    /// Sends libqb refused with EAGAIN, retried every turn: (is_event, bytes).
    backlog: VecDeque<(bool, Vec<u8>)>,
}

#[derive(Default)]
struct Registry {
    active: bool,
    fds: HashMap<RawFd, FdWatch>,
    jobs: VecDeque<(*mut c_void, ffi::qb_loop_job_dispatch_fn)>,
    events: VecDeque<IpcEvent>,
    services: Vec<String>,
    /// libqb connection pointer (as an address) → our record.
    conns: HashMap<usize, Conn>,
    by_id: HashMap<ConnId, usize>,
    /// uid/gid seen at accept time, until the connection is created.
    accepted: HashMap<usize, (u32, u32)>,
    policy: Option<SharedPolicy>,
    next_id: u64,
}

type SharedPolicy = Rc<dyn Fn(&str, u32, u32) -> Result<(), i32>>;

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    REGISTRY.with(|r| f(&mut r.borrow_mut()))
}

/// The set of libqb services of this thread. Not `Send`: libqb must only be used from here.
pub struct IpcServers {
    services: Vec<*mut ffi::qb_ipcs_service>,
    /// Kept alive for libqb, which keeps pointers to them: boxed so they never move when the
    /// Vec grows.
    #[allow(clippy::vec_box)]
    _handlers: Vec<Box<ffi::qb_ipcs_service_handlers>>,
    poll_handlers: Box<ffi::qb_ipcs_poll_handlers>,
    /// tokio watches a duplicate of each libqb descriptor: ours to close, so a descriptor number
    /// libqb closes and the system reuses can never be deregistered by mistake.
    watchers: HashMap<RawFd, (i32, AsyncFd<OwnedFd>)>,
}

impl IpcServers {
    /// One instance per thread: libqb's poll callbacks cannot tell two apart.
    pub fn new(accept: AcceptPolicy) -> Result<IpcServers, IpcError> {
        let already = with(|r| std::mem::replace(&mut r.active, true));
        if already {
            return Err(IpcError::AlreadyActive);
        }
        with(|r| r.policy = Some(Rc::from(accept)));
        Ok(IpcServers {
            services: Vec::new(),
            _handlers: Vec::new(),
            poll_handlers: Box::new(ffi::qb_ipcs_poll_handlers {
                job_add: Some(cb_job_add),
                dispatch_add: Some(cb_dispatch_add),
                dispatch_mod: Some(cb_dispatch_mod),
                dispatch_del: Some(cb_dispatch_del),
            }),
            watchers: HashMap::new(),
        })
    }

    /// Creates and starts the service `name` (the abstract socket `@name` in this network namespace).
    pub fn add(
        &mut self,
        name: &str,
        transport: IpcTransport,
        buffer_size: usize,
    ) -> Result<(), IpcError> {
        let cname = CString::new(name).map_err(|_| IpcError::BadName(name.to_string()))?;
        let mut handlers = Box::new(ffi::qb_ipcs_service_handlers {
            connection_accept: Some(cb_accept),
            connection_created: Some(cb_created),
            msg_process: Some(cb_msg),
            connection_closed: Some(cb_closed),
            connection_destroyed: Some(cb_destroyed),
        });
        let kind = match transport {
            IpcTransport::SharedMemory => ffi::QB_IPC_SHM,
            IpcTransport::Socket => ffi::QB_IPC_SOCKET,
        };
        let index = with(|r| {
            r.services.push(name.to_string());
            r.services.len() - 1
        });
        // SAFETY: `cname` and `handlers` are valid for the call; libqb copies the name and keeps
        // the handler pointer, which `_handlers` keeps alive as long as the service exists.
        let service = unsafe { ffi::qb_ipcs_create(cname.as_ptr(), 0, kind, &mut *handlers) };
        if service.is_null() {
            return Err(IpcError::Create(
                name.to_string(),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: `service` is the live service just created; the poll handler struct is boxed
        // and owned by `self`, outliving the service (destroyed in Drop first). The context is
        // an index, never dereferenced.
        let rc = unsafe {
            ffi::qb_ipcs_poll_handlers_set(service, &mut *self.poll_handlers);
            ffi::qb_ipcs_service_context_set(service, index as *mut c_void);
            ffi::qb_ipcs_enforce_buffer_size(service, buffer_size.min(u32::MAX as usize) as u32);
            ffi::qb_ipcs_run(service)
        };
        if rc != 0 {
            // libqb releases a service whose start failed; destroying it again would abort.
            return Err(IpcError::Run(
                name.to_string(),
                std::io::Error::from_raw_os_error(-rc),
            ));
        }
        debug!(service = name, ?transport, "IPC server listening");
        self.services.push(service);
        self._handlers.push(handlers);
        Ok(())
    }

    /// Waits for the next connection, request or disconnect. Cancel-safe: everything that
    /// happened is queued in the registry and returned by a later call.
    pub async fn next_event(&mut self) -> IpcEvent {
        loop {
            if let Some(ev) = with(|r| r.events.pop_front()) {
                return ev;
            }
            let worked = self.run_jobs() | self.dispatch_ready() | self.flush_backlogs();
            if worked {
                tokio::task::yield_now().await;
                continue;
            }
            self.sync_watchers();
            self.wait_readiness().await;
        }
    }

    fn run_jobs(&mut self) -> bool {
        let mut ran = false;
        for _ in 0..MAX_DISPATCH_PER_TURN {
            let Some((data, job)) = with(|r| r.jobs.pop_front()) else {
                break;
            };
            if let Some(job) = job {
                // SAFETY: libqb handed us this function and its data to call once, on this thread.
                unsafe { job(data) };
                ran = true;
            }
        }
        ran
    }

    /// Level-triggered probe of every libqb descriptor, then libqb's handler for the ready ones.
    fn dispatch_ready(&mut self) -> bool {
        let watched: Vec<(RawFd, i32)> =
            with(|r| r.fds.iter().map(|(fd, w)| (*fd, w.events)).collect());
        if watched.is_empty() {
            return false;
        }
        // SAFETY (of the borrow): the descriptors stay open while registered with us; a stale
        // one is reported as POLLNVAL by poll(2) and skipped.
        let borrowed: Vec<BorrowedFd<'_>> = watched
            .iter()
            .map(|(fd, _)| unsafe { BorrowedFd::borrow_raw(*fd) })
            .collect();
        let mut pfds: Vec<PollFd<'_>> = borrowed
            .iter()
            .zip(&watched)
            .map(|(b, (_, ev))| PollFd::new(*b, PollFlags::from_bits_truncate(*ev as i16)))
            .collect();
        if poll(&mut pfds, PollTimeout::ZERO).unwrap_or(0) <= 0 {
            return false;
        }
        let ready: Vec<(RawFd, i32)> = pfds
            .iter()
            .zip(&watched)
            .filter_map(|(p, (fd, _))| {
                let rev = p.revents().unwrap_or(PollFlags::empty());
                (!rev.is_empty() && !rev.contains(PollFlags::POLLNVAL))
                    .then_some((*fd, i32::from(rev.bits())))
            })
            .collect();
        let mut any = false;
        for (fd, revents) in ready {
            // Re-read: an earlier dispatch in this loop may have removed or replaced it.
            let Some((data, dispatch)) = with(|r| r.fds.get(&fd).map(|w| (w.data, w.dispatch)))
            else {
                continue;
            };
            if let Some(dispatch) = dispatch {
                // SAFETY: the handler and data libqb registered for this fd, called on this thread.
                let rc = unsafe { dispatch(fd, revents, data) };
                if rc < 0 {
                    with(|r| r.fds.remove(&fd));
                }
                any = true;
            }
        }
        any
    }

    fn sync_watchers(&mut self) {
        let wanted: HashMap<RawFd, i32> =
            with(|r| r.fds.iter().map(|(fd, w)| (*fd, w.events)).collect());
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
            // SAFETY: `fd` is registered with us by libqb and so open right now.
            let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
            // SAFETY: the duplicate is owned by the AsyncFd and closed only after deregistration.
            let watch = dup.and_then(|d| {
                unsafe { AsyncFd::register_with_interest(d, interest) }
                    .map_err(std::io::Error::from)
            });
            match watch {
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
        let backlog = with(|r| r.conns.values().any(|c| !c.backlog.is_empty()));
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
        let pending: Vec<usize> = with(|r| {
            r.conns
                .iter()
                .filter(|(_, c)| !c.backlog.is_empty())
                .map(|(p, _)| *p)
                .collect()
        });
        let mut any = false;
        for ptr in pending {
            while let Some((is_event, bytes)) =
                with(|r| r.conns.get_mut(&ptr).and_then(|c| c.backlog.pop_front()))
            {
                match raw_send(ptr, is_event, &bytes) {
                    Ok(()) => any = true,
                    Err(SendError::Again) => {
                        with(|r| {
                            if let Some(c) = r.conns.get_mut(&ptr) {
                                c.backlog.push_front((is_event, bytes));
                            }
                        });
                        break;
                    }
                    Err(SendError::Failed(_)) => break,
                }
            }
        }
        any
    }

    pub fn send_response(&mut self, conn: ConnId, data: &[u8]) -> Result<(), IpcError> {
        self.send(conn, false, data)
    }

    pub fn send_event(&mut self, conn: ConnId, data: &[u8]) -> Result<(), IpcError> {
        self.send(conn, true, data)
    }

    fn send(&mut self, conn: ConnId, is_event: bool, data: &[u8]) -> Result<(), IpcError> {
        let Some((ptr, queued)) = with(|r| {
            let ptr = *r.by_id.get(&conn)?;
            Some((ptr, r.conns.get(&ptr).map(|c| c.backlog.len()).unwrap_or(0)))
        }) else {
            return Err(IpcError::NoSuchConnection(conn));
        };
        // Keep order: once something waits, everything after it waits too.
        let result = if queued > 0 {
            Err(SendError::Again)
        } else {
            raw_send(ptr, is_event, data)
        };
        match result {
            Ok(()) => Ok(()),
            Err(SendError::Again) if queued < MAX_QUEUED_PER_CLIENT => {
                with(|r| {
                    if let Some(c) = r.conns.get_mut(&ptr) {
                        c.backlog.push_back((is_event, data.to_vec()));
                    }
                });
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
            Err(SendError::Failed(e)) => Err(IpcError::Send(conn, e)),
        }
    }

    pub fn disconnect(&mut self, conn: ConnId) {
        if let Some(ptr) = with(|r| r.by_id.get(&conn).copied()) {
            // SAFETY: `ptr` is a connection libqb reported and has not closed yet (closed
            // connections are removed from the registry in the closed callback).
            unsafe { ffi::qb_ipcs_disconnect(ptr as *mut ffi::qb_ipcs_connection) };
        }
    }

    pub fn connections(&self) -> Vec<(ConnId, String)> {
        with(|r| {
            r.conns
                .values()
                .map(|c| (c.id, r.services.get(c.service).cloned().unwrap_or_default()))
                .collect()
        })
    }
}

impl Drop for IpcServers {
    fn drop(&mut self) {
        self.watchers.clear();
        for s in self.services.drain(..) {
            // SAFETY: each service was created by us and is destroyed once; libqb disconnects its
            // clients (calling back into the registry, which is not borrowed here).
            unsafe { ffi::qb_ipcs_destroy(s) };
        }
        with(|r| *r = Registry::default());
    }
}

enum SendError {
    Again,
    Failed(std::io::Error),
}

fn raw_send(ptr: usize, is_event: bool, data: &[u8]) -> Result<(), SendError> {
    let c = ptr as *mut ffi::qb_ipcs_connection;
    // SAFETY: `c` is a live connection (see `disconnect`); `data` is valid for its length.
    let rc = unsafe {
        if is_event {
            ffi::qb_ipcs_event_send(c, data.as_ptr().cast(), data.len())
        } else {
            ffi::qb_ipcs_response_send(c, data.as_ptr().cast(), data.len())
        }
    };
    match rc {
        n if n >= 0 => Ok(()),
        n if -n == nix::libc::EAGAIN as isize => Err(SendError::Again),
        n => Err(SendError::Failed(std::io::Error::from_raw_os_error(
            -n as i32,
        ))),
    }
}

// ----- callbacks from libqb: record and return; never unwind into C -------------------------

fn guarded<R>(default: R, f: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(default)
}

unsafe extern "C" fn cb_job_add(
    _prio: c_int,
    data: *mut c_void,
    f: ffi::qb_loop_job_dispatch_fn,
) -> i32 {
    guarded(-nix::libc::ENOMEM, || {
        with(|r| r.jobs.push_back((data, f)));
        0
    })
}

unsafe extern "C" fn cb_dispatch_add(
    _p: c_int,
    fd: i32,
    events: i32,
    data: *mut c_void,
    f: ffi::qb_ipcs_dispatch_fn_t,
) -> i32 {
    guarded(-nix::libc::ENOMEM, || {
        with(|r| {
            r.fds.insert(
                fd,
                FdWatch {
                    events,
                    data,
                    dispatch: f,
                },
            )
        });
        0
    })
}

unsafe extern "C" fn cb_dispatch_mod(
    p: c_int,
    fd: i32,
    events: i32,
    data: *mut c_void,
    f: ffi::qb_ipcs_dispatch_fn_t,
) -> i32 {
    // SAFETY: same contract as dispatch_add.
    unsafe { cb_dispatch_add(p, fd, events, data, f) }
}

unsafe extern "C" fn cb_dispatch_del(fd: i32) -> i32 {
    guarded(0, || {
        with(|r| r.fds.remove(&fd));
        0
    })
}

fn service_index(c: *mut ffi::qb_ipcs_connection) -> usize {
    // SAFETY: `c` comes from libqb inside one of its callbacks; the context is our index.
    unsafe { ffi::qb_ipcs_connection_service_context_get(c) as usize }
}

unsafe extern "C" fn cb_accept(c: *mut ffi::qb_ipcs_connection, uid: u32, gid: u32) -> i32 {
    guarded(-nix::libc::EACCES, || {
        let index = service_index(c);
        let (service, policy) = with(|r| {
            (
                r.services.get(index).cloned().unwrap_or_default(),
                r.policy.clone(),
            )
        });
        let verdict = policy.map(|p| p(&service, uid, gid)).unwrap_or(Ok(()));
        match verdict {
            Ok(()) => {
                with(|r| r.accepted.insert(c as usize, (uid, gid)));
                0
            }
            Err(errno) => -errno.abs(),
        }
    })
}

unsafe extern "C" fn cb_created(c: *mut ffi::qb_ipcs_connection) {
    guarded((), || {
        let mut stats = ffi::qb_ipcs_connection_stats::default();
        // SAFETY: `c` is the connection being created; `stats` is a valid out-parameter.
        let pid = if unsafe { ffi::qb_ipcs_connection_stats_get(c, &mut stats, 0) } == 0 {
            stats.client_pid.max(0) as u32
        } else {
            0
        };
        let service = service_index(c);
        with(|r| {
            let (uid, gid) = r
                .accepted
                .remove(&(c as usize))
                .unwrap_or((u32::MAX, u32::MAX));
            r.next_id += 1;
            let id = ConnId(r.next_id);
            r.conns.insert(
                c as usize,
                Conn {
                    id,
                    service,
                    backlog: VecDeque::new(),
                },
            );
            r.by_id.insert(id, c as usize);
            let name = r.services.get(service).cloned().unwrap_or_default();
            r.events.push_back(IpcEvent::Connected {
                service: name,
                conn: id,
                peer: Peer { pid, uid, gid },
            });
        });
    })
}

unsafe extern "C" fn cb_msg(
    c: *mut ffi::qb_ipcs_connection,
    data: *mut c_void,
    size: usize,
) -> i32 {
    guarded(0, || {
        // libqb takes `size` from the client's own header: never read past the connection's
        // buffer, whatever a misbehaving client claims.
        // SAFETY: `c` is the live connection this callback is for.
        let limit = unsafe { ffi::qb_ipcs_connection_get_buffer_size(c) }.max(0) as usize;
        let size = size.min(limit);
        let bytes = if data.is_null() || size == 0 {
            Vec::new()
        } else {
            // SAFETY: libqb's receive buffer holds at least `limit` >= `size` bytes for the call.
            unsafe { std::slice::from_raw_parts(data as *const u8, size) }.to_vec()
        };
        with(|r| {
            if let Some(conn) = r.conns.get(&(c as usize)) {
                let service = r.services.get(conn.service).cloned().unwrap_or_default();
                let ev = IpcEvent::Request {
                    service,
                    conn: conn.id,
                    data: bytes,
                };
                r.events.push_back(ev);
            }
        });
        0
    })
}

unsafe extern "C" fn cb_closed(c: *mut ffi::qb_ipcs_connection) -> i32 {
    guarded(0, || {
        with(|r| {
            r.accepted.remove(&(c as usize));
            if let Some(conn) = r.conns.remove(&(c as usize)) {
                r.by_id.remove(&conn.id);
                let service = r.services.get(conn.service).cloned().unwrap_or_default();
                r.events.push_back(IpcEvent::Closed {
                    service,
                    conn: conn.id,
                });
            }
        });
        0
    })
}

unsafe extern "C" fn cb_destroyed(_c: *mut ffi::qb_ipcs_connection) {}
