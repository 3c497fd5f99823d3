//! The executor's operations (`lrmd_op`): one table from operation name to handler
//! ([`OPERATIONS`]), one handler signature ([`Handler`]), and one rule for which operations are
//! followed by a generic notify ([`Notify`]; as in Pacemaker's execd, decided per operation).
//!
//! Handlers touch only the executor and the client registry. What should happen elsewhere
//! (shutdown answers, traffic for local tools, a fatal stop) comes back as an
//! [`Effect`] in the [`Outcome`], which the caller routes.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::agents::AgentSpec;
use super::daemon::Daemon;
use super::executor::{ExecRequest, rc};
use super::proxy;
use super::routing::{Effect, Outcome};
use super::shutdown::Control;
use crate::wire::Element;
use crate::wire::envelope::{MsgType, msg_id, set_envelope};

/// `LRMD_PROTOCOL_VERSION` we advertise: 1.1, as Pacemaker 2.1.5 to 2.1.7. 2.1.8 and 3.0.x
/// speak 1.2 but accept any 1.x remote node (`LRMD_COMPATIBLE_PROTOCOL` "1"); 1.2 only adds
/// fetching newer schema files on register, which this daemon has no use for.
pub const PROTOCOL_VERSION: &str = "1.1";
/// `LRMD_MIN_PROTOCOL_VERSION`.
const MIN_PROTOCOL_VERSION: &str = "1.0";
const EPROTO: i32 = -71;
const EACCES: i32 = -13;

/// Where a request came from: the TLS link (the cluster) or a local tool over libqb IPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Remote,
    Local,
}

/// One request, as every handler sees it.
pub struct Request<'a> {
    pub client_id: &'a str,
    pub msg: &'a Element,
    pub origin: Origin,
    /// Assigned by this daemon, one per request.
    pub call_id: i64,
    /// The `lrmd_rsc` element anywhere in the request (resource operations carry one).
    pub rsc: Option<&'a Element>,
}

impl Request<'_> {
    fn rsc_attr(&self, name: &str) -> Option<&str> {
        self.rsc.and_then(|r| r.attr(name))
    }
}

/// What a handler decided: the return code (which the notify rule reads), the reply, an effect.
pub struct Handled {
    rc: i64,
    reply: Reply,
    effect: Option<Effect>,
}

enum Reply {
    /// `lrmd_reply` from `process_lrmd_message` with the return code and call id.
    Standard,
    /// A reply of the handler's own making (register, rsc_info, get_recurring).
    Own(Element),
    /// No reply (`lrmd_check`).
    Silent,
}

impl Handled {
    fn rc(rc: impl Into<i64>) -> Handled {
        Handled {
            rc: rc.into(),
            reply: Reply::Standard,
            effect: None,
        }
    }

    fn own(rc: impl Into<i64>, reply: Element) -> Handled {
        Handled {
            rc: rc.into(),
            reply: Reply::Own(reply),
            effect: None,
        }
    }
}

/// Whether a generic `lrmd_notify` to every client follows the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    Never,
    Always,
    /// Only when the operation worked (rc 0, or still in progress): a failed unregister is
    /// nobody else's business.
    OnSuccess,
}

impl Notify {
    fn after(self, rc: i64) -> bool {
        match self {
            Notify::Never => false,
            Notify::Always => true,
            Notify::OnSuccess => rc == 0 || rc == i64::from(rc::EINPROGRESS),
        }
    }
}

