//! All of kubemaker's `unsafe` for libqb's server side, behind a safe [`Services`] type: the
//! services, the connections, and the C callbacks libqb calls. The tokio driver above it
//! (`server.rs`) has none.
//!
//! libqb is single-threaded and reports everything through C callbacks, without a user pointer
//! (poll handlers) or with libqb's own objects (service handlers). All state those callbacks touch
//! lives in one thread-local [`Registry`]; the callbacks only record what happened and return.
//!
//! Ownership rules that make this sound:
//! - [`Services`] owns each `qb_ipcs_service` and destroys it once, in `Drop`, before the boxed
//!   handler tables libqb points into are freed. One `Services` per thread (libqb's poll
//!   callbacks cannot tell two apart); it is not `Send`.
//! - Connection pointers belong to libqb. The registry holds one from `connection_created` until
//!   `connection_closed`; every call that takes a connection looks it up there by [`ConnId`]
//!   first, so a closed connection is never passed back to libqb.
//! - Descriptors belong to libqb: they are borrowed only for a zero-timeout `poll` while libqb has
//!   them registered; tokio watches duplicates that we own ([`watch`]).
//! - Jobs and dispatch functions are (function, data) pairs libqb handed us to call on this thread.
//! - The registry is never borrowed while calling into libqb, because libqb calls straight back;
//!   callbacks never unwind into C (panics are caught and become an error return).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, c_int, c_void};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tracing::debug;

use super::error::IpcError;
use super::ffi;
use super::types::{AcceptPolicy, ConnId, IpcEvent, IpcTransport, Peer};

struct FdWatch {
    events: i32,
    data: *mut c_void,
    dispatch: ffi::qb_ipcs_dispatch_fn_t,
}

struct Conn {
    id: ConnId,
    service: usize,
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

/// Why libqb did not take a message.
pub(super) enum SendError {
    /// The client's buffer is full: try again later.
    Again,
    /// No such connection (closed, or never ours).
    Gone,
    Failed(std::io::Error),
}

/// The libqb services of this thread.
pub(super) struct Services {
    services: Vec<*mut ffi::qb_ipcs_service>,
    /// Kept alive for libqb, which keeps pointers to them: boxed so they never move when the
    /// Vec grows.
    #[allow(clippy::vec_box)]
    handlers: Vec<Box<ffi::qb_ipcs_service_handlers>>,
    poll_handlers: Box<ffi::qb_ipcs_poll_handlers>,
}

impl Services {
    /// One instance per thread, or [`IpcError::AlreadyActive`].
    pub(super) fn new(accept: AcceptPolicy) -> Result<Services, IpcError> {
        let already = with(|r| std::mem::replace(&mut r.active, true));
        if already {
            return Err(IpcError::AlreadyActive);
        }
        with(|r| r.policy = Some(Rc::from(accept)));
        Ok(Services {
            services: Vec::new(),
            handlers: Vec::new(),
            poll_handlers: Box::new(ffi::qb_ipcs_poll_handlers {
                job_add: Some(cb_job_add),
                dispatch_add: Some(cb_dispatch_add),
                dispatch_mod: Some(cb_dispatch_mod),
                dispatch_del: Some(cb_dispatch_del),
            }),
        })
    }

    /// Creates and starts the service `name` (the abstract socket `@name` in this network namespace).
    pub(super) fn add(
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
        // the handler pointer, which `self.handlers` keeps alive as long as the service exists.
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
        self.handlers.push(handlers);
        Ok(())
    }

    /// The oldest connection, request or disconnect the callbacks recorded.
    pub(super) fn next_event(&mut self) -> Option<IpcEvent> {
        with(|r| r.events.pop_front())
    }

    /// Runs up to `limit` jobs libqb queued; whether any ran.
    pub(super) fn run_jobs(&mut self, limit: usize) -> bool {
        let mut ran = false;
        for _ in 0..limit {
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

    /// The descriptors libqb wants watched, with its poll(2) event mask for each.
    pub(super) fn watched(&self) -> HashMap<RawFd, i32> {
        with(|r| r.fds.iter().map(|(fd, w)| (*fd, w.events)).collect())
    }

    /// Level-triggered probe of every libqb descriptor, then libqb's handler for the ready ones;
    /// whether any handler ran.
    pub(super) fn dispatch_ready(&mut self) -> bool {
        let watched: Vec<(RawFd, i32)> = self.watched().into_iter().collect();
        if watched.is_empty() {
            return false;
        }
        // SAFETY (of the borrow): the descriptors stay open while libqb has them registered with
        // us; a stale one is reported as POLLNVAL by poll(2) and skipped.
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

    pub(super) fn is_open(&self, conn: ConnId) -> bool {
        with(|r| r.by_id.contains_key(&conn))
    }

    /// A response (`is_event` false) or an event for one connection.
    pub(super) fn send(
        &mut self,
        conn: ConnId,
        is_event: bool,
        data: &[u8],
    ) -> Result<(), SendError> {
        let Some(ptr) = with(|r| r.by_id.get(&conn).copied()) else {
            return Err(SendError::Gone);
        };
        let c = ptr as *mut ffi::qb_ipcs_connection;
        // SAFETY: `c` is open (it is in the registry until libqb reports it closed); `data` is
        // valid for its length.
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

    /// Asks libqb to close a connection; its closed callback then records the disconnect.
    pub(super) fn disconnect(&mut self, conn: ConnId) {
        if let Some(ptr) = with(|r| r.by_id.get(&conn).copied()) {
            // SAFETY: `ptr` is a connection libqb reported and has not closed yet (closed
            // connections are removed from the registry in the closed callback).
            unsafe { ffi::qb_ipcs_disconnect(ptr as *mut ffi::qb_ipcs_connection) };
        }
    }

    pub(super) fn connections(&self) -> Vec<(ConnId, String)> {
        with(|r| {
            r.conns
                .values()
                .map(|c| (c.id, r.services.get(c.service).cloned().unwrap_or_default()))
                .collect()
        })
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for s in self.services.drain(..) {
            // SAFETY: each service was created by us and is destroyed once; libqb disconnects its
            // clients (calling back into the registry, which is not borrowed here).
            unsafe { ffi::qb_ipcs_destroy(s) };
        }
        with(|r| *r = Registry::default());
    }
}

/// Registers a duplicate of libqb's descriptor `fd` with tokio: ours to close, so a descriptor
/// number libqb closes and the system reuses can never be deregistered by mistake.
pub(super) fn watch(fd: RawFd, interest: Interest) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is registered with us by libqb and so open right now.
    let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    // SAFETY: the duplicate is owned by the AsyncFd and closed only after deregistration.
    unsafe { AsyncFd::register_with_interest(dup, interest) }.map_err(std::io::Error::from)
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
            r.conns.insert(c as usize, Conn { id, service });
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
