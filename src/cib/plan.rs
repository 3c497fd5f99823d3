//! The pure planner: node specs become desired CIB fragments, and desired-vs-live becomes a list
//! of changes that one `cib_apply_diff` can carry.
//!
//! Ownership: kubemaker owns the whole primitive of a node (connection resource, or the guest's
//! resource) and, in `<nodes>`, only the attribute set `nodes-<name>`; other sets an administrator
//! adds to the node entry are left alone. Nodes not in the desired list are never touched here
//! (removal is [`crate::cib::removal`]).

use std::collections::BTreeMap;

use crate::wire::Element;

use super::model::{Agent, Cib, CibVersion, NodeEntry, Op, Primitive, id_step, is_true};
use super::spec::{NodeType, RemoteNodeManifest, RemoteNodeSpec};
use super::validate::{self, Problem};

pub const RESOURCES_PATH: &str = "/cib/configuration/resources";
pub const NODES_PATH: &str = "/cib/configuration/nodes";
pub const CONSTRAINTS_PATH: &str = "/cib/configuration/constraints";
pub const STATUS_PATH: &str = "/cib/status";

pub const DEFAULT_REMOTE_PORT: u16 = 3121;
pub const DEFAULT_GUEST_AGENT: &str = "ocf:heartbeat:VirtualDomain";
pub const DEFAULT_HYPERVISOR: &str = "qemu:///system";

/// What kind of node, and which resource defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesiredKind {
    /// The connection resource's id is the node name.
    Remote,
    /// The guest's resource (`resource_id`) carries the `remote-node` meta attribute.
    Guest { resource_id: String },
}

/// One node as kubemaker wants it in the CIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredNode {
    pub name: String,
    pub kind: DesiredKind,
    /// Address the cluster connects to (`server` or `remote-addr`).
    pub address: String,
    pub port: u16,
    pub primitive: Primitive,
    pub node: NodeEntry,
}

impl DesiredNode {
    /// Validates `spec` on its own (names, ports, durations, values) and builds the fragments.
    pub fn from_spec(name: &str, spec: &RemoteNodeSpec) -> Result<DesiredNode, Vec<Problem>> {
        let problems = validate::check_spec(name, spec);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(build(name, spec))
    }

    pub fn from_manifest(m: &RemoteNodeManifest) -> Result<DesiredNode, Vec<Problem>> {
        DesiredNode::from_spec(m.node_name(), &m.spec)
    }

    /// The id of the primitive kubemaker owns for this node.
    pub fn resource_id(&self) -> &str {
        &self.primitive.id
    }

    /// The fragments as a `<configuration>` document: what `kubemaker render` prints.
    pub fn render(&self) -> Element {
        let mut resources = Element::new("resources");
        resources.children.push(self.primitive.to_element());
        let mut config = Element::new("configuration").with_child(resources);
        if !self.node.attributes.is_empty() || !self.node.utilization.is_empty() {
            config
                .children
                .push(Element::new("nodes").with_child(self.node.to_element()));
        }
        config
    }
}

