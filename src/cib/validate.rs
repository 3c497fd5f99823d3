//! Checks Pacemaker itself does not make: `crm_verify` accepts all of these broken set-ups and the
//! node then silently fails to appear, merges with another, or crashes the scheduler
//! (cib-access.md §5). Every problem says what clashes with what and what to do about it.

use std::collections::BTreeMap;

use crate::wire::Element;

use super::model::{Cib, LivePrimitive, Placement, is_valid_id};
use super::plan::{DesiredKind, DesiredNode};
use super::spec::{NodeType, RemoteNodeSpec};

/// Longest node name accepted: a DNS subdomain (Kubernetes node names) fits; Pacemaker's own
/// buffers are 256 bytes.
pub const MAX_NAME_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "{what} {value:?} of node {node:?} is not a name Pacemaker accepts: {reason}; use letters, digits, '-', '_' and '.', starting with a letter or '_' (a lowercase DNS label is safest)"
    )]
    InvalidName {
        node: String,
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "node name {node:?} clashes with {other} (Pacemaker compares names case-insensitively, so the node would not appear or would merge with it); choose another node name"
    )]
    NameClash { node: String, other: String },
    #[error(
        "guest node {node:?} has the same name as its own resource {resource:?}; Pacemaker would create a bogus node; name the resource differently (e.g. vm-{node})"
    )]
    GuestNameIsResourceId { node: String, resource: String },
    #[error(
        "resource id {resource:?} wanted for node {node:?} is already used by {other}; pick another guest.resourceId or remove that resource"
    )]
    ResourceIdTaken {
        node: String,
        resource: String,
        other: String,
    },
    #[error(
        "{what} {resource:?} of node {node:?} is inside {parent_tag} {parent_id:?}; Pacemaker only makes nodes from {allowed}; move it out (e.g. `pcs resource ungroup {parent_id}`) or remove the {parent_tag}"
    )]
    Nested {
        node: String,
        what: &'static str,
        resource: String,
        parent_tag: String,
        parent_id: String,
        allowed: &'static str,
    },
    #[error(
        "constraint {constraint:?} ({tag}) involves {resource:?}, the connection of node {node:?}: {reason}; remove the constraint (`pcs constraint remove {constraint}`)"
    )]
    Constraint {
        node: String,
        constraint: String,
        tag: String,
        resource: String,
        reason: &'static str,
    },
    #[error(
        "address {address:?} of node {node:?} is already used by {other}; two nodes on one address would fight over one pacemaker-remoted; give each node its own address"
    )]
    AddressClash {
        node: String,
        address: String,
        other: String,
    },
    #[error(
        "{field} of node {node:?} is {value:?}: Pacemaker 2.1 rewrites values of the form `name++` and `name+=N` as score arithmetic; choose another value"
    )]
    ScoreArithmetic {
        node: String,
        field: String,
        value: String,
    },
    #[error("port of node {node:?} is {value}; use a TCP port between 1 and 65535 (default 3121)")]
    Port { node: String, value: i64 },
    #[error(
        "{field} of node {node:?} is {value:?}, which is not a duration; write e.g. 30s, 500ms, 2min, 1h or PT1M"
    )]
    Duration {
        node: String,
        field: &'static str,
        value: String,
    },
    #[error("{field} of node {node:?}: {reason}")]
    Spec {
        node: String,
        field: &'static str,
        reason: String,
    },
    #[error(
        "node name {node:?} still has state from an earlier node of that name ({leftover}); purge it first (`kubemaker cib remove {node}` or `crm_node --force --remove {node}`), or choose another name"
    )]
    Leftover { node: String, leftover: String },
    #[error("node {node:?} is listed twice; each node must appear once")]
    Duplicate { node: String },
    #[error(
        "fencing is enabled but {reason}, so if node {node:?} fails, recovery of its resources blocks until it is fenced by hand; configure a fence device that can target {node:?} (pcmk_host_list or pcmk_host_map) or make sure the node's resources may wait"
    )]
    Fencing { node: String, reason: String },
}

