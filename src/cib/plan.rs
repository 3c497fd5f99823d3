//! The pure planner: desired nodes against a live CIB become the changes one `cib_apply_diff`
//! can carry; and the changes that stop a node's resource, and that delete every trace of a node.
//!
//! Ownership (what a reconcile puts back, and what an administrator's `pcs`/`crm` edits keep):
//! kubemaker owns, of a node's primitive (connection resource, or the guest's resource), its own
//! attributes (id, class, provider, type), its `<id>-instance_attributes` set whole (the agent's
//! parameters are the RemoteNode's spec), the nvpairs it writes in `<id>-meta_attributes` (by
//! name), and the operations whose name and role it writes (one each); a connection's recovery
//! mark (the set `<id>-recovery`, see `model::Primitive::recovery`) is written only when a desired
//! node carries one and is otherwise left as it is, so that neither a reconcile nor
//! `kubemaker cib apply` undoes a recovery (or triggers another). Everything else in the
//! primitive is the administrator's and survives: `target-role` (`pcs resource disable`), other
//! meta attributes, operations of other names or roles, utilization, other sets; so do constraints
//! on it. In `<nodes>` kubemaker owns only its attribute set `nodes-<name>-kubemaker` (and the
//! utilization set `nodes-<name>-utilization`); an attribute an administrator set in another set
//! of the node wins, and kubemaker writes no second copy of it. Nodes not in the desired list are
//! never touched by [`plan`]; [`removal_plan`] is the one way a node goes.

use std::collections::BTreeMap;

use crate::wire::Element;

use super::desired::DesiredNode;
use super::model::{
    Cib, CibVersion, NvSet, foreign_attribute_names, id_step, stray_own_attributes,
};
use super::patch::{
    CONSTRAINTS_PATH, Change, NODES_PATH, RESOURCES_PATH, STATUS_PATH, element_path,
};

/// The changes for one node; a node's changes always travel in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeChanges {
    pub node: String,
    pub changes: Vec<Change>,
}

/// Desired minus live. Empty when the CIB already matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub nodes: Vec<NodeChanges>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.nodes.iter().all(|n| n.changes.is_empty())
    }

    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.nodes.iter().flat_map(|n| n.changes.iter())
    }

    pub fn change_count(&self) -> usize {
        self.nodes.iter().map(|n| n.changes.len()).sum()
    }

    /// A v2 patchset that applies only to exactly `source`: the server answers -205 if the CIB
    /// moved on since it was read.
    pub fn to_patch(&self, source: CibVersion) -> Element {
        let version = Element::new("version")
            .with_child(source.to_element("source"))
            .with_child(source.next_config().to_element("target"));
        let mut diff = Element::new("diff")
            .with_attr("format", "2")
            .with_child(version);
        diff.children.extend(self.changes().map(Change::to_element));
        diff
    }

    /// Splits into plans of at most `max_nodes` nodes each (never splitting one node's changes).
    /// Create positions stay valid because each batch is re-planned against the CIB it applies to
    /// by the service's `apply_nodes`; this split is for callers that apply a
    /// precomputed plan in one go.
    pub fn batches(self, max_nodes: usize) -> Vec<Plan> {
        let max = max_nodes.max(1);
        let mut out: Vec<Plan> = Vec::new();
        for n in self.nodes.into_iter().filter(|n| !n.changes.is_empty()) {
            match out.last_mut() {
                Some(p) if p.nodes.len() < max => p.nodes.push(n),
                _ => out.push(Plan { nodes: vec![n] }),
            }
        }
        out
    }
}

/// Plans `desired` against `live` (a whole CIB). Pure and deterministic: the same inputs give the
/// same changes in the same order.
pub fn plan(desired: &[DesiredNode], live: &Element) -> Plan {
    let cib = Cib::new(live);
    let resources = cib.section("resources");
    let nodes = cib.section("nodes");
    // Creates under the same parent append one after another.
    let mut appended: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Plan::default();
    for d in desired {
        let mut changes = Vec::new();
        let want = d.primitive.to_element();
        let live_prim = resources.and_then(|r| {
            r.children
                .iter()
                .find(|c| c.name == "primitive" && c.attr("id") == Some(d.resource_id()))
        });
        match live_prim {
            Some(el) => diff_primitive(
                &format!("{RESOURCES_PATH}/{}", id_step("primitive", d.resource_id())),
                el,
                &want,
                &mut changes,
            ),
            None => changes.push(create_in(RESOURCES_PATH, resources, want, &mut appended)),
        }
        plan_node_entry(d, nodes, &mut appended, &mut changes);
        out.nodes.push(NodeChanges {
            node: d.name.clone(),
            changes,
        });
    }
    out.nodes.retain(|n| !n.changes.is_empty());
    out
}

