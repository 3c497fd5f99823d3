//! Checks of desired nodes against each other and against the live CIB: `crm_verify` accepts all
//! of these broken set-ups and the node then silently fails to appear, merges with another, or
//! crashes the scheduler (cib-access.md §5).

use std::collections::BTreeMap;

use crate::cib::desired::{DesiredKind, DesiredNode};
use crate::cib::model::{Cib, LivePrimitive, Placement};
use crate::wire::Element;

use crate::cib::validate::Problem;

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
    use crate::cib::spec::RemoteNodeSpec;

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
}
