//! The executor: the resource table and the rules Pacemaker's controller depends on.
//!
//! - one operation at a time per resource (FIFO), resources in parallel;
//! - `start_delay`, recurring operations (re-run `interval` after each completion), and
//!   `notify_changes_only` (notify the first result, then only changes);
//! - duplicate recurring operations are merged; `stop` cancels the resource's recurring ops;
//! - cancel, unregister while busy (`-EINPROGRESS`, pending ops finish as cancelled+deleted);
//! - recurring ops of drop-recurring resources end when the last client goes.
//!
//! It knows nothing of connections: results leave through a [`NotifySink`].

mod notify;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use super::agents::{self, ActionRequest, ActionResult, AgentPaths, AgentSpec, exec_status};
use crate::wire::Element;
pub use notify::{NotifySink, NotifyTarget};

/// Negative errno values used in replies.
pub mod rc {
    pub const ENODEV: i32 = -19;
    pub const EINVAL: i32 = -22;
    pub const EOPNOTSUPP: i32 = -95;
    pub const EINPROGRESS: i32 = -115;
}

/// `enum lrmd_call_options` bits.
pub mod callopt {
    pub const NOTIFY_ORIG_ONLY: i64 = 0x2;
    /// Intentionally overlaps NOTIFY_ORIG_ONLY, as in Pacemaker; tested with "all bits set".
    pub const DROP_RECURRING: i64 = 0x3;
    pub const NOTIFY_CHANGES_ONLY: i64 = 0x4;
}

/// An `lrmd_rsc_exec` request, already validated by the request layer.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub call_id: i64,
    pub client_id: String,
    pub rsc_id: String,
    pub action: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_delay_ms: u64,
    pub call_opts: i64,
    pub userdata: Option<String>,
    /// The request's `<attributes>` element, echoed unchanged in every notify (the cluster
    /// computes its parameter digests from it).
    pub params_xml: Option<Element>,
}

/// A recurring operation as listed by `lrmd_get_recurring`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurringOp {
    pub action: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Clone)]
pub struct Executor {
    shared: Arc<Shared>,
}

struct Shared {
    paths: AgentPaths,
    sink: Arc<dyn NotifySink>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    resources: HashMap<String, Resource>,
    ops: HashMap<u64, Op>,
    next_key: u64,
}

struct Resource {
    spec: AgentSpec,
    call_opts: i64,
    /// Ready to run, in arrival order.
    queue: VecDeque<u64>,
    active: Option<u64>,
    /// Every op of this resource that is not finished: delayed, queued, running or sleeping.
    ops: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Delayed,
    Queued,
    Running,
    /// A recurring op waiting out its interval.
    Sleeping,
}

struct Op {
    req: ExecRequest,
    phase: Phase,
    timer: Option<AbortHandle>,
    pgid: Option<i32>,
    cancel_requested: bool,
    rsc_deleted: bool,
    first_notify_sent: bool,
    last_notified: Option<(i32, i32)>,
    last_rc: i32,
    rcchange_epoch: u64,
    run_epoch: u64,
    queued_at: Instant,
    started_at: Option<Instant>,
}

