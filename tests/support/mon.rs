//! Parsed `crm_mon --output-as=xml`: the ground truth of the real-cluster tests.

use kubemaker::wire::Element;

/// A node as `crm_mon --output-as=xml` shows it (`<nodes><node .../>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonNode {
    pub name: String,
    pub online: bool,
    pub standby: bool,
    pub maintenance: bool,
    pub unclean: bool,
    pub pending: bool,
    pub shutdown: bool,
    pub is_dc: bool,
    pub resources_running: u32,
    /// `member` or `remote` (guest nodes are `remote` too).
    pub node_type: String,
}

/// A resource as `crm_mon --output-as=xml` shows it (`<resource ...><node name=.../></resource>`,
/// also inside groups, clones and bundles).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonResource {
    pub id: String,
    /// `class:provider:type`, e.g. `ocf:pacemaker:Dummy`.
    pub agent: String,
    /// `Started`, `Stopped`, `Promoted`, `Unpromoted`, `Starting`, ...
    pub role: String,
    pub active: bool,
    pub failed: bool,
    pub orphaned: bool,
    pub blocked: bool,
    pub managed: bool,
    /// Nodes the resource is active on.
    pub nodes: Vec<String>,
}

/// A parsed `crm_mon --output-as=xml` snapshot.
#[derive(Debug, Clone, Default)]
pub struct MonView {
    dc: Option<String>,
    nodes: Vec<MonNode>,
    resources: Vec<MonResource>,
    failures: Vec<(String, String)>,
}

impl MonView {
    /// Parses crm_mon's XML (panics on malformed XML).
    pub fn parse(xml: &str) -> MonView {
        let root =
            Element::parse(xml).unwrap_or_else(|e| panic!("cannot parse crm_mon XML: {e}\n{xml}"));
        let flag = |e: &Element, name: &str| e.attr(name) == Some("true");
        let text = |e: &Element, name: &str| e.attr(name).unwrap_or_default().to_string();
        let children = |name: &str| {
            root.child(name)
                .map(|c| c.children.as_slice())
                .unwrap_or_default()
        };
        let mut view = MonView {
            dc: root
                .child("summary")
                .and_then(|s| s.child("current_dc"))
                .filter(|dc| flag(dc, "present"))
                .map(|dc| text(dc, "name")),
            ..MonView::default()
        };
        for n in children("nodes").iter().filter(|n| n.name == "node") {
            view.nodes.push(MonNode {
                name: text(n, "name"),
                online: flag(n, "online"),
                standby: flag(n, "standby"),
                maintenance: flag(n, "maintenance"),
                unclean: flag(n, "unclean"),
                pending: flag(n, "pending"),
                shutdown: flag(n, "shutdown"),
                is_dc: flag(n, "is_dc"),
                resources_running: n.attr_i64("resources_running").unwrap_or(0).max(0) as u32,
                node_type: text(n, "type"),
            });
        }
        // Resources nest inside groups, clones and bundles: take every <resource> below.
        for top in children("resources") {
            walk(top, &mut |r| {
                if r.name == "resource" {
                    view.resources.push(MonResource {
                        id: text(r, "id"),
                        agent: text(r, "resource_agent"),
                        role: text(r, "role"),
                        active: flag(r, "active"),
                        failed: flag(r, "failed"),
                        orphaned: flag(r, "orphaned"),
                        blocked: flag(r, "blocked"),
                        managed: flag(r, "managed"),
                        nodes: r
                            .children
                            .iter()
                            .filter(|c| c.name == "node")
                            .filter_map(|c| c.attr("name"))
                            .map(str::to_string)
                            .collect(),
                    });
                }
            });
        }
        for f in children("failures").iter().filter(|f| f.name == "failure") {
            let key = f
                .attr("op_key")
                .or(f.attr("id"))
                .unwrap_or_default()
                .to_string();
            view.failures.push((key, text(f, "node")));
        }
        view
    }

    /// Whether the cluster has a DC (Designated Controller).
    pub fn dc_present(&self) -> bool {
        self.dc.is_some()
    }

    /// The DC's node name, if there is one.
    pub fn dc(&self) -> Option<&str> {
        self.dc.as_deref()
    }

    pub fn nodes(&self) -> &[MonNode] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&MonNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Whether remote node `name` is really up: listed online AND its connection resource (same id)
    /// has finished starting (role `Started`, not failed). Beware: crm_mon alone reports a remote
    /// node `online="true"` as soon as the connection's start is *pending* (role `Starting`), even
    /// when nothing listens at its address (seen on 2.1.5).
    pub fn remote_node_up(&self, name: &str) -> bool {
        self.node(name).is_some_and(|n| n.online && !n.unclean)
            && self
                .resource(name)
                .is_some_and(|r| r.role == "Started" && r.active && !r.failed)
    }

    /// Every `<resource>` element, including members of groups, clones and bundles.
    pub fn resources(&self) -> &[MonResource] {
        &self.resources
    }

    /// The resource with this id. Clone instances share an id: then the first one that is active
    /// (or the first one), with the nodes of all instances merged.
    pub fn resource(&self, id: &str) -> Option<MonResource> {
        let all: Vec<&MonResource> = self.resources.iter().filter(|r| r.id == id).collect();
        let first = all.iter().find(|r| r.active).or(all.first())?;
        let mut merged = (*first).clone();
        for r in &all {
            for n in &r.nodes {
                if !merged.nodes.contains(n) {
                    merged.nodes.push(n.clone());
                }
            }
        }
        Some(merged)
    }

    /// `(operation key, node)` of every entry in `<failures>`, e.g. `("dummy_monitor_10000", "node1")`.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.failures.clone()
    }
}

/// Calls `f` on `el` and every element below it, in document order.
pub(super) fn walk<'a>(el: &'a Element, f: &mut impl FnMut(&'a Element)) {
    f(el);
    for c in &el.children {
        walk(c, f);
    }
}