fn create_in(
    parent_path: &str,
    parent: Option<&Element>,
    element: Element,
    appended: &mut BTreeMap<String, usize>,
) -> Change {
    let n = appended.entry(parent_path.to_string()).or_insert(0);
    let position = parent.map_or(0, |p| p.children.len()) + *n;
    *n += 1;
    Change::Create {
        parent: parent_path.to_string(),
        position,
        element,
    }
}

fn plan_node_entry(
    d: &DesiredNode,
    nodes: Option<&Element>,
    appended: &mut BTreeMap<String, usize>,
    changes: &mut Vec<Change>,
) {
    let live = nodes.and_then(|n| {
        n.children
            .iter()
            .find(|c| c.name == "node" && c.attr("id") == Some(d.name.as_str()))
    });
    let mut attributes = d.node.attributes.clone();
    if let Some(live) = live {
        let foreign = foreign_attribute_names(live);
        attributes.pairs.retain(|p| !foreign.contains(&p.name));
    }
    let owned = [&attributes, &d.node.utilization];
    let Some(live) = live else {
        if owned.iter().any(|s| !s.is_empty()) {
            changes.push(create_in(NODES_PATH, nodes, d.node.to_element(), appended));
        }
        return;
    };
    let node_path = format!("{NODES_PATH}/{}", id_step("node", &d.name));
    for (set, nvpair) in stray_own_attributes(live) {
        changes.push(Change::Delete {
            path: format!(
                "{node_path}/{}/{}",
                id_step("instance_attributes", &set),
                id_step("nvpair", &nvpair)
            ),
        });
    }
    let mut created_here = 0;
    for set in owned {
        let live_set = live
            .children
            .iter()
            .find(|c| c.name == set.tag && c.attr("id") == Some(set.id.as_str()));
        let set_path = format!("{node_path}/{}", id_step(set.tag, &set.id));
        match (live_set, set.is_empty()) {
            (None, true) => {}
            (None, false) => {
                changes.push(Change::Create {
                    parent: node_path.clone(),
                    position: live.children.len() + created_here,
                    element: set.to_element(),
                });
                created_here += 1;
            }
            (Some(_), true) => changes.push(Change::Delete { path: set_path }),
            (Some(l), false) => diff_element(&set_path, l, &set.to_element(), changes),
        }
    }
}

/// Key of a child among its siblings: tag and id, or tag and rank for id-less elements.
fn child_key(children: &[Element], i: usize) -> (String, Result<String, usize>) {
    let c = &children[i];
    match c.attr("id") {
        Some(id) => (c.name.clone(), Ok(id.to_string())),
        None => {
            let rank = children[..i]
                .iter()
                .filter(|s| s.name == c.name && s.attr("id").is_none())
                .count();
            (c.name.clone(), Err(rank))
        }
    }
}

fn child_path(parent: &str, el: &Element) -> String {
    match el.attr("id") {
        Some(id) => format!("{parent}/{}", id_step(&el.name, id)),
        None => format!("{parent}/{}", el.name),
    }
}

fn same_attrs(a: &Element, b: &Element) -> bool {
    let mut x: Vec<_> = a.attrs.iter().collect();
    let mut y: Vec<_> = b.attrs.iter().collect();
    x.sort();
    y.sort();
    x == y
}

/// Puts back what kubemaker owns of its primitive at `path` (see the module comment) and leaves
/// the rest of `live` alone.
fn diff_primitive(path: &str, live: &Element, want: &Element, out: &mut Vec<Change>) {
    diff_attrs(path, live, want, out);
    let mut missing = Vec::new();
    for w in &want.children {
        let existing = live
            .children
            .iter()
            .find(|l| l.name == w.name && l.attr("id") == w.attr("id"));
        let Some(l) = existing else {
            missing.push(w);
            continue;
        };
        let child = child_path(path, l);
        match w.name.as_str() {
            "meta_attributes" => diff_owned_children(&child, l, w, nvpair_key, out),
            "operations" => diff_owned_children(&child, l, w, op_key, out),
            _ => diff_element(&child, l, w, out),
        }
    }
    for (n, w) in missing.into_iter().enumerate() {
        out.push(Change::Create {
            parent: path.to_string(),
            position: live.children.len() + n,
            element: w.clone(),
        });
    }
}