impl Executor {
    pub fn new(paths: AgentPaths, sink: Arc<dyn NotifySink>) -> Executor {
        Executor {
            shared: Arc::new(Shared {
                paths,
                sink,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the executor down with a poisoned lock.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `lrmd_rsc_register`: identical re-registration is a no-op; a different agent replaces.
    pub fn register(&self, rsc_id: &str, spec: AgentSpec, call_opts: i64) -> i32 {
        let mut st = self.lock();
        if let Some(existing) = st.resources.get_mut(rsc_id) {
            if existing.spec == spec {
                debug!(rsc = rsc_id, "Ignoring duplicate registration");
                existing.call_opts = call_opts;
                return 0;
            }
            info!(rsc = rsc_id, "Re-registering with a different agent");
            self.drop_resource(&mut st, rsc_id);
        }
        info!(rsc = rsc_id, class = %spec.class, provider = spec.provider.as_deref().unwrap_or(""), agent = %spec.agent_type, "Resource registered");
        st.resources.insert(
            rsc_id.to_string(),
            Resource {
                spec,
                call_opts,
                queue: VecDeque::new(),
                active: None,
                ops: Vec::new(),
            },
        );
        0
    }

    pub fn info(&self, rsc_id: &str) -> Option<AgentSpec> {
        self.lock().resources.get(rsc_id).map(|r| r.spec.clone())
    }

    pub fn resource_count(&self) -> usize {
        self.lock().resources.len()
    }

    /// `lrmd_rsc_unregister`: 0, or `-EINPROGRESS` when an op is running (removed anyway).
    pub fn unregister(&self, rsc_id: &str) -> i32 {
        let mut st = self.lock();
        if !st.resources.contains_key(rsc_id) {
            return 0;
        }
        let busy = self.drop_resource(&mut st, rsc_id);
        info!(rsc = rsc_id, busy, "Resource unregistered");
        if busy { rc::EINPROGRESS } else { 0 }
    }

    /// Removes a resource: its waiting ops finish as cancelled and deleted; a running op is left
    /// to finish and is then reported as deleted. Returns whether an op was running.
    fn drop_resource(&self, st: &mut State, rsc_id: &str) -> bool {
        let Some(rsc) = st.resources.remove(rsc_id) else {
            return false;
        };
        let mut busy = false;
        for key in rsc.ops {
            let Some(op) = st.ops.get_mut(&key) else {
                continue;
            };
            op.rsc_deleted = true;
            if op.phase == Phase::Running {
                busy = true;
                continue;
            }
            if let Some(mut op) = st.ops.remove(&key) {
                abort_timer(&mut op);
                self.send_cancelled(&op);
            }
        }
        busy
    }

    /// `lrmd_rsc_exec`: returns the call id, or a negative errno.
    pub fn exec(&self, req: ExecRequest) -> i64 {
        let mut st = self.lock();
        if !st.resources.contains_key(&req.rsc_id) {
            return i64::from(rc::ENODEV);
        }
        let call_id = req.call_id;
        if req.action == "stop" {
            self.cancel_all_recurring(&mut st, &req.rsc_id);
        }
        if req.interval_ms > 0 && self.merge_duplicate(&mut st, &req) {
            return call_id;
        }
        let key = st.next_key;
        st.next_key += 1;
        let delayed = req.start_delay_ms > 0;
        let delay = Duration::from_millis(req.start_delay_ms);
        let rsc_id = req.rsc_id.clone();
        st.ops.insert(
            key,
            Op {
                req,
                phase: if delayed {
                    Phase::Delayed
                } else {
                    Phase::Queued
                },
                timer: None,
                pgid: None,
                cancel_requested: false,
                rsc_deleted: false,
                first_notify_sent: false,
                last_notified: None,
                last_rc: 0,
                rcchange_epoch: 0,
                run_epoch: 0,
                queued_at: Instant::now(),
                started_at: None,
            },
        );
        let Some(rsc) = st.resources.get_mut(&rsc_id) else {
            return i64::from(rc::ENODEV);
        };
        rsc.ops.push(key);
        if delayed {
            let timer = self.schedule(key, delay);
            if let Some(op) = st.ops.get_mut(&key) {
                op.timer = Some(timer);
            }
        } else {
            rsc.queue.push_back(key);
            self.run_next(&mut st, &rsc_id);
        }
        call_id
    }

    /// A recurring op with the same action and interval takes over the new call id and
    /// userdata; if it was waiting out its interval it runs now.
    fn merge_duplicate(&self, st: &mut State, req: &ExecRequest) -> bool {
        let Some(rsc) = st.resources.get(&req.rsc_id) else {
            return false;
        };
        let dup = rsc.ops.iter().copied().find(|k| {
            st.ops.get(k).is_some_and(|op| {
                !op.cancel_requested
                    && op.req.action == req.action
                    && op.req.interval_ms == req.interval_ms
            })
        });
        let Some(key) = dup else { return false };
        let Some(op) = st.ops.get_mut(&key) else {
            return false;
        };
        debug!(rsc = %req.rsc_id, action = %req.action, interval = req.interval_ms, "Merging duplicate recurring op");
        op.req.call_id = req.call_id;
        op.req.userdata = req.userdata.clone();
        op.req.client_id = req.client_id.clone();
        op.first_notify_sent = false;
        if op.phase == Phase::Sleeping {
            abort_timer(op);
            op.phase = Phase::Queued;
            op.queued_at = Instant::now();
            if let Some(rsc) = st.resources.get_mut(&req.rsc_id) {
                rsc.queue.push_back(key);
            }
            let rsc_id = req.rsc_id.clone();
            self.run_next(st, &rsc_id);
        }
        true
    }

    /// `lrmd_rsc_cancel`.
    pub fn cancel(&self, rsc_id: &str, action: &str, interval_ms: u64) -> i32 {
        let mut st = self.lock();
        let Some(rsc) = st.resources.get(rsc_id) else {
            return rc::ENODEV;
        };
        let found = rsc.ops.iter().copied().find(|k| {
            st.ops.get(k).is_some_and(|op| {
                !op.cancel_requested && op.req.action == action && op.req.interval_ms == interval_ms
            })
        });
        match found {
            Some(key) => {
                self.cancel_op(&mut st, rsc_id, key);
                0
            }
            None => rc::EOPNOTSUPP,
        }
    }

    fn cancel_all_recurring(&self, st: &mut State, rsc_id: &str) {
        let Some(rsc) = st.resources.get(rsc_id) else {
            return;
        };
        let keys: Vec<u64> = rsc
            .ops
            .iter()
            .copied()
            .filter(|k| {
                st.ops
                    .get(k)
                    .is_some_and(|op| op.req.interval_ms > 0 && !op.cancel_requested)
            })
            .collect();
        for key in keys {
            self.cancel_op(st, rsc_id, key);
        }
    }

    /// A waiting op is removed at once with a Cancelled notify; a running one has its process
    /// group killed and is reported Cancelled when it ends.
    fn cancel_op(&self, st: &mut State, rsc_id: &str, key: u64) {
        let Some(op) = st.ops.get_mut(&key) else {
            return;
        };
        info!(rsc = rsc_id, action = %op.req.action, interval = op.req.interval_ms, call = op.req.call_id, "Cancelling operation");
        if op.phase == Phase::Running {
            op.cancel_requested = true;
            if let Some(pgid) = op.pgid {
                agents::kill_group(pgid);
            }
            return;
        }
        if let Some(mut op) = st.ops.remove(&key) {
            abort_timer(&mut op);
            if let Some(rsc) = st.resources.get_mut(rsc_id) {
                rsc.ops.retain(|k| *k != key);
                rsc.queue.retain(|k| *k != key);
            }
            self.send_cancelled(&op);
        }
    }

    /// `lrmd_get_recurring`, for one resource or all.
    pub fn recurring(&self, rsc_id: Option<&str>) -> Result<Vec<(String, Vec<RecurringOp>)>, i32> {
        let st = self.lock();
        let ids: Vec<&String> = match rsc_id {
            Some(id) => vec![st.resources.get_key_value(id).ok_or(rc::ENODEV)?.0],
            None => {
                let mut ids: Vec<&String> = st.resources.keys().collect();
                ids.sort();
                ids
            }
        };
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let rsc = st.resources.get(id)?;
                let ops: Vec<RecurringOp> = rsc
                    .ops
                    .iter()
                    .filter_map(|k| st.ops.get(k))
                    .filter(|op| op.req.interval_ms > 0 && !op.cancel_requested)
                    .map(|op| RecurringOp {
                        action: op.req.action.clone(),
                        interval_ms: op.req.interval_ms,
                        timeout_ms: op.req.timeout_ms,
                    })
                    .collect();
                (!ops.is_empty()).then(|| (id.clone(), ops))
            })
            .collect())
    }

    /// The last cluster connection went away: stop the monitors of resources registered with
    /// drop-recurring (resources keep running; the cluster re-probes when it reconnects).
    pub fn last_client_gone(&self) {
        let mut st = self.lock();
        let ids: Vec<String> = st
            .resources
            .iter()
            .filter(|(_, r)| r.call_opts & callopt::DROP_RECURRING == callopt::DROP_RECURRING)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.cancel_all_recurring(&mut st, &id);
        }
    }

