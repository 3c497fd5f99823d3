//! The completion notify: the field set and order of Pacemaker 2.1.5's `send_cmd_complete_notify`.

use super::ExecRequest;
use crate::remoted::agents::ActionResult;
use crate::wire::Element;
use crate::wire::xml::prefix_within_escaped;

/// Room for the agent's output in a notify, escaped. The cluster refuses a remote message over
/// 20 MiB and drops the connection (`wire::frame::DEFAULT_MAX_MESSAGE`); an agent's 10 MiB of
/// output (`agents::OUTPUT_LIMIT`) can escape to five times that, so the output is cut to fit
/// half the cap and the rest of the notify keeps its room.
pub const OUTPUT_ESCAPED_BUDGET: usize = 10 * 1024 * 1024;

/// Where a notify goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    All,
    Client(String),
}

/// Delivers executor notifies to connected clients.
pub trait NotifySink: Send + Sync + 'static {
    fn notify(&self, target: NotifyTarget, msg: Element);
}

pub fn exec_complete(
    req: &ExecRequest,
    r: &ActionResult,
    deleted: bool,
    run_epoch: u64,
    rcchange_epoch: u64,
    exec_ms: u64,
    queue_ms: u64,
) -> Element {
    let mut n = Element::new("lrmd_notify")
        .with_attr("lrmd_origin", "send_cmd_complete_notify")
        .with_attr("lrmd_timeout", req.timeout_ms)
        .with_attr("lrmd_rsc_interval", req.interval_ms)
        .with_attr("lrmd_rsc_start_delay", req.start_delay_ms)
        .with_attr("lrmd_exec_rc", r.rc)
        .with_attr("lrmd_exec_op_status", r.status)
        .with_attr("lrmd_callid", req.call_id)
        .with_attr("lrmd_rsc_deleted", u8::from(deleted))
        .with_attr("lrmd_run_time", run_epoch)
        .with_attr("lrmd_rcchange_time", rcchange_epoch)
        .with_attr("lrmd_exec_time", exec_ms)
        .with_attr("lrmd_queue_time", queue_ms)
        .with_attr("lrmd_op", "lrmd_rsc_exec")
        .with_attr("lrmd_rsc_id", &req.rsc_id)
        .with_attr("lrmd_rsc_action", &req.action);
    if let Some(u) = &req.userdata {
        n.set_attr("lrmd_rsc_userdata_str", u);
    }
    if let Some(reason) = &r.exit_reason {
        n.set_attr("lrmd_rsc_exit_reason", reason);
    }
    if let Some(out) = &r.output {
        n.set_attr(
            "lrmd_rsc_output",
            prefix_within_escaped(out, OUTPUT_ESCAPED_BUDGET),
        );
    }
    if let Some(params) = &req.params_xml {
        n.children.push(params.clone());
    }
    n
}
