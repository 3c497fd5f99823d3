//! Typed CIB fragments (what kubemaker writes) and read-only accessors over a live CIB.
//!
//! Fragments serialize to [`Element`] with pcs's id conventions, so an administrator looking at
//! `cibadmin -Q` sees what `pcs cluster node add-remote` would have written.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::wire::Element;

/// `(admin_epoch, epoch, num_updates)` from the `<cib>` root; ordered lexicographically.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct CibVersion {
    pub admin_epoch: u64,
    pub epoch: u64,
    pub num_updates: u64,
}

impl CibVersion {
    /// Reads the three counters from an element carrying them (`<cib>`, `<source>`, `<target>`).
    /// Missing counters read as 0, as Pacemaker does.
    pub fn from_element(el: &Element) -> CibVersion {
        let n = |k| el.attr(k).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        CibVersion {
            admin_epoch: n("admin_epoch"),
            epoch: n("epoch"),
            num_updates: n("num_updates"),
        }
    }

    pub fn to_element(self, name: &str) -> Element {
        Element::new(name)
            .with_attr("admin_epoch", self.admin_epoch)
            .with_attr("epoch", self.epoch)
            .with_attr("num_updates", self.num_updates)
    }

    /// What a configuration change computed from this version produces.
    pub fn next_config(self) -> CibVersion {
        CibVersion {
            admin_epoch: self.admin_epoch,
            epoch: self.epoch + 1,
            num_updates: 0,
        }
    }
}

impl fmt::Display for CibVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.admin_epoch, self.epoch, self.num_updates
        )
    }
}

/// A resource agent: `class:provider:type`, or `class:type` for classes without providers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Agent {
    pub class: String,
    pub provider: Option<String>,
    pub kind: String,
}

impl Agent {
    pub fn new(class: &str, provider: Option<&str>, kind: &str) -> Agent {
        Agent {
            class: class.into(),
            provider: provider.map(Into::into),
            kind: kind.into(),
        }
    }

    pub fn pacemaker_remote() -> Agent {
        Agent::new("ocf", Some("pacemaker"), "remote")
    }

    /// Parses `ocf:heartbeat:VirtualDomain`, `systemd:foo`, `lsb:foo`; `None` when malformed.
    pub fn parse(text: &str) -> Option<Agent> {
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            [class, provider, kind]
                if !class.is_empty() && !provider.is_empty() && !kind.is_empty() =>
            {
                Some(Agent::new(class, Some(provider), kind))
            }
            // service:/systemd: names may themselves contain '@' or '.', never ':'
            [class, kind] if !class.is_empty() && !kind.is_empty() && *class != "ocf" => {
                Some(Agent::new(class, None, kind))
            }
            _ => None,
        }
    }

    /// The agent of a `<primitive>` element, if it names one.
    pub fn of(el: &Element) -> Option<Agent> {
        Some(Agent::new(
            el.attr("class")?,
            el.attr("provider"),
            el.attr("type")?,
        ))
    }

    pub fn is_pacemaker_remote(&self) -> bool {
        self.class == "ocf"
            && self.provider.as_deref() == Some("pacemaker")
            && self.kind == "remote"
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.provider {
            Some(p) => write!(f, "{}:{}:{}", self.class, p, self.kind),
            None => write!(f, "{}:{}", self.class, self.kind),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvPair {
    pub id: String,
    pub name: String,
    pub value: String,
}

impl NvPair {
    pub fn to_element(&self) -> Element {
        Element::new("nvpair")
            .with_attr("id", &self.id)
            .with_attr("name", &self.name)
            .with_attr("value", &self.value)
    }
}

/// `instance_attributes`, `meta_attributes` or `utilization`: an id and name/value pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvSet {
    pub tag: &'static str,
    pub id: String,
    pub pairs: Vec<NvPair>,
}

impl NvSet {
    /// An empty set named the way pcs names them: `<owner>-<tag>`; pairs are `<set id>-<name>`.
    pub fn new(tag: &'static str, owner: &str) -> NvSet {
        NvSet {
            tag,
            id: format!("{owner}-{tag}"),
            pairs: Vec::new(),
        }
    }

    /// A set with an explicit id (kubemaker's node attributes use `nodes-<node>-kubemaker`).
    pub fn with_id(tag: &'static str, id: String) -> NvSet {
        NvSet {
            tag,
            id,
            pairs: Vec::new(),
        }
    }

    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.pairs.push(NvPair {
            id: format!("{}-{}", self.id, sanitize_id(name)),
            name: name.into(),
            value: value.into(),
        });
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn to_element(&self) -> Element {
        let mut el = Element::new(self.tag).with_attr("id", &self.id);
        el.children = self.pairs.iter().map(NvPair::to_element).collect();
        el
    }
}

/// One `<op>`; the id is pcs's `<rid>-<name>-interval-<interval>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub id: String,
    pub name: String,
    pub interval: String,
    pub timeout: String,
}