impl Problem {
    /// The node the problem is about.
    pub fn node(&self) -> &str {
        match self {
            Problem::InvalidName { node, .. }
            | Problem::NameClash { node, .. }
            | Problem::GuestNameIsResourceId { node, .. }
            | Problem::ResourceIdTaken { node, .. }
            | Problem::Nested { node, .. }
            | Problem::Constraint { node, .. }
            | Problem::AddressClash { node, .. }
            | Problem::ScoreArithmetic { node, .. }
            | Problem::Port { node, .. }
            | Problem::Duration { node, .. }
            | Problem::Spec { node, .. }
            | Problem::Leftover { node, .. }
            | Problem::Duplicate { node }
            | Problem::Fencing { node, .. } => node,
        }
    }
}

/// Why `text` cannot be an id, or `None` when it can.
fn name_problem(text: &str) -> Option<String> {
    if text.is_empty() {
        return Some("it is empty".into());
    }
    if text.len() > MAX_NAME_LEN {
        return Some(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if !is_valid_id(text) {
        let bad: String = text
            .chars()
            .enumerate()
            .filter(|(i, c)| {
                !(c.is_ascii_alphanumeric() || *c == '_' || (*i > 0 && matches!(c, '-' | '.')))
            })
            .map(|(_, c)| c)
            .take(5)
            .collect();
        return Some(format!("it contains or starts with {bad:?}"));
    }
    None
}

/// Pacemaker's interval syntax: a number with an optional unit, or an ISO 8601 duration.
pub fn is_duration(text: &str) -> bool {
    let t = text.trim();
    if let Some(iso) = t.strip_prefix('P') {
        return is_iso_duration(iso);
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    matches!(
        t[digits..].trim(),
        "" | "ms" | "msec" | "us" | "usec" | "s" | "sec" | "m" | "min" | "h" | "hr"
    )
}

fn is_iso_duration(rest: &str) -> bool {
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let fields_ok = |part: &str, units: &str| {
        let mut num = false;
        let mut order = 0;
        for c in part.chars() {
            if c.is_ascii_digit() {
                num = true;
            } else if let Some(i) = units.find(c) {
                if !num || i < order {
                    return false;
                }
                order = i + 1;
                num = false;
            } else {
                return false;
            }
        }
        !num
    };
    let any = !date.is_empty() || time.is_some_and(|t| !t.is_empty());
    any && fields_ok(date, "YMWD") && time.is_none_or(|t| !t.is_empty() && fields_ok(t, "HMS"))
}

fn has_score_arithmetic(value: &str) -> bool {
    let v = value.trim_end();
    v.ends_with("++") || v.contains("+=")
}

/// Checks a spec on its own, without looking at any cluster.
pub fn check_spec(name: &str, spec: &RemoteNodeSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    let node = || name.to_string();
    if let Some(reason) = name_problem(name) {
        out.push(Problem::InvalidName {
            node: node(),
            what: "node name",
            value: name.into(),
            reason,
        });
    }
    if let Some(port) = spec.port
        && !(1..=65535).contains(&port)
    {
        out.push(Problem::Port {
            node: node(),
            value: port,
        });
    }
    if let Some(addr) = &spec.address
        && (addr.trim().is_empty() || addr.chars().any(|c| c.is_whitespace() || c == '/'))
    {
        out.push(Problem::Spec {
            node: node(),
            field: "address",
            reason: format!("{addr:?} is not a host name or IP address"),
        });
    }
    let monitor = spec.monitor.clone().unwrap_or_default();
    let mut durations: Vec<(&'static str, Option<&String>)> = vec![
        ("reconnectInterval", spec.reconnect_interval.as_ref()),
        ("monitor.interval", monitor.interval.as_ref()),
        ("monitor.timeout", monitor.timeout.as_ref()),
        ("startTimeout", spec.start_timeout.as_ref()),
        ("stopTimeout", spec.stop_timeout.as_ref()),
    ];
    if let Some(g) = &spec.guest {
        durations.push(("guest.connectTimeout", g.connect_timeout.as_ref()));
    }
    for (field, value) in durations {
        if let Some(v) = value
            && !is_duration(v)
        {
            out.push(Problem::Duration {
                node: node(),
                field,
                value: v.clone(),
            });
        }
    }
    if let Some(i) = &monitor.interval
        && is_duration(i)
        && i.trim_start_matches('0')
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_digit())
    {
        out.push(Problem::Spec {
            node: node(),
            field: "monitor.interval",
            reason: format!("{i:?} disables monitoring; Pacemaker would never notice the node failing; use a non-zero interval such as 30s"),
        });
    }
    for (k, v) in &spec.attributes {
        if let Some(reason) = name_problem(k) {
            out.push(Problem::InvalidName {
                node: node(),
                what: "attribute name",
                value: k.clone(),
                reason,
            });
        }
        if matches!(k.as_str(), "standby" | "maintenance") {
            out.push(Problem::Spec {
                node: node(),
                field: "attributes",
                reason: format!("{k:?} is controlled by spec.{k}; set that instead"),
            });
        }
        if has_score_arithmetic(v) {
            out.push(Problem::ScoreArithmetic {
                node: node(),
                field: format!("attribute {k:?}"),
                value: v.clone(),
            });
        }
    }
    match (spec.node_type, &spec.guest) {
        (NodeType::Remote, Some(_)) => out.push(Problem::Spec {
            node: node(),
            field: "guest",
            reason: "is only for `type: guest`; remove it or set the type to guest".into(),
        }),
        (NodeType::Guest, None) => out.push(Problem::Spec {
            node: node(),
            field: "guest",
            reason: "`type: guest` needs a guest section (at least guest.parameters.config for VirtualDomain)".into(),
        }),
        (NodeType::Guest, Some(g)) => {
            if spec.reconnect_interval.is_some() {
                out.push(Problem::Spec {
                    node: node(),
                    field: "reconnectInterval",
                    reason: "applies to remote nodes only; guests reconnect when their resource restarts".into(),
                });
            }
            let rid = g.resource_id.clone().unwrap_or_else(|| format!("vm-{name}"));
            if let Some(reason) = name_problem(&rid) {
                out.push(Problem::InvalidName {
                    node: node(),
                    what: "guest.resourceId",
                    value: rid.clone(),
                    reason,
                });
            }
            if rid.eq_ignore_ascii_case(name) {
                out.push(Problem::GuestNameIsResourceId {
                    node: node(),
                    resource: rid,
                });
            }
            let agent_text = g.agent.as_deref().unwrap_or(super::plan::DEFAULT_GUEST_AGENT);
            match super::model::Agent::parse(agent_text) {
                None => out.push(Problem::Spec {
                    node: node(),
                    field: "guest.agent",
                    reason: format!("{agent_text:?} is not an agent; write class:provider:type (ocf:heartbeat:VirtualDomain) or class:type (systemd:foo)"),
                }),
                Some(a) if a.is_pacemaker_remote() => out.push(Problem::Spec {
                    node: node(),
                    field: "guest.agent",
                    reason: "ocf:pacemaker:remote is a connection, not a guest; use `type: remote`".into(),
                }),
                Some(a) if a.to_string() == super::plan::DEFAULT_GUEST_AGENT => {
                    if !g.parameters.contains_key("config") {
                        out.push(Problem::Spec {
                            node: node(),
                            field: "guest.parameters",
                            reason: "VirtualDomain needs `config` (the path of the libvirt domain XML on the cluster nodes)".into(),
                        });
                    }
                }
                Some(_) => {}
            }
            for (k, v) in &g.parameters {
                if let Some(reason) = name_problem(k) {
                    out.push(Problem::InvalidName {
                        node: node(),
                        what: "guest parameter name",
                        value: k.clone(),
                        reason,
                    });
                }
                if has_score_arithmetic(v) {
                    out.push(Problem::ScoreArithmetic {
                        node: node(),
                        field: format!("guest parameter {k:?}"),
                        value: v.clone(),
                    });
                }
            }
        }
        (NodeType::Remote, None) => {}
    }
    out
}

/// Advice that does not block a write: with fencing enabled, a failed remote node must be fenced
/// before its resources recover, which needs a device able to target it (guests are "fenced" by
/// recovering their resource, so they need none).
pub fn warnings(desired: &[DesiredNode], live: &Element) -> Vec<Problem> {
    let cib = Cib::new(live);
    if !cib.stonith_enabled() {
        return Vec::new();
    }
    let devices: Vec<LivePrimitive<'_>> = cib
        .primitives()
        .into_iter()
        .filter(|p| p.agent().is_some_and(|a| a.class == "stonith"))
        .collect();
    let mut out = Vec::new();
    for d in desired.iter().filter(|d| d.kind == DesiredKind::Remote) {
        let reason = if devices.is_empty() {
            Some("no fence device is configured".to_string())
        } else {
            // A device without a static host list asks the agent which hosts it can fence.
            let can = devices.iter().any(|dev| {
                let list = dev.param("pcmk_host_list");
                let map = dev.param("pcmk_host_map");
                let mentions = |v: &str| {
                    v.split([' ', ',', ';', ':'])
                        .any(|h| h.eq_ignore_ascii_case(&d.name))
                };
                (list.is_none() && map.is_none())
                    || list.is_some_and(mentions)
                    || map.is_some_and(mentions)
            });
            (!can)
                .then(|| "no fence device lists it in pcmk_host_list or pcmk_host_map".to_string())
        };
        if let Some(reason) = reason {
            out.push(Problem::Fencing {
                node: d.name.clone(),
                reason,
            });
        }
    }
    out
}

/// Checks a set of desired nodes against each other and against the live CIB.
pub fn check_against_cib(desired: &[DesiredNode], live: &Element) -> Vec<Problem> {
    let cib = Cib::new(live);
    let prims = cib.primitives();
    let mut out = Vec::new();

    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for d in desired {
        if seen.insert(d.name.to_ascii_lowercase(), &d.name).is_some() {
            out.push(Problem::Duplicate {
                node: d.name.clone(),
            });
        }
    }

    for (i, d) in desired.iter().enumerate() {
        let own = prims.iter().find(|p| p.id() == d.resource_id());
        check_own_resource(d, own, &mut out);
        check_names(d, &cib, &prims, &mut out);
        check_addresses(d, &desired[..i], &prims, &cib, &mut out);
        check_constraints(d, &cib, &mut out);
        check_leftovers(d, &cib, &prims, &mut out);
    }
    // Names and resource ids across the batch (other than exact duplicates, reported above).
    for (i, a) in desired.iter().enumerate() {
        for b in &desired[..i] {
            if a.name.eq_ignore_ascii_case(b.resource_id()) && a.name != b.name {
                out.push(Problem::NameClash {
                    node: a.name.clone(),
                    other: format!(
                        "resource {:?} of node {:?} in the same request",
                        b.resource_id(),
                        b.name
                    ),
                });
            }
            if b.name.eq_ignore_ascii_case(a.resource_id()) && a.name != b.name {
                out.push(Problem::NameClash {
                    node: b.name.clone(),
                    other: format!(
                        "resource {:?} of node {:?} in the same request",
                        a.resource_id(),
                        a.name
                    ),
                });
            }
        }
    }
    out
}

fn describe_primitive(p: &LivePrimitive<'_>) -> String {
    match p.agent() {
        Some(a) => format!("resource {:?} ({a})", p.id()),
        None => format!("resource {:?}", p.id()),
    }
}

/// The primitive with our id must be ours: same agent, right place, right node name.
fn check_own_resource(d: &DesiredNode, own: Option<&LivePrimitive<'_>>, out: &mut Vec<Problem>) {
    let Some(p) = own else { return };
    let same_agent = p.agent().as_ref() == Some(&d.primitive.agent);
    match &d.kind {
        DesiredKind::Remote => {
            if !same_agent {
                out.push(Problem::NameClash {
                    node: d.name.clone(),
                    other: describe_primitive(p),
                });
                return;
            }
            if let Placement::Nested {
                parent_tag,
                parent_id,
            } = &p.placement
            {
                out.push(Problem::Nested {
                    node: d.name.clone(),
                    what: "connection resource",
                    resource: p.id().into(),
                    parent_tag: parent_tag.clone(),
                    parent_id: parent_id.clone(),
                    allowed: "top-level ocf:pacemaker:remote resources (none in groups, clones or bundles)",
                });
            }
        }
        DesiredKind::Guest { resource_id } => {
            // Only a resource that already is this guest is adopted; taking over any other
            // resource would overwrite its parameters and operations.
            let guest_of = p.guest_node_name();
            if !same_agent || !guest_of.is_some_and(|g| g.eq_ignore_ascii_case(&d.name)) {
                out.push(Problem::ResourceIdTaken {
                    node: d.name.clone(),
                    resource: resource_id.clone(),
                    other: match guest_of {
                        Some(g) => format!("{} of guest node {g:?}", describe_primitive(p)),
                        None => describe_primitive(p),
                    },
                });
                return;
            }
            let bad_parent = match p.ancestors.as_slice() {
                [] => None,
                [(tag, _)] if tag == "group" => None,
                list => list.iter().find(|(tag, _)| tag != "group").or(list.last()),
            };
            if let Some((tag, id)) = bad_parent {
                out.push(Problem::Nested {
                    node: d.name.clone(),
                    what: "guest resource",
                    resource: p.id().into(),
                    parent_tag: tag.clone(),
                    parent_id: id.clone(),
                    allowed: "top-level primitives or primitives directly inside a group (never clones or bundles)",
                });
            }
        }
    }
}

fn check_names(
    d: &DesiredNode,
    cib: &Cib<'_>,
    prims: &[LivePrimitive<'_>],
    out: &mut Vec<Problem>,
) {
    let name = d.name.as_str();
    let clash = |other: String| Problem::NameClash {
        node: name.into(),
        other,
    };
    for c in cib.cluster_node_names() {
        if c.eq_ignore_ascii_case(name) {
            out.push(clash(format!("cluster node {c:?}")));
        }
    }
    // Every resource id except this node's own (checked in check_own_resource; a guest named
    // like its own resource is rejected by check_spec).
    let own_id = d.resource_id();
    for id in cib.resource_ids() {
        if id == own_id {
            continue;
        }
        if id.eq_ignore_ascii_case(name) {
            let what = prims
                .iter()
                .find(|p| p.id() == id)
                .map(describe_primitive)
                .unwrap_or_else(|| format!("resource {id:?}"));
            let hint = if prims
                .iter()
                .any(|p| p.id() == id && p.is_remote_connection())
            {
                " — the existing remote node of that name; remove it before re-creating it as a guest"
            } else {
                ""
            };
            out.push(clash(format!("{what}{hint}")));
        }
    }
    // Other guests' node names.
    for p in prims {
        if p.id() == own_id {
            continue;
        }
        if let Some(g) = p.guest_node_name()
            && g.eq_ignore_ascii_case(name)
        {
            out.push(clash(format!(
                "guest node {g:?} defined by resource {:?}",
                p.id()
            )));
        }
        // Our guest resource id against other guests' node names.
        if let DesiredKind::Guest { resource_id } = &d.kind
            && let Some(g) = p.guest_node_name()
            && g.eq_ignore_ascii_case(resource_id)
        {
            out.push(Problem::ResourceIdTaken {
                node: name.into(),
                resource: resource_id.clone(),
                other: format!("the name of guest node {g:?} (resource {:?})", p.id()),
            });
        }
    }
    if let DesiredKind::Guest { resource_id } = &d.kind {
        for c in cib.cluster_node_names() {
            if c.eq_ignore_ascii_case(resource_id) {
                out.push(Problem::ResourceIdTaken {
                    node: name.into(),
                    resource: resource_id.clone(),
                    other: format!("the name of cluster node {c:?}"),
                });
            }
        }
    }
}

fn check_addresses(
    d: &DesiredNode,
    earlier: &[DesiredNode],
    prims: &[LivePrimitive<'_>],
    cib: &Cib<'_>,
    out: &mut Vec<Problem>,
) {
    let addr = d.address.as_str();
    let mut clash = |other: String| {
        out.push(Problem::AddressClash {
            node: d.name.clone(),
            address: addr.into(),
            other,
        })
    };
    for p in prims.iter().filter(|p| p.id() != d.resource_id()) {
        if p.is_remote_connection() {
            let server = p.param("server").or(p.param("addr")).unwrap_or(p.id());
            if server.eq_ignore_ascii_case(addr) {
                clash(format!("remote node {:?}", p.id()));
            }
        } else if let Some(g) = p.guest_node_name() {
            let a = p.meta("remote-addr").unwrap_or(g);
            if a.eq_ignore_ascii_case(addr) {
                clash(format!("guest node {g:?} (resource {:?})", p.id()));
            }
        }
    }
    for c in cib.cluster_node_names() {
        if c.eq_ignore_ascii_case(addr) {
            clash(format!("cluster node {c:?}"));
        }
    }
    if matches!(addr, "127.0.0.1" | "::1" | "localhost") {
        clash("the cluster nodes themselves (a loopback address)".into());
    }
    for e in earlier {
        if e.address.eq_ignore_ascii_case(addr) && !e.name.eq_ignore_ascii_case(&d.name) {
            clash(format!("node {:?} in the same request", e.name));
        }
    }
}

/// Connections may be pinned to cluster nodes with rsc_location and nothing else.
fn check_constraints(d: &DesiredNode, cib: &Cib<'_>, out: &mut Vec<Problem>) {
    let Some(constraints) = cib.section("constraints") else {
        return;
    };
    // The connection: the primitive for remote nodes, the implicit one (named like the node)
    // for guests.
    let connection = match d.kind {
        DesiredKind::Remote => d.resource_id().to_string(),
        DesiredKind::Guest { .. } => d.name.clone(),
    };
    let remote_names: Vec<String> = cib
        .primitives()
        .iter()
        .filter_map(|p| p.defines_node().map(str::to_string))
        .chain(std::iter::once(d.name.clone()))
        .collect();
    for c in &constraints.children {
        let cid = c.attr("id").unwrap_or("").to_string();
        let refs = referenced_resources(c);
        let mut report = |resource: &str, reason: &'static str| {
            out.push(Problem::Constraint {
                node: d.name.clone(),
                constraint: cid.clone(),
                tag: c.name.clone(),
                resource: resource.into(),
                reason,
            })
        };
        match c.name.as_str() {
            "rsc_location" => {
                let pinned_to = c.attr("node");
                let positive = c.attr("score").is_none_or(|s| !s.starts_with('-'));
                let to_remote = pinned_to
                    .is_some_and(|n| remote_names.iter().any(|r| r.eq_ignore_ascii_case(n)));
                if refs.iter().any(|r| r == &connection) && to_remote && positive {
                    report(
                        &connection,
                        "a connection can only run on a cluster node, never on a remote or guest node",
                    );
                }
                if let DesiredKind::Guest { resource_id } = &d.kind
                    && refs.iter().any(|r| r == resource_id)
                    && to_remote
                    && positive
                {
                    report(
                        resource_id,
                        "a guest's resource cannot run on a remote or guest node",
                    );
                }
            }
            "rsc_colocation" | "rsc_order" | "rsc_ticket"
                if refs.iter().any(|r| r == &connection) =>
            {
                report(
                    &connection,
                    "Pacemaker places connections first, so colocation/order/ticket constraints on them misbehave; let kubemaker manage the connection alone",
                );
            }
            _ => {}
        }
    }
}

/// Resource ids a constraint names, in attributes or resource sets.
fn referenced_resources(c: &Element) -> Vec<String> {
    let mut out: Vec<String> = ["rsc", "with-rsc", "first", "then"]
        .iter()
        .filter_map(|a| c.attr(a).map(str::to_string))
        .collect();
    for set in c.children.iter().filter(|s| s.name == "resource_set") {
        for r in set.children.iter().filter(|r| r.name == "resource_ref") {
            if let Some(id) = r.attr("id") {
                out.push(id.into());
            }
        }
    }
    out
}

/// A node_state or node entry of this name with nothing in the configuration defining it means
/// an earlier node was removed without purging.
fn check_leftovers(
    d: &DesiredNode,
    cib: &Cib<'_>,
    prims: &[LivePrimitive<'_>],
    out: &mut Vec<Problem>,
) {
    let defined = prims.iter().any(|p| {
        p.defines_node()
            .is_some_and(|n| n.eq_ignore_ascii_case(&d.name))
    });
    if defined {
        return;
    }
    if let Some(state) = cib.node_state(&d.name)
        && state.attr("remote_node").is_some()
        && !state.children.is_empty()
    {
        out.push(Problem::Leftover {
            node: d.name.clone(),
            leftover: "its resource history and attributes in <status>".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_warnings() {
        let d = DesiredNode::from_spec("rn1", &RemoteNodeSpec::default()).unwrap();
        let cib = |config: &str, rsc: &str| {
            Element::parse(&format!(
                r#"<cib><configuration><crm_config>{config}</crm_config><nodes/><resources>{rsc}</resources><constraints/></configuration></cib>"#
            ))
            .unwrap()
        };
        let off = r#"<cluster_property_set id="o"><nvpair id="o1" name="stonith-enabled" value="false"/></cluster_property_set>"#;
        assert!(warnings(std::slice::from_ref(&d), &cib(off, "")).is_empty());
        let w = warnings(std::slice::from_ref(&d), &cib("", ""));
        assert!(
            w[0].to_string().contains("no fence device is configured"),
            "{w:?}"
        );
        let listed = r#"<primitive id="f" class="stonith" type="fence_x"><instance_attributes id="f-ia"><nvpair id="f-ia-l" name="pcmk_host_list" value="node1,rn1"/></instance_attributes></primitive>"#;
        assert!(warnings(std::slice::from_ref(&d), &cib("", listed)).is_empty());
        let other = listed.replace("node1,rn1", "node1");
        assert_eq!(
            warnings(std::slice::from_ref(&d), &cib("", &other)).len(),
            1
        );
        let dynamic = r#"<primitive id="f" class="stonith" type="fence_x"/>"#;
        assert!(warnings(&[d], &cib("", dynamic)).is_empty());
    }

    #[test]
    fn durations() {
        for ok in [
            "30s", "0", "500ms", "2min", "1h", "10", "PT1M", "P1DT2H", "5 s",
        ] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "s", "30x", "-5s", "P", "PT", "1.5s", "PT1H1H2"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn spec_problems_are_reported_together() {
        let spec = RemoteNodeSpec {
            port: Some(70000),
            reconnect_interval: Some("soon".into()),
            attributes: [
                ("rack".into(), "r1++".into()),
                ("bad name".into(), "x".into()),
            ]
            .into(),
            ..Default::default()
        };
        let problems = check_spec("1node", &spec);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 5, "{text:#?}");
        assert!(text.iter().any(|t| t.contains("between 1 and 65535")));
        assert!(
            text.iter()
                .any(|t| t.contains("\"soon\", which is not a duration"))
        );
        assert!(text.iter().any(|t| t.contains("score arithmetic")));
    }
}