/// Builds without checking; `spec` must have passed [`validate::check_spec`].
fn build(name: &str, spec: &RemoteNodeSpec) -> DesiredNode {
    let address = spec.address.clone().unwrap_or_else(|| name.to_string());
    let port = spec
        .port
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(DEFAULT_REMOTE_PORT);
    let monitor = spec.monitor.clone().unwrap_or_default();
    let (kind, primitive) = match spec.node_type {
        NodeType::Remote => {
            let mut p = Primitive::new(name, Agent::pacemaker_remote());
            // Same parameters, order and op set as `pcs cluster node add-remote`.
            p.instance_attributes.push("server", address.clone());
            if let Some(ri) = &spec.reconnect_interval {
                p.instance_attributes.push("reconnect_interval", ri.clone());
            }
            if let Some(port) = spec.port {
                p.instance_attributes.push("port", port.to_string());
            }
            let start = spec.start_timeout.as_deref().unwrap_or("60s");
            let stop = spec.stop_timeout.as_deref().unwrap_or("60s");
            p.operations = vec![
                Op::new(name, "migrate_from", "0s", "60s"),
                Op::new(name, "migrate_to", "0s", "60s"),
                Op::new(
                    name,
                    "monitor",
                    monitor.interval.as_deref().unwrap_or("60s"),
                    monitor.timeout.as_deref().unwrap_or("30s"),
                ),
                Op::new(name, "reload", "0s", "60s"),
                Op::new(name, "reload-agent", "0s", "60s"),
                Op::new(name, "start", "0s", start),
                Op::new(name, "stop", "0s", stop),
            ];
            (DesiredKind::Remote, p)
        }
        NodeType::Guest => {
            let guest = spec.guest.clone().unwrap_or_default();
            let rid = guest
                .resource_id
                .clone()
                .unwrap_or_else(|| format!("vm-{name}"));
            let agent_text = guest.agent.as_deref().unwrap_or(DEFAULT_GUEST_AGENT);
            let agent = Agent::parse(agent_text)
                .unwrap_or_else(|| Agent::new("ocf", Some("heartbeat"), agent_text));
            let virtual_domain = agent.to_string() == DEFAULT_GUEST_AGENT;
            let mut params: BTreeMap<String, String> = guest.parameters.clone();
            if virtual_domain {
                params
                    .entry("hypervisor".into())
                    .or_insert_with(|| DEFAULT_HYPERVISOR.into());
            }
            let mut p = Primitive::new(&rid, agent);
            for (k, v) in &params {
                p.instance_attributes.push(k, v.clone());
            }
            let meta = &mut p.meta_attributes;
            meta.push("remote-node", name);
            meta.push("remote-addr", address.clone());
            meta.push("remote-port", port.to_string());
            meta.push(
                "remote-connect-timeout",
                guest.connect_timeout.as_deref().unwrap_or("60s"),
            );
            meta.push(
                "remote-allow-migrate",
                if guest.allow_migrate.unwrap_or(true) {
                    "true"
                } else {
                    "false"
                },
            );
            // VirtualDomain's advertised defaults; Pacemaker's 20s for anything else.
            let (mon_i, mon_t, start, stop) = if virtual_domain {
                ("10s", "30s", "90s", "90s")
            } else {
                ("10s", "20s", "20s", "20s")
            };
            p.operations = vec![
                Op::new(
                    &rid,
                    "monitor",
                    monitor.interval.as_deref().unwrap_or(mon_i),
                    monitor.timeout.as_deref().unwrap_or(mon_t),
                ),
                Op::new(
                    &rid,
                    "start",
                    "0s",
                    spec.start_timeout.as_deref().unwrap_or(start),
                ),
                Op::new(
                    &rid,
                    "stop",
                    "0s",
                    spec.stop_timeout.as_deref().unwrap_or(stop),
                ),
            ];
            (DesiredKind::Guest { resource_id: rid }, p)
        }
    };
    let mut node = NodeEntry::new(name);
    for (k, v) in &spec.attributes {
        node.attributes.push(k, v.clone());
    }
    if spec.standby {
        node.attributes.push("standby", "on");
    }
    if spec.maintenance {
        node.attributes.push("maintenance", "on");
    }
    DesiredNode {
        name: name.into(),
        kind,
        address,
        port,
        primitive,
        node,
    }
}

/// One step of a CIB patch (the `<change>` elements of a v2 `<diff>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert `element` as child number `position` of `parent`.
    Create {
        parent: String,
        position: usize,
        element: Element,
    },
    /// Give the element at `path` exactly the attributes of `attrs` (children untouched);
    /// `removed` lists attributes that go away (informational, for the change-list).
    Modify {
        path: String,
        attrs: Element,
        removed: Vec<String>,
    },
    /// Remove the element at `path` (Pacemaker skips missing paths silently).
    Delete { path: String },
}

impl Change {
    /// One line for humans: `create primitive remote1 in /cib/configuration/resources`.
    pub fn describe(&self) -> String {
        match self {
            Change::Create {
                parent, element, ..
            } => format!(
                "create {} {} in {parent}",
                element.name,
                element.attr("id").unwrap_or("")
            ),
            Change::Modify { path, .. } => format!("modify {path}"),
            Change::Delete { path } => format!("delete {path}"),
        }
    }