impl Op {
    pub fn new(rsc: &str, name: &str, interval: &str, timeout: &str) -> Op {
        Op {
            id: format!("{rsc}-{name}-interval-{interval}"),
            name: name.into(),
            interval: interval.into(),
            timeout: timeout.into(),
        }
    }

    pub fn to_element(&self) -> Element {
        Element::new("op")
            .with_attr("id", &self.id)
            .with_attr("interval", &self.interval)
            .with_attr("name", &self.name)
            .with_attr("timeout", &self.timeout)
    }
}

/// A `<primitive>` resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primitive {
    pub id: String,
    pub agent: Agent,
    pub instance_attributes: NvSet,
    /// A connection's recovery mark ([`RECOVERY_PARAM`] in its own set `<id>-recovery`): a
    /// parameter the agent ignores, whose change makes the scheduler clear the connection's
    /// failures. Empty unless the controller's connection recovery sets it; see `cib::plan` for
    /// why a plan without it leaves the live set alone.
    pub recovery: NvSet,
    pub meta_attributes: NvSet,
    pub utilization: NvSet,
    pub operations: Vec<Op>,
}

/// The parameter of a connection's recovery mark (see [`Primitive::recovery`]).
pub const RECOVERY_PARAM: &str = "kubemaker-recovery";

/// The id of the instance attribute set holding the recovery mark of primitive `id`.
pub fn recovery_set_id(id: &str) -> String {
    format!("{id}-recovery")
}

/// The recovery mark of the primitive `id` in the live configuration, if any.
pub fn recovery_mark(primitive: &Element) -> Option<&str> {
    let set_id = recovery_set_id(primitive.attr("id")?);
    primitive
        .children
        .iter()
        .find(|c| c.name == "instance_attributes" && c.attr("id") == Some(set_id.as_str()))?
        .children
        .iter()
        .find(|p| p.name == "nvpair" && p.attr("name") == Some(RECOVERY_PARAM))?
        .attr("value")
}

impl Primitive {
    pub fn new(id: &str, agent: Agent) -> Primitive {
        Primitive {
            id: id.into(),
            agent,
            instance_attributes: NvSet::new("instance_attributes", id),
            recovery: NvSet::with_id("instance_attributes", recovery_set_id(id)),
            meta_attributes: NvSet::new("meta_attributes", id),
            utilization: NvSet::new("utilization", id),
            operations: Vec::new(),
        }
    }

    /// Empty sets are left out, as pcs does.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("primitive")
            .with_attr("id", &self.id)
            .with_attr("class", &self.agent.class);
        if let Some(p) = &self.agent.provider {
            el.set_attr("provider", p);
        }
        el.set_attr("type", &self.agent.kind);
        for set in [
            &self.instance_attributes,
            &self.recovery,
            &self.meta_attributes,
            &self.utilization,
        ] {
            if !set.is_empty() {
                el.children.push(set.to_element());
            }
        }
        if !self.operations.is_empty() {
            let mut ops = Element::new("operations");
            ops.children = self.operations.iter().map(Op::to_element).collect();
            el.children.push(ops);
        }
        el
    }
}

/// A `<node>` entry in `<nodes>` for a remote or guest node, holding the permanent attributes
/// kubemaker writes in a set of its own, `nodes-<name>-kubemaker`. `crm_attribute` and `pcs` create
/// new attributes in `nodes-<name>`, so what an administrator adds never lands in kubemaker's set;
/// they do update an attribute where it already is, in kubemaker's set too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub name: String,
    pub attributes: NvSet,
    pub utilization: NvSet,
}

impl NodeEntry {
    pub fn new(name: &str) -> NodeEntry {
        NodeEntry {
            name: name.into(),
            attributes: NvSet::with_id("instance_attributes", node_attr_set_id(name)),
            utilization: NvSet::with_id("utilization", format!("nodes-{name}-utilization")),
        }
    }

    pub fn to_element(&self) -> Element {
        let mut el = Element::new("node")
            .with_attr("id", &self.name)
            .with_attr("uname", &self.name)
            .with_attr("type", "remote");
        for set in [&self.attributes, &self.utilization] {
            if !set.is_empty() {
                el.children.push(set.to_element());
            }
        }
        el
    }
}

