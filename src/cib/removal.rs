//! Removing a remote or guest node through the CIB alone, in the order `pcs cluster node
//! remove-remote` + `crm_node --force --remove` use (cib-access.md §3.6):
//!
//! 1. `target-role=Stopped` on the connection (remote) or the guest's resource, so the controller
//!    disconnects cleanly and purges the node's transient attributes itself;
//! 2. wait until the status section shows it stopped;
//! 3. one transaction deleting the resource, constraints naming it or the node, the `<node>`
//!    entry and the `<node_state>`.

use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::wire::Element;

use super::client::{ApplyReport, CibClient, CibError};
use super::model::{Cib, id_step};
use super::patch::element_path;
use super::plan::{self, Change, NODES_PATH, NodeChanges, Plan, STATUS_PATH};
use super::status::resource_active;

#[derive(Debug, Clone)]
pub struct RemovalOptions {
    /// How long to wait for the resource to stop.
    pub stop_timeout: Duration,
    pub poll_interval: Duration,
    /// Delete even if the resource did not stop in time (the node may then need fencing or a
    /// manual `crm_resource --cleanup`).
    pub force: bool,
}

impl Default for RemovalOptions {
    fn default() -> Self {
        RemovalOptions {
            stop_timeout: Duration::from_secs(120),
            poll_interval: Duration::from_millis(500),
            force: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovalReport {
    /// The resource that defined the node, if it still existed.
    pub resource: Option<String>,
    /// Whether the resource was seen stopped before deletion.
    pub stopped: bool,
    pub writes: ApplyReport,
}

/// What defines node `name` in `live`: the resource id and the ids whose history shows it active
/// (the connection; for guests also the guest's resource).
pub fn defining_resource(live: &Element, name: &str) -> Option<(String, Vec<String>)> {
    let cib = Cib::new(live);
    cib.primitives().into_iter().find_map(|p| {
        let n = p.defines_node().or(p.guest_node_name())?;
        let matches = n.eq_ignore_ascii_case(name)
            || (p.is_remote_connection() && p.id().eq_ignore_ascii_case(name));
        if !matches {
            return None;
        }
        let mut watch = vec![p.id().to_string()];
        if !p.is_remote_connection() {
            watch.push(n.to_string());
        }
        Some((p.id().to_string(), watch))
    })
}

/// Pure: the changes that delete every trace of node `name` from `live`.
pub fn removal_plan(live: &Element, name: &str) -> Plan {
    let cib = Cib::new(live);
    let mut changes = Vec::new();
    let rsc = defining_resource(live, name).map(|(id, _)| id);
    if let Some(id) = &rsc
        && let Some(p) = cib.primitive(id)
    {
        // An emptied group or clone is invalid: take the container with it.
        let target = match p.ancestors.last() {
            Some(_) => find_sole_container(live, p.element).unwrap_or(p.element),
            None => p.element,
        };
        if let Some(path) = element_path(live, target) {
            changes.push(Change::Delete { path });
        }
    }
    if let Some(constraints) = cib.section("constraints") {
        for c in &constraints.children {
            let names_it =
                |v: &str| v.eq_ignore_ascii_case(name) || rsc.as_deref().is_some_and(|r| v == r);
            let attr_hit = ["rsc", "with-rsc", "first", "then", "node"]
                .iter()
                .filter_map(|a| c.attr(a))
                .any(names_it);
            let set_hit = c
                .children
                .iter()
                .filter(|s| s.name == "resource_set")
                .flat_map(|s| s.children.iter())
                .filter_map(|r| r.attr("id"))
                .any(names_it);
            if (attr_hit || set_hit)
                && let Some(id) = c.attr("id")
            {
                changes.push(Change::Delete {
                    path: format!("{}/{}", plan::CONSTRAINTS_PATH, id_step(&c.name, id)),
                });
            }
        }
    }
    if let Some(n) = cib.node_entry(name)
        && n.attr("type").is_none_or(|t| t == "remote")
        && let Some(id) = n.attr("id")
    {
        changes.push(Change::Delete {
            path: format!("{NODES_PATH}/{}", id_step("node", id)),
        });
    }
    if let Some(s) = cib.node_state(name)
        && s.attr("remote_node").is_some()
        && let Some(id) = s.attr("id")
    {
        changes.push(Change::Delete {
            path: format!("{STATUS_PATH}/{}", id_step("node_state", id)),
        });
    }
    let mut out = Plan::default();
    if !changes.is_empty() {
        out.nodes.push(NodeChanges {
            node: name.into(),
            changes,
        });
    }
    out
}

/// The outermost group/clone that holds nothing but `el` (directly or through single-child
/// containers).
fn find_sole_container<'a>(root: &'a Element, el: &'a Element) -> Option<&'a Element> {
    fn walk<'a>(cur: &'a Element, target: &Element, chain: &mut Vec<&'a Element>) -> bool {
        if std::ptr::eq(cur, target) {
            return true;
        }
        for c in &cur.children {
            chain.push(c);
            if walk(c, target, chain) {
                return true;
            }
            chain.pop();
        }
        false
    }
    let mut chain = Vec::new();
    if !walk(root, el, &mut chain) {
        return None;
    }
    // chain = [configuration?, ..., resources, outer, ..., el]
    let mut best = None;
    for w in chain.iter().rev().skip(1) {
        if !matches!(w.name.as_str(), "group" | "clone" | "master" | "bundle") {
            break;
        }
        let resource_children = w
            .children
            .iter()
            .filter(|c| matches!(c.name.as_str(), "primitive" | "group" | "clone" | "master"))
            .count();
        if resource_children != 1 {
            break;
        }
        best = Some(*w);
    }
    best
}

/// Stops, waits for, deletes and purges node `name`. Safe to repeat: every step skips what is
/// already done.
pub async fn remove_node(
    client: &CibClient,
    name: &str,
    opts: &RemovalOptions,
) -> Result<RemovalReport, CibError> {
    let mut report = RemovalReport::default();
    let live = client.query_cib().await?;
    let defining = defining_resource(&live, name);
    drop(live);
    if let Some((rsc, watch)) = &defining {
        report.resource = Some(rsc.clone());
        info!(node = name, resource = %rsc, "stopping before removal");
        let r = client
            .apply_with_retry(
                |live| {
                    let changes = plan::stop_resource(live, rsc);
                    let mut p = Plan::default();
                    if !changes.is_empty() {
                        p.nodes.push(NodeChanges {
                            node: name.into(),
                            changes,
                        });
                    }
                    Ok(p)
                },
                false,
            )
            .await?;
        report.writes.transactions += r.transactions;
        report.writes.conflicts += r.conflicts;
        report.writes.changes += r.changes;
        let deadline = Instant::now() + opts.stop_timeout;
        loop {
            let live = client.query_cib().await?;
            if !watch.iter().any(|id| resource_active(&live, id)) {
                report.stopped = true;
                break;
            }
            if Instant::now() >= deadline {
                if opts.force {
                    debug!(
                        node = name,
                        "resource still active; deleting anyway (forced)"
                    );
                    break;
                }
                return Err(CibError::Other(format!(
                    "{rsc} (node {name}) is still active {:?} after target-role=Stopped; check `crm_mon` for a failed stop, or remove with force",
                    opts.stop_timeout
                )));
            }
            tokio::time::sleep(opts.poll_interval).await;
        }
    } else {
        report.stopped = true;
    }
    let r = client
        .apply_with_retry(|live| Ok(removal_plan(live, name)), false)
        .await?;
    report.writes.transactions += r.transactions;
    report.writes.conflicts += r.conflicts;
    report.writes.changes += r.changes;
    report.writes.last_read = r.last_read;
    info!(node = name, "node removed from the CIB");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cib::patch::apply_change;

    #[test]
    fn removal_plan_deletes_every_trace() {
        let mut live = Element::parse(r#"<cib epoch="1" num_updates="0" admin_epoch="0"><configuration><nodes><node id="1" uname="node1"/><node id="r1" uname="r1" type="remote"><instance_attributes id="nodes-r1"/></node></nodes><resources><primitive id="r1" class="ocf" provider="pacemaker" type="remote"/><group id="g"><primitive id="vm" class="ocf" provider="heartbeat" type="Dummy"><meta_attributes id="vm-m"><nvpair id="vm-m-rn" name="remote-node" value="g1"/></meta_attributes></primitive></group></resources><constraints><rsc_location id="l1" rsc="r1" node="node1" score="100"/><rsc_location id="l2" rsc="other" node="R1" score="100"/><rsc_location id="l3" rsc="other" node="node1" score="1"/></constraints></configuration><status><node_state id="1" uname="node1"/><node_state id="r1" uname="r1" remote_node="true"/></status></cib>"#).unwrap();
        let p = removal_plan(&live, "r1");
        let described: Vec<_> = p.changes().map(Change::describe).collect();
        assert_eq!(
            described,
            vec![
                "delete /cib/configuration/resources/primitive[@id='r1']",
                "delete /cib/configuration/constraints/rsc_location[@id='l1']",
                "delete /cib/configuration/constraints/rsc_location[@id='l2']",
                "delete /cib/configuration/nodes/node[@id='r1']",
                "delete /cib/status/node_state[@id='r1']",
            ]
        );
        for c in p.changes() {
            apply_change(&mut live, c).unwrap();
        }
        assert!(!live.to_xml().contains("r1"));
        // A guest alone in its group takes the group with it.
        let g = removal_plan(&live, "g1");
        assert_eq!(
            g.changes().map(Change::describe).collect::<Vec<_>>(),
            vec!["delete /cib/configuration/resources/group[@id='g']"]
        );
        assert!(removal_plan(&live, "nothing").is_empty());
    }
}
