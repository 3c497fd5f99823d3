//! One node as kubemaker wants it in the CIB: a spec, checked on its own, becomes the primitive
//! that defines the node and the node's entry in `<nodes>`, with pcs's ids and defaults.

use std::collections::BTreeMap;

use crate::wire::Element;

use super::model::{Agent, NodeEntry, Op, Primitive, RECOVERY_PARAM};
use super::spec::{
    DEFAULT_GUEST_AGENT, DEFAULT_HYPERVISOR, DEFAULT_REMOTE_PORT, NodeType, RemoteNodeManifest,
    RemoteNodeSpec,
};
use super::validate::problem::Problem;
use super::validate::spec::check_spec;

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
        let problems = check_spec(name, spec);
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

/// Builds without checking; `spec` must have passed [`check_spec`].
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
            if let Some(mark) = &spec.recovery_mark {
                p.recovery.push(RECOVERY_PARAM, mark.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cib::spec::GuestSpec;

    fn remote_spec() -> RemoteNodeSpec {
        RemoteNodeSpec {
            address: Some("192.0.2.11".into()),
            reconnect_interval: Some("60s".into()),
            port: Some(3121),
            ..Default::default()
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
}