/// Id of kubemaker's attribute set in a node's entry (see [`NodeEntry`]).
pub fn node_attr_set_id(node: &str) -> String {
    format!("nodes-{node}-kubemaker")
}

/// kubemaker's attribute set in node entry `node`, if it has one.
pub fn own_attribute_set(node: &Element) -> Option<&Element> {
    let own = node_attr_set_id(node.attr("id")?);
    node.children
        .iter()
        .find(|c| c.name == "instance_attributes" && c.attr("id") == Some(own.as_str()))
}

/// Node attributes whose names start so are kubemaker's own wherever they are (the remoted pod's
/// UID); kubemaker before 0.1 kept them in `nodes-<name>`.
pub const OWN_ATTRIBUTE_PREFIX: &str = "kubemaker-";

/// `(set id, nvpair)` of each nvpair in node entry `node` outside kubemaker's set.
fn outside_own_set(node: &Element) -> impl Iterator<Item = (&str, &Element)> {
    let own = node.attr("id").map(node_attr_set_id);
    node.children
        .iter()
        .filter(move |c| c.name == "instance_attributes" && c.attr("id") != own.as_deref())
        .flat_map(|set| {
            let id = set.attr("id").unwrap_or_default();
            set.children
                .iter()
                .filter(|p| p.name == "nvpair")
                .map(move |p| (id, p))
        })
}

/// Names of the permanent attributes of node entry `node` that live outside kubemaker's set:
/// an administrator's (`crm_attribute -l forever`, `pcs node attribute`), which kubemaker never
/// writes a second copy of. Names with [`OWN_ATTRIBUTE_PREFIX`] are not an administrator's.
pub fn foreign_attribute_names(node: &Element) -> std::collections::BTreeSet<String> {
    outside_own_set(node)
        .filter_map(|(_, p)| p.attr("name"))
        .filter(|n| !n.starts_with(OWN_ATTRIBUTE_PREFIX))
        .map(str::to_string)
        .collect()
}

/// `(set id, nvpair id)` of kubemaker's own attributes ([`OWN_ATTRIBUTE_PREFIX`]) found outside
/// its set, which the planner deletes so that only the copy in kubemaker's set counts.
pub fn stray_own_attributes(node: &Element) -> Vec<(String, String)> {
    outside_own_set(node)
        .filter(|(_, p)| {
            p.attr("name")
                .is_some_and(|n| n.starts_with(OWN_ATTRIBUTE_PREFIX))
        })
        .filter_map(|(set, p)| Some((set.to_string(), p.attr("id")?.to_string())))
        .collect()
}

/// Replaces characters an XML ID cannot hold with `_`, so a derived id stays valid whatever the
/// attribute name (pcs does the same when it derives ids).
pub fn sanitize_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (i > 0 && (c == '-' || c == '.'));
        out.push(if ok { c } else { '_' });
    }
    out
}

/// Whether `text` is a valid XML ID as Pacemaker's schema and pcs check it (an NCName limited
/// to ASCII): first `[A-Za-z_]`, then `[A-Za-z0-9_.-]`.
pub fn is_valid_id(text: &str) -> bool {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Read-only views over a CIB document (`<cib>` with `configuration` and usually `status`).
pub struct Cib<'a> {
    pub root: &'a Element,
}

/// Where a resource sits in the resource tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    TopLevel,
    /// Inside a group, clone, master/promotable or bundle; the parent's tag and id.
    Nested {
        parent_tag: String,
        parent_id: String,
    },
}

/// A primitive found in the live configuration.
#[derive(Debug, Clone)]
pub struct LivePrimitive<'a> {
    pub element: &'a Element,
    pub placement: Placement,
    /// All enclosing containers, outermost first (a group inside a clone gives two).
    pub ancestors: Vec<(String, String)>,
}

