//! The pure status reader: from a CIB with its status section, the state of every remote and
//! guest node, the cluster node hosting its connection, what runs on it, and failed actions.
//!
//! It follows the scheduler's rules for remote nodes (`determine_remote_online_status()` and
//! `unpack_handle_remote_attrs()` in Pacemaker 2.1's lib/pengine/unpack.c) on the resource
//! history in `lrm_rsc_op` entries; `crm_mon --output-as=xml` on the same CIB is the test oracle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::wire::Element;

use super::model::{Cib, is_true, nv_lookup};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Remote,
    Guest,
}

/// One word for the node, most urgent first: unclean, then offline/pending, maintenance,
/// standby, online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// The node needs fencing: its connection failed while fencing is enabled.
    Unclean,
    /// Not connected, and nothing is bringing it up.
    Offline,
    /// Not connected yet: the connection (or the guest's resource) is starting. crm_mon reports
    /// such a node as offline; kubemaker tells the two apart.
    Pending,
    Maintenance,
    Standby,
    Online,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unclean => "unclean",
            NodeState::Offline => "offline",
            NodeState::Pending => "pending",
            NodeState::Maintenance => "maintenance",
            NodeState::Standby => "standby",
            NodeState::Online => "online",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveResource {
    pub id: String,
    /// `class:provider:type` from the history entry.
    pub agent: String,
    /// `Started` or `Promoted`; `failed` if its last operation failed.
    pub role: String,
    pub failed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAction {
    pub resource: String,
    /// Where the action ran (a cluster node for connections and guest resources).
    pub node: String,
    pub task: String,
    pub interval_ms: u64,
    /// The agent's exit code (OCF: 1 generic error, 5 not installed, 7 not running, …).
    pub rc: i64,
    /// Pacemaker's execution status (0 done, 2 timed out, 4 error, 7 not installed, …).
    pub status: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exit_reason: String,
    /// Seconds since the epoch, as recorded in the CIB.
    pub last_rc_change: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub kind: NodeKind,
    pub state: NodeState,
    /// These four match crm_mon's `<node>` attributes of the same names.
    pub online: bool,
    pub standby: bool,
    pub maintenance: bool,
    pub unclean: bool,
    /// The connection (or the guest's resource) is starting.
    pub pending: bool,
    /// As configured in `<nodes>` (crm_mon reports standby only while the node is online).
    pub standby_configured: bool,
    pub maintenance_configured: bool,
    /// The connection resource: the primitive for remote nodes, the implicit one (named like the
    /// node) for guests.
    pub connection: String,
    /// The guest's own resource (VM, container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_resource: Option<String>,
    pub address: String,
    /// The cluster node the connection runs on.
    pub host: Option<String>,
    /// Resources active on this node.
    pub resources: Vec<ActiveResource>,
    /// Failures of the connection, the guest's resource, and resources on the node.
    pub failed_actions: Vec<FailedAction>,
    /// When the cluster last fenced this remote node successfully (epoch seconds), until its
    /// connection starts again: the controller's `node_fenced` mark in its `node_state`, written
    /// only after confirmed fencing and reset to 0 when the node reconnects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_at: Option<i64>,
}

/// What one resource's history says about it on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct HistoryState {
    active: bool,
    promoted: bool,
    failed: bool,
    starting: bool,
}

fn int_attr(el: &Element, name: &str) -> Option<i64> {
    el.attr(name)?.trim().parse().ok()
}

/// Expected result from `transition-key` (`action:transition:target_rc:uuid`).
fn target_rc(op: &Element) -> Option<i64> {
    op.attr("transition-key")?.split(':').nth(2)?.parse().ok()
}

/// Whether a completed operation failed, as the scheduler judges it: a bad execution status, or
/// an exit code other than expected (probes may find a resource running or stopped).
fn is_failure(op: &Element) -> bool {
    let task = op.attr("operation").unwrap_or("");
    let rc = int_attr(op, "rc-code").unwrap_or(0);
    let status = int_attr(op, "op-status").unwrap_or(0);
    let probe = task == "monitor" && int_attr(op, "interval").unwrap_or(0) == 0;
    let expected = target_rc(op).unwrap_or(if probe { 7 } else { 0 });
    !(status == 0 && (rc == expected || (probe && matches!(rc, 0 | 7 | 8))))
}