    /// Number of operations not yet finished (for graceful shutdown and metrics).
    pub fn active_ops(&self) -> usize {
        self.lock().ops.len()
    }

    fn schedule(&self, key: u64, delay: Duration) -> AbortHandle {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            this.timer_fired(key);
        })
        .abort_handle()
    }

    fn timer_fired(&self, key: u64) {
        let mut st = self.lock();
        let Some(op) = st.ops.get_mut(&key) else {
            return;
        };
        if !matches!(op.phase, Phase::Delayed | Phase::Sleeping) {
            return;
        }
        op.timer = None;
        op.phase = Phase::Queued;
        op.queued_at = Instant::now();
        let rsc_id = op.req.rsc_id.clone();
        if let Some(rsc) = st.resources.get_mut(&rsc_id) {
            rsc.queue.push_back(key);
        }
        self.run_next(&mut st, &rsc_id);
    }

    /// Starts the next queued op of a resource if none is running.
    fn run_next(&self, st: &mut State, rsc_id: &str) {
        let Some(rsc) = st.resources.get_mut(rsc_id) else {
            return;
        };
        if rsc.active.is_some() {
            return;
        }
        let Some(key) = rsc.queue.pop_front() else {
            return;
        };
        rsc.active = Some(key);
        let spec = rsc.spec.clone();
        let Some(op) = st.ops.get_mut(&key) else {
            return;
        };
        op.phase = Phase::Running;
        op.started_at = Some(Instant::now());
        op.run_epoch = epoch_now();
        let request = ActionRequest {
            rsc_id: op.req.rsc_id.clone(),
            action: op.req.action.clone(),
            params: op
                .req
                .params_xml
                .as_ref()
                .map(flatten_params)
                .unwrap_or_default(),
            timeout: Duration::from_millis(op.req.timeout_ms.max(1)),
        };
        debug!(rsc = rsc_id, action = %request.action, call = op.req.call_id, "Executing");
        let started = agents::start(&self.shared.paths, &spec, request);
        op.pgid = started.pgid;
        let this = self.clone();
        tokio::spawn(async move {
            let result = started.done.await;
            this.completed(key, result);
        });
    }

    fn completed(&self, key: u64, mut result: ActionResult) {
        let mut st = self.lock();
        let Some(op) = st.ops.get_mut(&key) else {
            return;
        };
        if op.cancel_requested {
            result.status = exec_status::CANCELLED;
        }
        let exec_ms = op
            .started_at
            .map(|t| t.elapsed().as_millis() as u64)
            .unwrap_or(0);
        let queue_ms = op
            .started_at
            .map(|t| t.duration_since(op.queued_at).as_millis() as u64)
            .unwrap_or(0);
        if result.rc != op.last_rc {
            op.rcchange_epoch = epoch_now();
        }
        op.last_rc = result.rc;
        op.pgid = None;
        log_result(op, &result, exec_ms);

        let changes_only = op.req.call_opts & callopt::NOTIFY_CHANGES_ONLY != 0;
        let unchanged =
            op.first_notify_sent && op.last_notified == Some((result.rc, result.status));
        if !(changes_only && unchanged) {
            let msg = notify::exec_complete(
                &op.req,
                &result,
                op.rsc_deleted,
                op.run_epoch,
                op.rcchange_epoch,
                exec_ms,
                queue_ms,
            );
            self.send(&op.req, msg);
            op.first_notify_sent = true;
            op.last_notified = Some((result.rc, result.status));
        }

        let rsc_id = op.req.rsc_id.clone();
        let again = op.req.interval_ms > 0 && !op.cancel_requested && !op.rsc_deleted;
        if again {
            op.phase = Phase::Sleeping;
            op.started_at = None;
            let interval = Duration::from_millis(op.req.interval_ms);
            let timer = self.schedule(key, interval);
            if let Some(op) = st.ops.get_mut(&key) {
                op.timer = Some(timer);
            }
        } else {
            st.ops.remove(&key);
            if let Some(rsc) = st.resources.get_mut(&rsc_id) {
                rsc.ops.retain(|k| *k != key);
            }
        }
        // The resource may have been unregistered and registered anew meanwhile: only free the
        // slot this op held.
        if let Some(rsc) = st.resources.get_mut(&rsc_id)
            && rsc.active == Some(key)
        {
            rsc.active = None;
        }
        self.run_next(&mut st, &rsc_id);
    }

    fn send_cancelled(&self, op: &Op) {
        let result = ActionResult::new(op.last_rc, exec_status::CANCELLED, None);
        let msg = notify::exec_complete(&op.req, &result, op.rsc_deleted, 0, 0, 0, 0);
        self.send(&op.req, msg);
    }

    fn send(&self, req: &ExecRequest, msg: Element) {
        let target = if req.call_opts & callopt::NOTIFY_ORIG_ONLY != 0 {
            NotifyTarget::Client(req.client_id.clone())
        } else {
            NotifyTarget::All
        };
        self.shared.sink.notify(target, msg);
    }
}

fn abort_timer(op: &mut Op) {
    if let Some(t) = op.timer.take() {
        t.abort();
    }
}

fn log_result(op: &Op, r: &ActionResult, exec_ms: u64) {
    let (rsc, action, call) = (&op.req.rsc_id, &op.req.action, op.req.call_id);
    match r.status {
        exec_status::DONE => {
            info!(rsc = %rsc, action = %action, interval = op.req.interval_ms, call, rc = r.rc, exec_ms, "Operation finished")
        }
        exec_status::CANCELLED => info!(rsc = %rsc, action = %action, call, "Operation cancelled"),
        _ => {
            warn!(rsc = %rsc, action = %action, call, rc = r.rc, status = r.status, reason = r.exit_reason.as_deref().unwrap_or(""), "Operation failed")
        }
    }
}

/// `<attributes a="1" .../>` plus `<param name= value=>` children (names starting with a digit).
pub fn flatten_params(attrs: &Element) -> Vec<(String, String)> {
    let mut params = attrs.attrs.clone();
    for p in attrs.children.iter().filter(|c| c.name == "param") {
        if let (Some(k), Some(v)) = (p.attr("name"), p.attr("value")) {
            params.push((k.to_string(), v.to_string()));
        }
    }
    params
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