impl<'a> LivePrimitive<'a> {
    pub fn id(&self) -> &'a str {
        self.element.attr("id").unwrap_or("")
    }

    pub fn agent(&self) -> Option<Agent> {
        Agent::of(self.element)
    }

    /// The value of a meta attribute (first set that has it).
    pub fn meta(&self, name: &str) -> Option<&'a str> {
        nv_lookup(self.element, "meta_attributes", name)
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        nv_lookup(self.element, "instance_attributes", name)
    }

    /// The guest node this primitive defines, if any (`remote-node` meta).
    pub fn guest_node_name(&self) -> Option<&'a str> {
        self.meta("remote-node").filter(|v| !v.is_empty())
    }

    pub fn is_remote_connection(&self) -> bool {
        self.agent().is_some_and(|a| a.is_pacemaker_remote())
    }

    /// Pacemaker only makes a node for top-level connections and for guests at the top level or
    /// directly inside a group.
    pub fn defines_node(&self) -> Option<&'a str> {
        if self.is_remote_connection() {
            return (self.placement == Placement::TopLevel).then(|| self.id());
        }
        let name = self.guest_node_name()?;
        let ok = match self.ancestors.as_slice() {
            [] => true,
            [(tag, _)] => tag == "group",
            _ => false,
        };
        ok.then_some(name)
    }
}

/// First nvpair `name` in any `<tag>` set directly under `el`.
pub fn nv_lookup<'a>(el: &'a Element, tag: &str, name: &str) -> Option<&'a str> {
    el.children
        .iter()
        .filter(|c| c.name == tag)
        .flat_map(|set| set.children.iter())
        .find(|p| p.name == "nvpair" && p.attr("name") == Some(name))
        .and_then(|p| p.attr("value"))
}

impl<'a> Cib<'a> {
    pub fn new(root: &'a Element) -> Cib<'a> {
        Cib { root }
    }

    pub fn version(&self) -> CibVersion {
        CibVersion::from_element(self.root)
    }

    pub fn configuration(&self) -> Option<&'a Element> {
        self.root.child("configuration")
    }

    pub fn section(&self, name: &str) -> Option<&'a Element> {
        if name == "status" {
            return self.root.child("status");
        }
        self.configuration()?.child(name)
    }

    /// Every primitive in `<resources>`, with where it sits.
    pub fn primitives(&self) -> Vec<LivePrimitive<'a>> {
        let mut out = Vec::new();
        if let Some(resources) = self.section("resources") {
            collect_primitives(resources, &mut Vec::new(), &mut out);
        }
        out
    }

    pub fn primitive(&self, id: &str) -> Option<LivePrimitive<'a>> {
        self.primitives().into_iter().find(|p| p.id() == id)
    }

    /// Every element id under `<resources>` (primitives, groups, clones, bundles, templates).
    pub fn resource_ids(&self) -> Vec<&'a str> {
        let mut out = Vec::new();
        if let Some(resources) = self.section("resources") {
            for child in &resources.children {
                collect_resource_ids(child, &mut out);
            }
        }
        out
    }

    /// `<node>` entries of cluster (corosync) nodes: every entry whose type is not `remote`.
    pub fn cluster_node_names(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = Vec::new();
        if let Some(nodes) = self.section("nodes") {
            for n in nodes.children.iter().filter(|n| n.name == "node") {
                if n.attr("type").is_some_and(|t| t == "remote") {
                    continue;
                }
                if let Some(name) = n.attr("uname").or(n.attr("id")) {
                    names.push(name);
                }
            }
        }
        // A member that joined but was never written to <nodes> still shows in status.
        if let Some(status) = self.section("status") {
            for s in status.children.iter().filter(|s| s.name == "node_state") {
                if s.attr("remote_node").is_none()
                    && s.attr("crmd").is_some()
                    && let Some(name) = s.attr("uname")
                    && !names.iter().any(|n| n.eq_ignore_ascii_case(name))
                {
                    names.push(name);
                }
            }
        }
        names
    }

    /// The `<node>` entry of `name` in `<nodes>` (matched by id, or by uname ignoring case).
    pub fn node_entry(&self, name: &str) -> Option<&'a Element> {
        self.section("nodes")?
            .children
            .iter()
            .filter(|n| n.name == "node")
            .find(|n| {
                n.attr("id") == Some(name)
                    || n.attr("uname")
                        .is_some_and(|u| u.eq_ignore_ascii_case(name))
            })
    }

    pub fn node_state(&self, name: &str) -> Option<&'a Element> {
        self.section("status")?
            .children
            .iter()
            .filter(|n| n.name == "node_state")
            .find(|n| {
                n.attr("id") == Some(name)
                    || n.attr("uname")
                        .is_some_and(|u| u.eq_ignore_ascii_case(name))
            })
    }

    /// A cluster option from `crm_config` (first set that has it).
    pub fn cluster_option(&self, name: &str) -> Option<&'a str> {
        self.section("crm_config")?
            .children
            .iter()
            .filter(|c| c.name == "cluster_property_set")
            .flat_map(|set| set.children.iter())
            .find(|p| p.name == "nvpair" && p.attr("name") == Some(name))
            .and_then(|p| p.attr("value"))
    }

    /// `stonith-enabled`, which defaults to true.
    pub fn stonith_enabled(&self) -> bool {
        self.cluster_option("stonith-enabled").is_none_or(is_true)
    }
}