/// Replays a resource's operation history in call order.
fn history_state(lrm_resource: &Element) -> HistoryState {
    let mut ops: Vec<&Element> = lrm_resource
        .children
        .iter()
        .filter(|o| o.name == "lrm_rsc_op")
        .collect();
    // By call id, then by time of the result: a recurring monitor keeps its call id, and its
    // failure may be newer than the entry it failed in (only `_last_failure_` has it). Pending
    // ops carry call-id -1: they are the newest.
    ops.sort_by_key(|o| {
        let call = match int_attr(o, "call-id") {
            Some(c) if c >= 0 => c,
            _ => i64::MAX,
        };
        (call, int_attr(o, "last-rc-change").unwrap_or(0))
    });
    let mut st = HistoryState::default();
    for op in ops {
        let task = op.attr("operation").unwrap_or("");
        let rc = int_attr(op, "rc-code").unwrap_or(0);
        let status = int_attr(op, "op-status").unwrap_or(0);
        let interval = int_attr(op, "interval").unwrap_or(0);
        if status == -1 {
            if matches!(task, "start" | "migrate_from") {
                st.starting = true;
            }
            continue;
        }
        if status == 1 {
            continue; // cancelled
        }
        let probe = task == "monitor" && interval == 0;
        let ok = !is_failure(op);
        st.starting = false;
        match task {
            "start" | "migrate_from" => {
                st.active = true;
                st.promoted = false;
                st.failed = !ok;
            }
            "stop" => {
                if ok {
                    st = HistoryState::default();
                } else {
                    st.failed = true;
                }
            }
            "promote" if ok => st.promoted = true,
            "demote" if ok => st.promoted = false,
            "monitor" => {
                if status == 0 && rc == 7 && (probe || ok) {
                    // Found stopped where that is no failure: a probe, or a monitor of the
                    // Stopped role.
                    st.active = false;
                    st.promoted = false;
                    st.failed = false;
                } else if status == 0 && rc == 7 {
                    // "Not running" from a recurring monitor that expected it running is a
                    // failure, and the scheduler keeps the resource active there until a stop
                    // says otherwise (Pacemaker 3.0.x records a lost remote connection so).
                    st.failed = true;
                } else if status == 0 && matches!(rc, 0 | 8) {
                    st.active = true;
                    st.promoted = rc == 8;
                    if ok {
                        st.failed = false;
                    }
                } else {
                    // Any other failed monitor, a probe that could not run too: the scheduler
                    // assumes the resource may be active there (it must be stopped), except
                    // where the agent is not installed.
                    st.failed = true;
                    if !(probe && rc == 5) {
                        st.active = true;
                    }
                }
            }
            "migrate_to" if ok => {}
            "promote" | "demote" | "migrate_to" => st.failed = true,
            _ => {}
        }
    }
    st
}

fn failed_actions_of(lrm_resource: &Element, node: &str, out: &mut Vec<FailedAction>) {
    let rsc = lrm_resource.attr("id").unwrap_or("");
    for op in lrm_resource.children.iter().filter(|o| {
        o.name == "lrm_rsc_op" && o.attr("id").is_some_and(|id| id.contains("_last_failure_"))
    }) {
        if !is_failure(op) {
            continue; // e.g. a probe that found the resource running: unexpected, not failed
        }
        out.push(FailedAction {
            resource: rsc.into(),
            node: node.into(),
            task: op.attr("operation").unwrap_or("").into(),
            interval_ms: int_attr(op, "interval")
                .and_then(|i| u64::try_from(i).ok())
                .unwrap_or(0),
            rc: int_attr(op, "rc-code").unwrap_or(0),
            status: int_attr(op, "op-status").unwrap_or(0),
            exit_reason: op.attr("exit-reason").unwrap_or("").into(),
            last_rc_change: int_attr(op, "last-rc-change"),
        });
    }
}

/// `in_ccm`/`crmd` are "true"/"online" on 2.1.5 and timestamps ("0" = down) on 2.1.7+.
fn up_flag(v: Option<&str>) -> bool {
    match v {
        None => false,
        Some(v) => is_true(v) || v == "online" || v.parse::<i64>().is_ok_and(|n| n > 0),
    }
}

fn lrm_resources(state: &Element) -> impl Iterator<Item = &Element> {
    state
        .child("lrm")
        .and_then(|l| l.child("lrm_resources"))
        .into_iter()
        .flat_map(|r| r.children.iter())
        .filter(|r| r.name == "lrm_resource")
}

/// Where resource `id` is, among cluster nodes that are up.
struct Placement<'a> {
    running_on: Vec<&'a str>,
    failed: bool,
    starting: bool,
}

fn placement<'a>(id: &str, cluster_states: &[(&'a str, &'a Element)]) -> Placement<'a> {
    let mut p = Placement {
        running_on: Vec::new(),
        failed: false,
        starting: false,
    };
    for (node, state) in cluster_states {
        for r in lrm_resources(state).filter(|r| r.attr("id") == Some(id)) {
            let h = history_state(r);
            if h.active {
                p.running_on.push(node);
            }
            p.failed |= h.failed;
            p.starting |= h.starting;
        }
    }
    p
}