/// The one handler signature.
pub type Handler = fn(&Daemon, &Request<'_>) -> Handled;

/// Every operation this daemon answers. Anything else (including `lrmd_rsc_metadata`: the
/// cluster runs meta-data on its own nodes) is answered with `EOPNOTSUPP`.
pub const OPERATIONS: &[(&str, Handler, Notify)] = &[
    ("register", register, Notify::Never),
    ("lrmd_rsc_poke", poke, Notify::Always),
    ("lrmd_check", check_watchdog, Notify::Never),
    ("lrmd_rsc_register", rsc_register, Notify::Always),
    ("lrmd_rsc_info", rsc_info, Notify::Never),
    ("lrmd_rsc_unregister", rsc_unregister, Notify::OnSuccess),
    ("lrmd_rsc_exec", rsc_exec, Notify::Never),
    ("lrmd_rsc_cancel", rsc_cancel, Notify::Never),
    ("lrmd_get_recurring", get_recurring, Notify::Never),
    ("lrmd_alert_exec", alert_exec, Notify::Never),
    ("ipc_fwd", ipc_fwd, Notify::Never),
];

/// Handles one message from the TLS client `client_id` (already past the handshake).
pub fn handle(daemon: &Daemon, client_id: &str, msg: &Element) -> Outcome {
    if MsgType::of(msg) != Some(MsgType::Request) {
        warn!(client = client_id, element = %msg.name, "Ignoring a message that is not a request");
        return Outcome::default();
    }
    handle_request(daemon, client_id, msg, Origin::Remote)
}

/// Handles one executor request (local IPC requests carry no envelope).
pub fn handle_request(daemon: &Daemon, client_id: &str, msg: &Element, origin: Origin) -> Outcome {
    let call_id = daemon.next_call_id();
    if let Some(name) = msg.attr("lrmd_clientname") {
        daemon.clients.set_name_if_unset(client_id, name);
    }
    let op = msg.attr("lrmd_op").unwrap_or_default();
    debug!(client = client_id, op, call_id, "Request");
    let req = Request {
        client_id,
        msg,
        origin,
        call_id,
        rsc: msg.descendant("lrmd_rsc"),
    };
    let (handler, notify) = OPERATIONS
        .iter()
        .find(|(name, _, _)| *name == op)
        .map(|&(_, handler, notify)| (handler, notify))
        .unwrap_or((unsupported, Notify::Never));
    let done = handler(daemon, &req);
    let reply = match done.reply {
        Reply::Standard => Some(reply(msg, "process_lrmd_message", done.rc, call_id)),
        Reply::Own(r) => Some(r),
        Reply::Silent => None,
    };
    let notify = notify
        .after(done.rc)
        .then(|| generic_notify(op, done.rc, call_id, req.rsc_attr("lrmd_rsc_id")));
    Outcome {
        reply,
        notify,
        effect: done.effect,
    }
}

fn reply(request: &Element, origin: &str, rc: i64, call_id: i64) -> Element {
    let mut r = Element::new("lrmd_reply")
        .with_attr("lrmd_origin", origin)
        .with_attr("lrmd_rc", rc)
        .with_attr("lrmd_callid", call_id);
    set_envelope(&mut r, msg_id(request), MsgType::Reply);
    r
}

/// `send_generic_notify`: the operation, its rc and call id, and the resource if it names one.
fn generic_notify(op: &str, rc: i64, call_id: i64, rsc_id: Option<&str>) -> Element {
    let mut n = Element::new("lrmd_notify")
        .with_attr("lrmd_origin", "send_generic_notify")
        .with_attr("lrmd_rc", rc)
        .with_attr("lrmd_callid", call_id)
        .with_attr("lrmd_op", op);
    if let Some(id) = rsc_id {
        n.set_attr("lrmd_rsc_id", id);
    }
    n
}

fn unsupported(_: &Daemon, req: &Request<'_>) -> Handled {
    let op = req.msg.attr("lrmd_op").unwrap_or_default();
    info!(client = req.client_id, op, "Unsupported operation");
    Handled::rc(rc::EOPNOTSUPP)
}

fn poke(_: &Daemon, _: &Request<'_>) -> Handled {
    Handled::rc(0)
}

fn register(daemon: &Daemon, req: &Request<'_>) -> Handled {
    let (msg, client_id) = (req.msg, req.client_id);
    let version = msg.attr("lrmd_protocol_version").unwrap_or("0");
    let wants_provider = msg.attr("lrmd_is_ipc_provider").is_some_and(is_true);
    let mut rc = 0;
    if compare_versions(version, MIN_PROTOCOL_VERSION) == std::cmp::Ordering::Less {
        warn!(
            client = client_id,
            version, "Rejecting client with an incompatible protocol version"
        );
        rc = EPROTO;
    } else if wants_provider && req.origin == Origin::Local {
        // Only an authenticated cluster connection may carry local tools' traffic.
        warn!(
            client = client_id,
            "Refusing a local IPC client as IPC provider"
        );
        rc = EACCES;
    } else if wants_provider {
        daemon.clients.add_provider(client_id);
        info!(
            client = client_id,
            name = msg.attr("lrmd_clientname").unwrap_or(""),
            "Cluster connection registered as IPC provider"
        );
    }
    let mut r = Element::new("lrmd_reply")
        .with_attr("lrmd_origin", "process_lrmd_signon")
        .with_attr("lrmd_rc", rc)
        .with_attr("lrmd_callid", req.call_id)
        .with_attr("lrmd_op", "register")
        .with_attr("lrmd_clientid", client_id)
        .with_attr("lrmd_protocol_version", PROTOCOL_VERSION)
        .with_attr("uptime", daemon.started.elapsed().as_secs());
    if let Some(state) = &daemon.node_start_state {
        r.set_attr("node_start_state", state);
    }
    set_envelope(&mut r, msg_id(msg), MsgType::Reply);
    Handled::own(rc, r)
}

fn rsc_register(daemon: &Daemon, req: &Request<'_>) -> Handled {
    let Some(rsc) = req.rsc else {
        return Handled::rc(rc::EINVAL);
    };
    let (Some(id), Some(class), Some(agent_type)) = (
        rsc.attr("lrmd_rsc_id"),
        rsc.attr("lrmd_class"),
        rsc.attr("lrmd_type"),
    ) else {
        return Handled::rc(rc::EINVAL);
    };
    let spec = AgentSpec {
        class: class.to_string(),
        provider: rsc.attr("lrmd_provider").map(str::to_string),
        agent_type: agent_type.to_string(),
    };
    // The call options (drop-recurring) live on the command element, not on lrmd_rsc.
    let call_opts = req.msg.attr_i64("lrmd_callopt").unwrap_or(0);
    Handled::rc(daemon.executor.register(id, spec, call_opts))
}

fn rsc_unregister(daemon: &Daemon, req: &Request<'_>) -> Handled {
    match req.rsc_attr("lrmd_rsc_id") {
        Some(rsc_id) => Handled::rc(daemon.executor.unregister(rsc_id)),
        None => Handled::rc(rc::EINVAL),
    }
}

fn rsc_cancel(daemon: &Daemon, req: &Request<'_>) -> Handled {
    let rc = match (req.rsc_attr("lrmd_rsc_id"), req.rsc_attr("lrmd_rsc_action")) {
        (Some(id), Some(action)) => {
            let interval = req
                .rsc
                .and_then(|r| r.attr_i64("lrmd_rsc_interval"))
                .unwrap_or(0)
                .max(0) as u64;
            daemon.executor.cancel(id, action, interval)
        }
        _ => rc::EINVAL,
    };
    Handled::rc(rc)
}

/// `ipc_fwd`: answered at once; what it asks for is the proxy's to say.
fn ipc_fwd(_: &Daemon, req: &Request<'_>) -> Handled {
    Handled {
        effect: proxy::from_cluster(req.client_id, req.msg),
        ..Handled::rc(0)
    }
}

fn rsc_info(daemon: &Daemon, req: &Request<'_>) -> Handled {
    let found = req
        .rsc_attr("lrmd_rsc_id")
        .and_then(|id| daemon.executor.info(id).map(|s| (id, s)));
    let rc = if found.is_some() { 0 } else { rc::ENODEV };
    let mut r = Element::new("lrmd_reply")
        .with_attr("lrmd_origin", "process_lrmd_get_rsc_info")
        .with_attr("lrmd_rc", rc)
        .with_attr("lrmd_callid", req.call_id);
    if let Some((id, spec)) = found {
        r.set_attr("lrmd_rsc_id", id);
        r.set_attr("lrmd_class", &spec.class);
        if let Some(p) = &spec.provider {
            r.set_attr("lrmd_provider", p);
        }
        r.set_attr("lrmd_type", &spec.agent_type);
    }
    set_envelope(&mut r, msg_id(req.msg), MsgType::Reply);
    Handled::own(rc, r)
}

/// The reply's rc is the call id the completion notify will carry (or an error).
fn rsc_exec(daemon: &Daemon, req: &Request<'_>) -> Handled {
    let Some(rsc) = req.rsc else {
        return Handled::rc(rc::EINVAL);
    };
    let (Some(rsc_id), Some(action)) = (rsc.attr("lrmd_rsc_id"), rsc.attr("lrmd_rsc_action"))
    else {
        return Handled::rc(rc::EINVAL);
    };
    let msg = req.msg;
    let ms = |name: &str| rsc.attr_i64(name).unwrap_or(0).max(0) as u64;
    Handled::rc(daemon.executor.exec(ExecRequest {
        call_id: req.call_id,
        client_id: req.client_id.to_string(),
        rsc_id: rsc_id.to_string(),
        action: action.to_string(),
        interval_ms: ms("lrmd_rsc_interval"),
        timeout_ms: ms("lrmd_timeout"),
        start_delay_ms: ms("lrmd_rsc_start_delay"),
        call_opts: msg.attr_i64("lrmd_callopt").unwrap_or(0),
        userdata: rsc.attr("lrmd_rsc_userdata_str").map(str::to_string),
        params_xml: rsc.child("attributes").cloned(),
    }))
}

fn get_recurring(daemon: &Daemon, req: &Request<'_>) -> Handled {
    let wanted = req.rsc_attr("lrmd_rsc_id");
    let (rc, list) = match daemon.executor.recurring(wanted) {
        Ok(list) => (0, list),
        Err(rc) => (rc, Vec::new()),
    };
    let mut r = Element::new("lrmd_reply")
        .with_attr("lrmd_origin", "process_lrmd_get_recurring")
        .with_attr("lrmd_rc", rc)
        .with_attr("lrmd_callid", req.call_id);
    for (id, ops) in list {
        let mut el = Element::new("lrmd_rsc").with_attr("lrmd_rsc_id", id);
        for op in ops {
            el.children.push(
                Element::new("lrmd_rsc_op")
                    .with_attr("lrmd_rsc_action", op.action)
                    .with_attr("lrmd_rsc_interval", op.interval_ms)
                    .with_attr("lrmd_timeout", op.timeout_ms),
            );
        }
        r.children.push(el);
    }
    set_envelope(&mut r, msg_id(req.msg), MsgType::Reply);
    Handled::own(rc, r)
}

fn alert_exec(_: &Daemon, req: &Request<'_>) -> Handled {
    let Some(alert) = req.msg.descendant("lrmd_alert") else {
        return Handled::rc(rc::EINVAL);
    };
    let (Some(id), Some(path)) = (alert.attr("lrmd_alert_id"), alert.attr("lrmd_alert_path"))
    else {
        return Handled::rc(rc::EINVAL);
    };
    let timeout =
        Duration::from_millis(alert.attr_i64("lrmd_timeout").unwrap_or(30_000).max(1) as u64);
    let env = alert
        .child("attributes")
        .map(super::executor::flatten_params)
        .unwrap_or_default();
    Handled::rc(super::alerts::run(id, path, env, timeout))
}

/// `lrmd_check` (never answered): the cluster says watchdog fencing is on for this node.
/// Without a running sbd, Pacemaker's daemon exits fatally so the node cannot run resources
/// unprotected.
fn check_watchdog(_: &Daemon, req: &Request<'_>) -> Handled {
    let silent = |effect| Handled {
        rc: 0,
        reply: Reply::Silent,
        effect,
    };
    let Some(value) = req
        .msg
        .descendant("lrmd_op")
        .and_then(|o| o.attr("lrmd_watchdog"))
    else {
        return silent(None);
    };
    let Some(ms) = parse_duration_ms(value) else {
        warn!(value, "Ignoring unparsable stonith-watchdog-timeout");
        return silent(None);
    };
    if ms == 0 {
        return silent(None);
    }
    let sbd_timeout_ms = std::env::var("SBD_WATCHDOG_TIMEOUT")
        .ok()
        .and_then(|v| parse_duration_ms(&v))
        .unwrap_or(0);
    if !sbd_running() {
        tracing::error!(
            value,
            "Shutting down: stonith-watchdog-timeout is configured but sbd is not running"
        );
        silent(Some(Effect::Control(Control::Fatal)))
    } else if ms > 0 && sbd_timeout_ms > 0 && ms < sbd_timeout_ms {
        tracing::error!(
            value,
            "Shutting down: stonith-watchdog-timeout is shorter than SBD_WATCHDOG_TIMEOUT"
        );
        silent(Some(Effect::Control(Control::Fatal)))
    } else {
        silent(None)
    }
}

fn sbd_running() -> bool {
    let pid = std::fs::read_to_string("/run/sbd.pid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
}

/// Pacemaker durations: plain numbers are seconds; `ms`, `s`, `m`/`min`, `h` suffixes; negative = auto.
pub fn parse_duration_ms(v: &str) -> Option<i64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: i64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" | "sec" => 1000,
        "ms" | "msec" => 1,
        "m" | "min" => 60_000,
        "h" | "hr" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

pub fn is_true(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "on" | "yes" | "y" | "1"
    )
}

/// Dotted numeric version comparison (missing parts count as 0).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |s: &str| {
        s.split('.')
            .map(|p| p.trim().parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let (a, b) = (parse(a), parse(b));
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(op: &str) -> Notify {
        OPERATIONS
            .iter()
            .find(|(name, _, _)| *name == op)
            .map_or(Notify::Never, |&(_, _, notify)| notify)
    }

    /// Pacemaker's execd: a generic notify after poke and rsc_register always, after
    /// rsc_unregister only when it worked (or is in progress), never after anything else.
    #[test]
    fn which_operations_notify() {
        let einval = i64::from(rc::EINVAL);
        let in_progress = i64::from(rc::EINPROGRESS);
        let cases: &[(&str, i64, bool)] = &[
            ("lrmd_rsc_poke", 0, true),
            ("lrmd_rsc_register", 0, true),
            ("lrmd_rsc_register", einval, true),
            ("lrmd_rsc_unregister", 0, true),
            ("lrmd_rsc_unregister", in_progress, true),
            ("lrmd_rsc_unregister", einval, false),
            ("register", 0, false),
            ("lrmd_check", 0, false),
            ("lrmd_rsc_info", 0, false),
            ("lrmd_rsc_exec", 42, false),
            ("lrmd_rsc_cancel", 0, false),
            ("lrmd_get_recurring", 0, false),
            ("lrmd_alert_exec", 0, false),
            ("ipc_fwd", 0, false),
            ("lrmd_rsc_metadata", 0, false),
        ];
        for &(op, rc, notifies) in cases {
            assert_eq!(rule(op).after(rc), notifies, "{op} rc {rc}");
        }
    }

    #[test]
    fn each_operation_is_in_the_table_once() {
        let mut names: Vec<&str> = OPERATIONS.iter().map(|(name, _, _)| *name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }

    #[test]
    fn versions_and_durations() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.1", "1.0"), Greater);
        assert_eq!(compare_versions("0.9", "1.0"), Less);
        assert_eq!(compare_versions("1", "1.0"), Equal);
        assert_eq!(compare_versions("garbage", "1.0"), Less);
        assert_eq!(parse_duration_ms("10"), Some(10_000));
        assert_eq!(parse_duration_ms("10s"), Some(10_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("-1"), Some(-1000));
        assert_eq!(parse_duration_ms("2min"), Some(120_000));
        assert_eq!(parse_duration_ms("x"), None);
        assert!(is_true("Yes") && !is_true("0"));
    }
}