fn collect_primitives<'a>(
    parent: &'a Element,
    ancestors: &mut Vec<(String, String)>,
    out: &mut Vec<LivePrimitive<'a>>,
) {
    for child in &parent.children {
        match child.name.as_str() {
            "primitive" => out.push(LivePrimitive {
                element: child,
                placement: match ancestors.last() {
                    None => Placement::TopLevel,
                    Some((tag, id)) => Placement::Nested {
                        parent_tag: tag.clone(),
                        parent_id: id.clone(),
                    },
                },
                ancestors: ancestors.clone(),
            }),
            "group" | "clone" | "master" | "bundle" => {
                ancestors.push((
                    child.name.clone(),
                    child.attr("id").unwrap_or_default().to_string(),
                ));
                collect_primitives(child, ancestors, out);
                ancestors.pop();
            }
            _ => {}
        }
    }
}

fn collect_resource_ids<'a>(el: &'a Element, out: &mut Vec<&'a str>) {
    if matches!(
        el.name.as_str(),
        "primitive" | "group" | "clone" | "master" | "bundle" | "template"
    ) {
        if let Some(id) = el.attr("id") {
            out.push(id);
        }
        for c in &el.children {
            collect_resource_ids(c, out);
        }
    }
}

/// Pacemaker's `crm_is_true`.
pub fn is_true(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "on" | "yes" | "y" | "1"
    )
}

/// Quotes a value for a patch path step `[@id='…']`.
pub fn id_step(tag: &str, id: &str) -> String {
    format!("{tag}[@id='{id}']")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_primitive_serializes_like_pcs() {
        let mut p = Primitive::new("remote1", Agent::pacemaker_remote());
        p.instance_attributes.push("server", "192.0.2.11");
        p.operations
            .push(Op::new("remote1", "monitor", "60s", "30s"));
        assert_eq!(
            p.to_element().to_xml(),
            r#"<primitive id="remote1" class="ocf" provider="pacemaker" type="remote"><instance_attributes id="remote1-instance_attributes"><nvpair id="remote1-instance_attributes-server" name="server" value="192.0.2.11"/></instance_attributes><operations><op id="remote1-monitor-interval-60s" interval="60s" name="monitor" timeout="30s"/></operations></primitive>"#
        );
    }

    #[test]
    fn ids_and_agents() {
        assert!(is_valid_id("worker-1.example"));
        assert!(!is_valid_id("1worker"));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a'b"));
        assert!(!is_valid_id(""));
        assert_eq!(sanitize_id("#health:cpu"), "_health_cpu");
        assert_eq!(
            Agent::parse("ocf:heartbeat:VirtualDomain")
                .unwrap()
                .to_string(),
            "ocf:heartbeat:VirtualDomain"
        );
        assert_eq!(Agent::parse("systemd:libvirtd").unwrap().provider, None);
        assert!(Agent::parse("ocf:Dummy").is_none());
        assert!(Agent::parse("nonsense").is_none());
    }

    #[test]
    fn cib_accessors_find_nested_primitives() {
        let root = Element::parse(
            r#"<cib epoch="3" num_updates="2" admin_epoch="0"><configuration><crm_config/><nodes><node id="1" uname="node1"/><node id="r1" uname="r1" type="remote"/></nodes><resources><primitive id="r1" class="ocf" provider="pacemaker" type="remote"/><group id="g"><primitive id="vm" class="ocf" provider="heartbeat" type="Dummy"><meta_attributes id="m"><nvpair id="m1" name="remote-node" value="guest1"/></meta_attributes></primitive></group><clone id="c"><primitive id="r2" class="ocf" provider="pacemaker" type="remote"/></clone></resources></configuration></cib>"#,
        )
        .unwrap();
        let cib = Cib::new(&root);
        assert_eq!(cib.version().to_string(), "0.3.2");
        let prims = cib.primitives();
        let defined: Vec<_> = prims.iter().filter_map(|p| p.defines_node()).collect();
        assert_eq!(defined, vec!["r1", "guest1"]);
        assert_eq!(cib.cluster_node_names(), vec!["node1"]);
        assert_eq!(cib.resource_ids(), vec!["r1", "g", "vm", "c", "r2"]);
        assert!(cib.stonith_enabled());
    }
}