    pub fn to_element(&self) -> Element {
        match self {
            Change::Create {
                parent,
                position,
                element,
            } => Element::new("change")
                .with_attr("operation", "create")
                .with_attr("path", parent)
                .with_attr("position", position)
                .with_child(element.clone()),
            Change::Modify {
                path,
                attrs,
                removed,
            } => {
                let mut list = Element::new("change-list");
                for (k, v) in &attrs.attrs {
                    list.children.push(
                        Element::new("change-attr")
                            .with_attr("name", k)
                            .with_attr("operation", "set")
                            .with_attr("value", v),
                    );
                }
                for k in removed {
                    list.children.push(
                        Element::new("change-attr")
                            .with_attr("name", k)
                            .with_attr("operation", "unset"),
                    );
                }
                Element::new("change")
                    .with_attr("operation", "modify")
                    .with_attr("path", path)
                    .with_child(list)
                    .with_child(Element::new("change-result").with_child(attrs.clone()))
            }
            Change::Delete { path } => Element::new("change")
                .with_attr("operation", "delete")
                .with_attr("path", path),
        }
    }
}

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
    /// by [`crate::cib::client::CibClient::apply_nodes`]; this split is for callers that apply a
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
            Some(el) => diff_element(
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
    let owned = [&d.node.attributes, &d.node.utilization];
    let Some(live) = live else {
        if owned.iter().any(|s| !s.is_empty()) {
            changes.push(create_in(NODES_PATH, nodes, d.node.to_element(), appended));
        }
        return;
    };
    let node_path = format!("{NODES_PATH}/{}", id_step("node", &d.name));
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
    if !same_attrs(live, want) {
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
    let prim_path = super::patch::element_path(live, p.element)
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
    let mut set = super::model::NvSet::new("meta_attributes", rsc_id);
    set.push("target-role", "Stopped");
    vec![Change::Create {
        parent: prim_path,
        position: p.element.children.len(),
        element: set.to_element(),
    }]
}

/// `true` if the resource's configured target-role keeps it stopped.
pub fn is_stopped_by_config(live: &Element, rsc_id: &str) -> bool {
    Cib::new(live)
        .primitive(rsc_id)
        .and_then(|p| p.meta("target-role"))
        .is_some_and(|v| v.eq_ignore_ascii_case("stopped"))
}

/// Whether a value means "on" to Pacemaker; re-exported for callers reading node attributes.
pub fn truthy(v: &str) -> bool {
    is_true(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cib::spec::{GuestSpec, MonitorSpec};

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
            crate::cib::patch::apply_change(live, c).unwrap();
        }
    }

    #[test]
    fn remote_node_matches_pcs_output() {
        let d = DesiredNode::from_spec("remote1", &remote_spec()).unwrap();
        let xml = d.primitive.to_element().to_xml();
        assert!(xml.starts_with(r#"<primitive id="remote1" class="ocf" provider="pacemaker" type="remote"><instance_attributes id="remote1-instance_attributes"><nvpair id="remote1-instance_attributes-server" name="server" value="192.0.2.11"/><nvpair id="remote1-instance_attributes-reconnect_interval" name="reconnect_interval" value="60s"/><nvpair id="remote1-instance_attributes-port" name="port" value="3121"/></instance_attributes><operations><op id="remote1-migrate_from-interval-0s""#), "{xml}");
        assert!(xml.contains(
            r#"<op id="remote1-monitor-interval-60s" interval="60s" name="monitor" timeout="30s"/>"#
        ));
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
                "delete /cib/configuration/nodes/node[@id='remote1']/instance_attributes[@id='nodes-remote1']/nvpair[@id='nodes-remote1-standby']",
            ]
        );
        apply(&mut live, &p2);
        assert!(plan(&[d2], &live).is_empty());
    }

    #[test]
    fn guest_defaults_to_virtual_domain() {
        let spec = RemoteNodeSpec {
            node_type: NodeType::Guest,
            address: Some("192.0.2.21".into()),
            guest: Some(GuestSpec {
                parameters: [(
                    "config".to_string(),
                    "/etc/pacemaker/guest1.xml".to_string(),
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = DesiredNode::from_spec("guest1", &spec).unwrap();
        assert_eq!(d.resource_id(), "vm-guest1");
        let p = &d.primitive;
        assert_eq!(p.agent.to_string(), "ocf:heartbeat:VirtualDomain");
        assert_eq!(
            p.instance_attributes.get("hypervisor"),
            Some("qemu:///system")
        );
        assert_eq!(p.meta_attributes.get("remote-node"), Some("guest1"));
        assert_eq!(p.meta_attributes.get("remote-allow-migrate"), Some("true"));
        assert_eq!(
            p.meta_attributes.pairs[0].id,
            "vm-guest1-meta_attributes-remote-node"
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
}