/// An nvpair is kubemaker's when kubemaker writes its name.
fn nvpair_key(el: &Element) -> Option<String> {
    (el.name == "nvpair").then(|| el.attr("name").unwrap_or_default().to_string())
}

/// An operation is kubemaker's when kubemaker writes one of its name and role.
fn op_key(el: &Element) -> Option<String> {
    (el.name == "op").then(|| {
        format!(
            "{}/{}",
            el.attr("name").unwrap_or_default(),
            el.attr("role").unwrap_or_default()
        )
    })
}

/// Within `live` (at `path`), makes each child of `want` present as written, matching children by
/// `key`; live children whose key kubemaker does not write are left alone.
fn diff_owned_children(
    path: &str,
    live: &Element,
    want: &Element,
    key: fn(&Element) -> Option<String>,
    out: &mut Vec<Change>,
) {
    let mut remaining = live.children.len();
    let mut creates = Vec::new();
    for w in &want.children {
        let k = key(w);
        let same_key: Vec<&Element> = live
            .children
            .iter()
            .filter(|l| k.is_some() && key(l) == k)
            .collect();
        // Kubemaker's own (same id) is corrected in place; others of its key go.
        let mine = same_key.iter().find(|l| l.attr("id") == w.attr("id"));
        for l in same_key.iter().filter(|l| Some(*l) != mine) {
            out.push(Change::Delete {
                path: child_path(path, l),
            });
            remaining -= 1;
        }
        match mine {
            Some(l) => diff_element(&child_path(path, l), l, w, out),
            None => creates.push(w),
        }
    }
    for (n, el) in creates.into_iter().enumerate() {
        out.push(Change::Create {
            parent: path.to_string(),
            position: remaining + n,
            element: el.clone(),
        });
    }
}

/// A Modify that gives `live` (at `path`) the attributes of `want`, if they differ.
fn diff_attrs(path: &str, live: &Element, want: &Element, out: &mut Vec<Change>) {
    if same_attrs(live, want) {
        return;
    }
    let removed = live
        .attrs
        .iter()
        .filter(|(k, _)| want.attr(k).is_none())
        .map(|(k, _)| k.clone())
        .collect();
    let mut attrs = Element::new(want.name.clone());
    attrs.attrs = want.attrs.clone();
    out.push(Change::Modify {
        path: path.to_string(),
        attrs,
        removed,
    });
}

/// Makes the element at `path` (currently `live`) equal to `want`, attribute and child order
/// aside. Deletes come first so create positions count only what remains.
fn diff_element(path: &str, live: &Element, want: &Element, out: &mut Vec<Change>) {
    // Only the first of several id-less siblings is addressable by a patch path; if that case
    // ever arises, replace the whole element instead of guessing.
    let ambiguous = |children: &[Element]| {
        (0..children.len()).any(|i| matches!(child_key(children, i).1, Err(r) if r > 0))
    };
    if ambiguous(&live.children) || ambiguous(&want.children) {
        out.push(Change::Delete {
            path: path.to_string(),
        });
        let parent = path.rsplit_once('/').map_or("", |(p, _)| p).to_string();
        out.push(Change::Create {
            parent,
            position: 0,
            element: want.clone(),
        });
        return;
    }
    diff_attrs(path, live, want, out);
    let live_keys: Vec<_> = (0..live.children.len())
        .map(|i| child_key(&live.children, i))
        .collect();
    let want_keys: Vec<_> = (0..want.children.len())
        .map(|i| child_key(&want.children, i))
        .collect();
    let mut remaining = live.children.len();
    for (i, key) in live_keys.iter().enumerate() {
        if !want_keys.contains(key) {
            out.push(Change::Delete {
                path: child_path(path, &live.children[i]),
            });
            remaining -= 1;
        }
    }
    let mut creates = Vec::new();
    for (j, key) in want_keys.iter().enumerate() {
        match live_keys.iter().position(|k| k == key) {
            Some(i) => diff_element(
                &child_path(path, &live.children[i]),
                &live.children[i],
                &want.children[j],
                out,
            ),
            None => creates.push(&want.children[j]),
        }
    }
    for (n, el) in creates.into_iter().enumerate() {
        out.push(Change::Create {
            parent: path.to_string(),
            position: remaining + n,
            element: el.clone(),
        });
    }
}