/// Reads every remote and guest node defined by the configuration, in configuration order.
pub fn read_status(cib_root: &Element) -> Vec<NodeStatus> {
    let cib = Cib::new(cib_root);
    let stonith = cib.stonith_enabled();
    let cluster_maintenance = cib.cluster_option("maintenance-mode").is_some_and(is_true);
    let remote_names: Vec<String> = cib
        .primitives()
        .iter()
        .filter_map(|p| p.defines_node().map(str::to_string))
        .collect();
    // Cluster nodes that are up, with their status entries.
    let cluster_states: Vec<(&str, &Element)> = cib
        .section("status")
        .into_iter()
        .flat_map(|s| s.children.iter())
        .filter(|s| s.name == "node_state" && s.attr("remote_node").is_none())
        .filter(|s| {
            up_flag(s.attr("in_ccm"))
                && up_flag(s.attr("crmd"))
                && s.attr("join").is_none_or(|j| j == "member")
        })
        .filter_map(|s| Some((s.attr("uname")?, s)))
        .filter(|(n, _)| !remote_names.iter().any(|r| r.eq_ignore_ascii_case(n)))
        .collect();

    let mut out = Vec::new();
    for p in cib.primitives() {
        let Some(name) = p.defines_node() else {
            continue;
        };
        let (kind, connection, guest_resource, address) = if p.is_remote_connection() {
            let addr = p.param("server").or(p.param("addr")).unwrap_or(name);
            (NodeKind::Remote, name.to_string(), None, addr.to_string())
        } else {
            let addr = p.meta("remote-addr").unwrap_or(name);
            (
                NodeKind::Guest,
                name.to_string(),
                Some(p.id().to_string()),
                addr.to_string(),
            )
        };
        let conn = placement(&connection, &cluster_states);
        let container = guest_resource
            .as_deref()
            .map(|g| placement(g, &cluster_states));
        let conn_managed = p.meta("is-managed").is_none_or(is_true) && !cluster_maintenance;

        let conn_started = !conn.running_on.is_empty();
        let mut online = conn_started && !conn.failed;
        let mut unclean = false;
        if let Some(c) = &container
            && (c.failed || c.running_on.is_empty())
        {
            online = false;
        }
        // A remote connection that failed while fencing is on means the node must be fenced
        // ("remote connection is unrecoverable"), unless it already was or is unmanaged.
        let state_el = cib.node_state(name);
        let fenced_at = state_el
            .and_then(|s| int_attr(s, "node_fenced"))
            .filter(|n| *n > 0);
        let fenced = fenced_at.is_some();
        if kind == NodeKind::Remote
            && conn.failed
            && conn_started
            && stonith
            && conn_managed
            && !fenced
        {
            unclean = true;
            online = false;
        }
        let pending = !online
            && !unclean
            && (conn.starting || container.as_ref().is_some_and(|c| c.starting));

        let attr = |n: &str| -> Option<String> {
            let permanent = cib
                .node_entry(name)
                .and_then(|e| nv_lookup(e, "instance_attributes", n));
            let transient = state_el
                .and_then(|s| s.child("transient_attributes"))
                .and_then(|t| nv_lookup(t, "instance_attributes", n));
            // Transient values override permanent ones, as in the scheduler.
            transient.or(permanent).map(str::to_string)
        };
        let standby_configured = attr("standby").is_some_and(|v| is_true(&v));
        let maintenance_configured = attr("maintenance").is_some_and(|v| is_true(&v));
        // The scheduler unpacks a remote node's attributes and history only once its connection
        // (and a guest's resource) is known to be started, failed or not; with fencing enabled it
        // also unpacks every remaining node in a last pass.
        let visible = (conn_started && container.as_ref().is_none_or(|c| !c.running_on.is_empty()))
            || stonith;
        let standby = visible && standby_configured;
        let maintenance = visible && (maintenance_configured || !conn_managed);

        let host = conn.running_on.first().map(|s| s.to_string());
        let mut resources = Vec::new();
        let mut failed_actions = Vec::new();
        for (node, state) in &cluster_states {
            for r in lrm_resources(state) {
                let id = r.attr("id");
                if id == Some(connection.as_str())
                    || id.is_some() && id == guest_resource.as_deref()
                {
                    failed_actions_of(r, node, &mut failed_actions);
                }
            }
        }
        if visible && let Some(s) = state_el {
            for r in lrm_resources(s) {
                let h = history_state(r);
                if h.active {
                    let agent = match r.attr("provider") {
                        Some(pr) => format!(
                            "{}:{pr}:{}",
                            r.attr("class").unwrap_or(""),
                            r.attr("type").unwrap_or("")
                        ),
                        None => format!(
                            "{}:{}",
                            r.attr("class").unwrap_or(""),
                            r.attr("type").unwrap_or("")
                        ),
                    };
                    resources.push(ActiveResource {
                        id: r.attr("id").unwrap_or("").into(),
                        agent,
                        role: if h.promoted { "Promoted" } else { "Started" }.into(),
                        failed: h.failed,
                    });
                }
                // Like crm_mon: failures are listed only for a node that is online.
                if online {
                    failed_actions_of(r, name, &mut failed_actions);
                }
            }
        }
        resources.sort_by(|a, b| a.id.cmp(&b.id));
        failed_actions
            .sort_by(|a, b| (&a.resource, &a.node, &a.task).cmp(&(&b.resource, &b.node, &b.task)));

        let state = if unclean {
            NodeState::Unclean
        } else if pending {
            NodeState::Pending
        } else if !online {
            NodeState::Offline
        } else if maintenance {
            NodeState::Maintenance
        } else if standby {
            NodeState::Standby
        } else {
            NodeState::Online
        };
        out.push(NodeStatus {
            name: name.into(),
            kind,
            state,
            online,
            standby,
            maintenance,
            unclean,
            pending,
            standby_configured,
            maintenance_configured,
            connection,
            guest_resource,
            address,
            host,
            resources,
            failed_actions,
            fenced_at,
        });
    }
    out
}