/// Changes that set `target-role=Stopped` on resource `rsc_id` (first step of a removal).
/// Empty if the resource is missing or already has it.
pub fn stop_resource(live: &Element, rsc_id: &str) -> Vec<Change> {
    let cib = Cib::new(live);
    let Some(p) = cib.primitive(rsc_id) else {
        return Vec::new();
    };
    if p.meta("target-role")
        .is_some_and(|v| v.eq_ignore_ascii_case("stopped"))
    {
        return Vec::new();
    }
    let prim_path = element_path(live, p.element)
        .unwrap_or_else(|| format!("{RESOURCES_PATH}/{}", id_step("primitive", rsc_id)));
    // Reuse an existing target-role nvpair wherever it is, else the first meta set, else a new one.
    for set in p
        .element
        .children
        .iter()
        .filter(|c| c.name == "meta_attributes")
    {
        let set_id = set.attr("id").unwrap_or_default();
        let set_path = format!("{prim_path}/{}", id_step("meta_attributes", set_id));
        if let Some(pair) = set
            .children
            .iter()
            .find(|c| c.name == "nvpair" && c.attr("name") == Some("target-role"))
        {
            let mut attrs = pair.clone();
            attrs.children.clear();
            attrs.set_attr("value", "Stopped");
            return vec![Change::Modify {
                path: format!(
                    "{set_path}/{}",
                    id_step("nvpair", pair.attr("id").unwrap_or_default())
                ),
                attrs,
                removed: Vec::new(),
            }];
        }
    }
    if let Some(set) = p
        .element
        .children
        .iter()
        .find(|c| c.name == "meta_attributes")
    {
        let set_id = set.attr("id").unwrap_or_default();
        return vec![Change::Create {
            parent: format!("{prim_path}/{}", id_step("meta_attributes", set_id)),
            position: set.children.len(),
            element: Element::new("nvpair")
                .with_attr("id", format!("{set_id}-target-role"))
                .with_attr("name", "target-role")
                .with_attr("value", "Stopped"),
        }];
    }
    let mut set = NvSet::new("meta_attributes", rsc_id);
    set.push("target-role", "Stopped");
    vec![Change::Create {
        parent: prim_path,
        position: p.element.children.len(),
        element: set.to_element(),
    }]
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
                    path: format!("{}/{}", CONSTRAINTS_PATH, id_step(&c.name, id)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cib::patch::apply_change;
    use crate::cib::spec::{MonitorSpec, RemoteNodeSpec};

    fn empty_cib() -> Element {
        Element::parse(r#"<cib admin_epoch="0" epoch="5" num_updates="3"><configuration><crm_config/><nodes><node id="1" uname="node1"/></nodes><resources/><constraints/></configuration><status/></cib>"#).unwrap()
    }

    fn remote_spec() -> RemoteNodeSpec {
        RemoteNodeSpec {
            address: Some("192.0.2.11".into()),
            reconnect_interval: Some("60s".into()),
            port: Some(3121),
            ..Default::default()
        }
    }

    /// Applies a plan's changes to an in-memory CIB the way apply_v2_patchset does (enough for
    /// idempotence tests).
    pub(crate) fn apply(live: &mut Element, plan: &Plan) {
        for c in plan.changes() {
            apply_change(live, c).unwrap();
        }
    }

    #[test]
    fn plan_then_apply_then_plan_is_empty() {
        let mut spec = remote_spec();
        spec.attributes.insert("rack".into(), "r1".into());
        spec.standby = true;
        let d = DesiredNode::from_spec("remote1", &spec).unwrap();
        let mut live = empty_cib();
        let p = plan(std::slice::from_ref(&d), &live);
        assert_eq!(p.change_count(), 2, "{p:?}");
        apply(&mut live, &p);
        assert!(plan(std::slice::from_ref(&d), &live).is_empty());

        // Changing the monitor replaces the op; dropping standby deletes only that nvpair.
        spec.monitor = Some(MonitorSpec {
            interval: Some("30s".into()),
            timeout: None,
        });
        spec.standby = false;
        let d2 = DesiredNode::from_spec("remote1", &spec).unwrap();
        let p2 = plan(std::slice::from_ref(&d2), &live);
        let described: Vec<String> = p2.changes().map(Change::describe).collect();
        assert_eq!(
            described,
            vec![
                "delete /cib/configuration/resources/primitive[@id='remote1']/operations/op[@id='remote1-monitor-interval-60s']",
                "create op remote1-monitor-interval-30s in /cib/configuration/resources/primitive[@id='remote1']/operations",
                "delete /cib/configuration/nodes/node[@id='remote1']/instance_attributes[@id='nodes-remote1-kubemaker']/nvpair[@id='nodes-remote1-kubemaker-standby']",
            ]
        );
        apply(&mut live, &p2);
        assert!(plan(&[d2], &live).is_empty());
    }

    /// Node attributes: kubemaker's set is its own (a dropped attribute goes), an administrator's
    /// set (`crm_attribute` writes `nodes-<name>`) is never touched, and a name the administrator
    /// set wins: kubemaker writes no second copy of it.
    #[test]
    fn node_attributes_of_an_administrator_win_and_survive() {
        let mut live = empty_cib();
        let mut spec = remote_spec();
        spec.attributes.insert("zone".into(), "a".into());
        spec.attributes.insert("rack".into(), "r9".into());
        spec.standby = true;
        let d = DesiredNode::from_spec("remote1", &spec).unwrap();
        let first = plan(std::slice::from_ref(&d), &live);
        apply(&mut live, &first);
        // crm_attribute -N remote1 -l forever -n rack -v r1 (and -n owner -v ops): a new set.
        let node = live
            .children
            .iter_mut()
            .find(|c| c.name == "configuration")
            .and_then(|c| c.children.iter_mut().find(|c| c.name == "nodes"))
            .and_then(|n| {
                n.children
                    .iter_mut()
                    .find(|c| c.attr("id") == Some("remote1"))
            })
            .unwrap();
        let nv = |name: &str, value: &str| {
            Element::new("nvpair")
                .with_attr("id", format!("nodes-remote1-{name}"))
                .with_attr("name", name)
                .with_attr("value", value)
        };
        node.children.push(
            Element::new("instance_attributes")
                .with_attr("id", "nodes-remote1")
                .with_child(nv("owner", "ops"))
                .with_child(nv("kubemaker-remoted-pod", "old-uid")),
        );
        // Kubemaker's own rack moved to the administrator's set by hand.
        let own = node
            .children
            .iter_mut()
            .find(|c| c.attr("id") == Some("nodes-remote1-kubemaker"))
            .unwrap();
        own.children.retain(|p| p.attr("name") != Some("rack"));
        node.children[1].children.push(nv("rack", "r1"));
        let described = |d: &DesiredNode, live: &Element| -> Vec<String> {
            plan(std::slice::from_ref(d), live)
                .changes()
                .map(Change::describe)
                .collect()
        };
        assert_eq!(
            described(&d, &live),
            vec![
                "delete /cib/configuration/nodes/node[@id='remote1']/instance_attributes[@id='nodes-remote1']/nvpair[@id='nodes-remote1-kubemaker-remoted-pod']",
            ],
            "the administrator's rack wins; an older kubemaker's own attribute outside its set goes"
        );
        let cleanup = plan(std::slice::from_ref(&d), &live);
        apply(&mut live, &cleanup);

        // Uncordoned / label gone: kubemaker drops its standby and zone, nothing else.
        spec.standby = false;
        spec.attributes.remove("zone");
        let d2 = DesiredNode::from_spec("remote1", &spec).unwrap();
        assert_eq!(
            described(&d2, &live),
            vec![
                "delete /cib/configuration/nodes/node[@id='remote1']/instance_attributes[@id='nodes-remote1-kubemaker']",
            ],
            "only kubemaker's set goes (it is empty now)"
        );
    }

    fn primitive_mut<'a>(live: &'a mut Element, id: &str) -> &'a mut Element {
        let resources = live
            .children
            .iter_mut()
            .find(|c| c.name == "configuration")
            .and_then(|c| c.children.iter_mut().find(|c| c.name == "resources"))
            .unwrap();
        resources
            .children
            .iter_mut()
            .find(|c| c.attr("id") == Some(id))
            .unwrap()
    }

    fn child_mut<'a>(el: &'a mut Element, name: &str) -> &'a mut Element {
        el.children.iter_mut().find(|c| c.name == name).unwrap()
    }

    fn op(id: &str, name: &str, interval: &str) -> Element {
        Element::new("op")
            .with_attr("id", id)
            .with_attr("name", name)
            .with_attr("interval", interval)
            .with_attr("timeout", "20s")
    }

    /// The ownership rules, one administrator's edit at a time against an applied node: what
    /// survives a reconcile (an empty plan) and what is put back (the changes that revert it).
    #[test]
    fn administrators_edits_survive_or_are_put_back_by_ownership() {
        type Edit = fn(&mut Element);
        let cases: [(&str, Edit, &[&str]); 8] = [
            (
                "pcs resource disable, and another meta attribute",
                |p| {
                    p.children.push(
                        Element::new("meta_attributes")
                            .with_attr("id", "remote1-meta_attributes")
                            .with_child(
                                Element::new("nvpair")
                                    .with_attr("id", "remote1-meta_attributes-target-role")
                                    .with_attr("name", "target-role")
                                    .with_attr("value", "Stopped"),
                            )
                            .with_child(
                                Element::new("nvpair")
                                    .with_attr("id", "remote1-meta_attributes-resource-stickiness")
                                    .with_attr("name", "resource-stickiness")
                                    .with_attr("value", "100"),
                            ),
                    )
                },
                &[],
            ),
            (
                "an operation of another name, and a monitor for a role",
                |p| {
                    let ops = child_mut(p, "operations");
                    ops.children
                        .push(op("remote1-notify-interval-0s", "notify", "0s"));
                    ops.children.push(
                        op("remote1-monitor-interval-20s", "monitor", "20s")
                            .with_attr("role", "Stopped"),
                    );
                },
                &[],
            ),
            (
                "utilization",
                |p| {
                    p.children.push(
                        Element::new("utilization")
                            .with_attr("id", "remote1-utilization")
                            .with_child(
                                Element::new("nvpair")
                                    .with_attr("id", "remote1-utilization-cpu")
                                    .with_attr("name", "cpu")
                                    .with_attr("value", "2"),
                            ),
                    )
                },
                &[],
            ),
            (
                "the server parameter edited",
                |p| {
                    let set = child_mut(p, "instance_attributes");
                    set.children[0].set_attr("value", "192.0.2.99");
                },
                &[
                    "modify /cib/configuration/resources/primitive[@id='remote1']/instance_attributes[@id='remote1-instance_attributes']/nvpair[@id='remote1-instance_attributes-server']",
                ],
            ),
            (
                "a parameter added to kubemaker's set",
                |p| {
                    let set = child_mut(p, "instance_attributes");
                    set.children.push(
                        Element::new("nvpair")
                            .with_attr("id", "remote1-instance_attributes-extra")
                            .with_attr("name", "extra")
                            .with_attr("value", "1"),
                    );
                },
                &[
                    "delete /cib/configuration/resources/primitive[@id='remote1']/instance_attributes[@id='remote1-instance_attributes']/nvpair[@id='remote1-instance_attributes-extra']",
                ],
            ),
            (
                "the monitor's timeout edited",
                |p| {
                    let ops = child_mut(p, "operations");
                    let m = ops
                        .children
                        .iter_mut()
                        .find(|o| o.attr("name") == Some("monitor"))
                        .unwrap();
                    m.set_attr("timeout", "5s");
                },
                &[
                    "modify /cib/configuration/resources/primitive[@id='remote1']/operations/op[@id='remote1-monitor-interval-60s']",
                ],
            ),
            (
                "a second monitor of kubemaker's name and role",
                |p| {
                    child_mut(p, "operations").children.push(op(
                        "remote1-monitor-interval-20s",
                        "monitor",
                        "20s",
                    ));
                },
                &[
                    "delete /cib/configuration/resources/primitive[@id='remote1']/operations/op[@id='remote1-monitor-interval-20s']",
                ],
            ),
            (
                "the agent changed",
                |p| p.set_attr("type", "Dummy"),
                &["modify /cib/configuration/resources/primitive[@id='remote1']"],
            ),
        ];
        let d = DesiredNode::from_spec("remote1", &remote_spec()).unwrap();
        let mut applied = empty_cib();
        let p = plan(std::slice::from_ref(&d), &applied);
        apply(&mut applied, &p);
        for (case, edit, expected) in cases {
            let mut live = applied.clone();
            edit(primitive_mut(&mut live, "remote1"));
            let p = plan(std::slice::from_ref(&d), &live);
            let described: Vec<String> = p.changes().map(Change::describe).collect();
            assert_eq!(described, expected, "{case}");
            apply(&mut live, &p);
            assert!(
                plan(std::slice::from_ref(&d), &live).is_empty(),
                "{case}: not settled after one apply"
            );
        }
    }

    /// A connection's recovery mark: written when a desired node carries one (created, then
    /// changed), never removed or changed by a desired node without one.
    #[test]
    fn recovery_mark_is_written_only_when_desired() {
        let set_path = "/cib/configuration/resources/primitive[@id='remote1']/instance_attributes[@id='remote1-recovery']";
        let plain = DesiredNode::from_spec("remote1", &remote_spec()).unwrap();
        let marked = |mark: &str| {
            let spec = RemoteNodeSpec {
                recovery_mark: Some(mark.into()),
                ..remote_spec()
            };
            DesiredNode::from_spec("remote1", &spec).unwrap()
        };
        let mut live = empty_cib();
        let p = plan(std::slice::from_ref(&plain), &live);
        apply(&mut live, &p);

        let first = plan(&[marked("1000")], &live);
        let described: Vec<String> = first.changes().map(Change::describe).collect();
        assert_eq!(
            described,
            vec![
                "create instance_attributes remote1-recovery in /cib/configuration/resources/primitive[@id='remote1']"
            ]
        );
        apply(&mut live, &first);
        let cib = Cib::new(&live);
        let prim = cib.primitive("remote1").unwrap();
        assert_eq!(crate::cib::model::recovery_mark(prim.element), Some("1000"));

        // Without a mark (a reconcile, `kubemaker cib apply`): the live mark stays.
        assert!(plan(std::slice::from_ref(&plain), &live).is_empty());
        // A newer mark changes the value in place.
        let next = plan(&[marked("2000")], &live);
        let described: Vec<String> = next.changes().map(Change::describe).collect();
        assert_eq!(
            described,
            vec![format!(
                "modify {set_path}/nvpair[@id='remote1-recovery-kubemaker-recovery']"
            )]
        );
    }

    /// A guest's meta attributes: kubemaker's own are put back, an administrator's stay.
    #[test]
    fn guest_meta_attributes_are_owned_by_name() {
        let spec = RemoteNodeSpec {
            node_type: crate::cib::spec::NodeType::Guest,
            address: Some("192.0.2.12".into()),
            guest: Some(crate::cib::spec::GuestSpec {
                agent: Some("ocf:pacemaker:Dummy".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = DesiredNode::from_spec("guest1", &spec).unwrap();
        let mut live = empty_cib();
        let p = plan(std::slice::from_ref(&d), &live);
        apply(&mut live, &p);
        let rid = d.resource_id().to_string();
        let meta = child_mut(primitive_mut(&mut live, &rid), "meta_attributes");
        let port = meta
            .children
            .iter_mut()
            .find(|n| n.attr("name") == Some("remote-port"))
            .unwrap();
        port.set_attr("value", "4000");
        meta.children.push(
            Element::new("nvpair")
                .with_attr("id", format!("{rid}-meta_attributes-target-role"))
                .with_attr("name", "target-role")
                .with_attr("value", "Stopped"),
        );
        let p = plan(std::slice::from_ref(&d), &live);
        let described: Vec<String> = p.changes().map(Change::describe).collect();
        assert_eq!(described.len(), 1, "{described:?}");
        assert!(described[0].contains("remote-port"), "{described:?}");
        apply(&mut live, &p);
        assert!(plan(std::slice::from_ref(&d), &live).is_empty());
        assert!(
            live.to_xml()
                .contains(r#"name="target-role" value="Stopped""#)
        );
    }

    #[test]
    fn patch_carries_source_version_and_batches_keep_nodes_whole() {
        let live = empty_cib();
        let specs: Vec<DesiredNode> = (0..5)
            .map(|i| DesiredNode::from_spec(&format!("r{i}"), &remote_spec()).unwrap())
            .collect();
        let p = plan(&specs, &live);
        let patch = p.to_patch(Cib::new(&live).version());
        let xml = patch.to_xml();
        assert!(xml.starts_with(r#"<diff format="2"><version><source admin_epoch="0" epoch="5" num_updates="3"/><target admin_epoch="0" epoch="6" num_updates="0"/></version><change operation="create" path="/cib/configuration/resources" position="0">"#), "{xml}");
        assert!(xml.contains(r#"position="4""#));
        let batches = p.batches(2);
        assert_eq!(
            batches.iter().map(|b| b.nodes.len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }

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