/// Node states keyed by name, for callers that look nodes up.
pub fn by_name(statuses: Vec<NodeStatus>) -> BTreeMap<String, NodeStatus> {
    statuses.into_iter().map(|s| (s.name.clone(), s)).collect()
}

/// Whether resource `id` is active (or failed-but-not-stopped) anywhere in the status section;
/// removal waits for this to become false.
pub fn resource_active(cib_root: &Element, id: &str) -> bool {
    let cib = Cib::new(cib_root);
    cib.section("status")
        .into_iter()
        .flat_map(|s| s.children.iter())
        .filter(|s| s.name == "node_state")
        .flat_map(lrm_resources)
        .filter(|r| r.attr("id") == Some(id))
        .any(|r| {
            let h = history_state(r);
            h.active || h.starting
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str, task: &str, call: i64, rc: i64, status: i64, interval: i64) -> Element {
        Element::new("lrm_rsc_op")
            .with_attr("id", id)
            .with_attr("operation", task)
            .with_attr("call-id", call)
            .with_attr("rc-code", rc)
            .with_attr("op-status", status)
            .with_attr("interval", interval)
    }

    #[test]
    fn history_replay() {
        let mut r = Element::new("lrm_resource").with_attr("id", "r");
        r.children.push(op("r_last_0", "start", 3, 0, 0, 0));
        r.children
            .push(op("r_monitor_30000", "monitor", 4, 0, 0, 30000));
        assert_eq!(
            history_state(&r),
            HistoryState {
                active: true,
                ..Default::default()
            }
        );
        // "Not running" from the recurring monitor: failed, and still active until a stop.
        r.children[1] = op("r_monitor_30000", "monitor", 4, 7, 0, 30000);
        let s = history_state(&r);
        assert!(s.active && s.failed);
        // Stopped cleanly after a failure: nothing left.
        r.children.push(op("r_last_0", "stop", 5, 0, 0, 0));
        r.children.remove(0);
        assert_eq!(history_state(&r), HistoryState::default());
        // A pending start.
        let mut p = Element::new("lrm_resource").with_attr("id", "p");
        p.children.push(op("p_last_0", "start", -1, 193, -1, 0));
        assert!(history_state(&p).starting);
    }

    /// `node_fenced` is the controller's mark of confirmed fencing: a time while set, `0` once
    /// the node reconnected.
    #[test]
    fn fenced_at_is_the_node_fenced_mark() {
        let cib = |mark: &str| {
            Element::parse(&format!(
                r#"<cib><configuration><crm_config/><nodes><node id="1" uname="node1"/></nodes><resources><primitive id="rn" class="ocf" provider="pacemaker" type="remote"/></resources><constraints/></configuration><status><node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member"/><node_state id="rn" uname="rn" remote_node="true" {mark}/></status></cib>"#
            ))
            .unwrap()
        };
        let read = |mark: &str| read_status(&cib(mark))[0].fenced_at;
        assert_eq!(read(r#"node_fenced="1765012345""#), Some(1765012345));
        assert_eq!(read(r#"node_fenced="0""#), None);
        assert_eq!(read(""), None);
    }
}
