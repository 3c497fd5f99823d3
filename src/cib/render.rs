//! Output for people: indented XML, a `kubectl get`-style table of node states, and the commands
//! that join a first remote node by hand (`kubemaker render --bootstrap`).

use std::fmt::Write as _;

use crate::wire::Element;
use crate::wire::xml::escape_attr_into;

use super::desired::{DesiredKind, DesiredNode};
use super::model::NvSet;
use super::status::NodeStatus;

/// Why a node has no bootstrap command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "{0} is a guest node: the cluster connects to guests itself, and only remote nodes (kubemaker remoted) carry the CIB gateway"
    )]
    Guest(String),
    #[error(
        "the connection resource of {node} has a {set:?} set, which pcs resource create cannot write"
    )]
    Unexpressible { node: String, set: String },
}

/// The two equivalent commands an administrator runs once, on one cluster node, to join the
/// remote node `d` before the controller can reach the CIB: `pcs resource create` and, for
/// clusters without pcs, `cibadmin --create`. Both write exactly `d.primitive`, the connection
/// resource the controller writes for the same RemoteNode (same id, agent, parameters and
/// operation ids), so the controller later finds it as its own and has nothing to change.
pub fn bootstrap_commands(d: &DesiredNode) -> Result<String, BootstrapError> {
    if let DesiredKind::Guest { .. } = d.kind {
        return Err(BootstrapError::Guest(d.name.clone()));
    }
    let p = &d.primitive;
    for set in [&p.recovery, &p.utilization] {
        if !set.is_empty() {
            return Err(BootstrapError::Unexpressible {
                node: d.name.clone(),
                set: set.id.clone(),
            });
        }
    }
    let pairs = |set: &NvSet| -> String {
        set.pairs
            .iter()
            .map(|nv| format!(" {}", shell_word(&format!("{}={}", nv.name, nv.value))))
            .collect()
    };
    let mut pcs = format!(
        "pcs resource create {} {}{}",
        shell_word(&p.id),
        shell_word(&p.agent.to_string()),
        pairs(&p.instance_attributes)
    );
    if !p.meta_attributes.is_empty() {
        let _ = write!(pcs, " meta{}", pairs(&p.meta_attributes));
    }
    for op in &p.operations {
        let _ = write!(
            pcs,
            " op {} {} {}",
            shell_word(&op.name),
            shell_word(&format!("interval={}", op.interval)),
            shell_word(&format!("timeout={}", op.timeout))
        );
    }
    // pcs refuses ocf:pacemaker:remote without --force and points to `pcs cluster node
    // add-remote`, which would also install the authkey and start pacemaker_remote on the host
    // over pcsd; here the DaemonSet does both.
    pcs.push_str(" --force");
    let cibadmin = format!(
        "cibadmin --create -o resources --xml-text {}",
        shell_word(&p.to_element().to_xml())
    );
    Ok(format!(
        "# Run once, on one cluster node, to join {name} ({addr}:{port}) as the first kubemaker node.\n\
         # With pcs:\n{pcs}\n\
         # Or, without pcs (the same resource):\n{cibadmin}\n",
        name = d.name,
        addr = d.address,
        port = d.port,
    ))
}

/// `s` as one POSIX shell word: unchanged when it holds only characters no shell treats
/// specially, else in single quotes.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/=@%+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Two-space indented XML, one element per line (like `cibadmin -Q`).
pub fn pretty_xml(el: &Element) -> String {
    let mut out = String::new();
    write_pretty(el, 0, &mut out);
    out
}

fn write_pretty(el: &Element, depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
    out.push('<');
    out.push_str(&el.name);
    for (k, v) in &el.attrs {
        let _ = write!(out, " {k}=\"");
        escape_attr_into(v, out);
        out.push('"');
    }
    if el.children.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    for c in &el.children {
        write_pretty(c, depth + 1, out);
    }
    for _ in 0..depth {
        out.push_str("  ");
    }
    let _ = writeln!(out, "</{}>", el.name);
}

/// NAME TYPE STATE HOST ADDRESS RESOURCES FAILURES, columns padded to fit.
pub fn node_table(nodes: &[NodeStatus]) -> String {
    let header = [
        "NAME",
        "TYPE",
        "STATE",
        "HOST",
        "ADDRESS",
        "RESOURCES",
        "FAILED-ACTIONS",
    ];
    let rows: Vec<[String; 7]> = nodes
        .iter()
        .map(|n| {
            [
                n.name.clone(),
                match n.kind {
                    super::status::NodeKind::Remote => "remote".into(),
                    super::status::NodeKind::Guest => "guest".into(),
                },
                n.state.as_str().into(),
                n.host.clone().unwrap_or_else(|| "<none>".into()),
                n.address.clone(),
                n.resources.len().to_string(),
                n.failed_actions.len().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}   ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cib::spec::RemoteNodeManifest;

    fn desired(yaml_spec: &str) -> DesiredNode {
        let m = RemoteNodeManifest::from_yaml(&format!(
            "apiVersion: kubemaker.io/v1alpha1\nkind: RemoteNode\nmetadata: {{name: worker1}}\nspec: {yaml_spec}\n"
        ))
        .unwrap();
        DesiredNode::from_manifest(&m).unwrap()
    }

    #[test]
    fn bootstrap_commands_write_the_controllers_primitive() {
        let d = desired(
            "{address: 192.0.2.11, port: 3121, reconnectInterval: 60s, monitor: {interval: 20s}}",
        );
        let out = bootstrap_commands(&d).unwrap();
        let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines[0],
            "pcs resource create worker1 ocf:pacemaker:remote server=192.0.2.11 reconnect_interval=60s port=3121 \
             op migrate_from interval=0s timeout=60s op migrate_to interval=0s timeout=60s \
             op monitor interval=20s timeout=30s op reload interval=0s timeout=60s \
             op reload-agent interval=0s timeout=60s op start interval=0s timeout=60s \
             op stop interval=0s timeout=60s --force"
        );
        // cibadmin carries the very element the controller writes.
        let xml = lines[1]
            .strip_prefix("cibadmin --create -o resources --xml-text '")
            .and_then(|r| r.strip_suffix('\''))
            .expect("one quoted XML argument");
        assert_eq!(Element::parse(xml).unwrap(), d.primitive.to_element());
        assert!(
            out.starts_with("# Run once, on one cluster node, to join worker1 (192.0.2.11:3121)")
        );
    }

    /// What the bootstrap command writes is the controller's own: the live checks accept it and
    /// the planner has nothing to change.
    #[test]
    fn the_bootstrapped_primitive_is_adopted_unchanged() {
        let d = desired("{address: 192.0.2.11, reconnectInterval: 60s}");
        let cib = Element::parse(&format!(
            r#"<cib admin_epoch="0" epoch="1" num_updates="0"><configuration><crm_config/><nodes/><resources>{}</resources><constraints/></configuration><status/></cib>"#,
            d.primitive.to_element().to_xml()
        ))
        .unwrap();
        assert_eq!(
            crate::cib::check_against_cib(std::slice::from_ref(&d), &cib),
            vec![]
        );
        assert!(crate::cib::plan(std::slice::from_ref(&d), &cib).is_empty());
    }

    #[test]
    fn bootstrap_is_for_remote_nodes_only() {
        let d = desired("{type: guest, guest: {parameters: {config: /etc/g.xml}}}");
        assert!(matches!(
            bootstrap_commands(&d),
            Err(BootstrapError::Guest(n)) if n == "worker1"
        ));
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("server=10.0.0.1"), "server=10.0.0.1");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("<x a=\"1\"/>"), "'<x a=\"1\"/>'");
    }

    #[test]
    fn pretty_prints_nested_elements() {
        let el = Element::parse(r#"<a x="1"><b/><c y="&lt;"><d/></c></a>"#).unwrap();
        assert_eq!(
            pretty_xml(&el),
            "<a x=\"1\">\n  <b/>\n  <c y=\"&lt;\">\n    <d/>\n  </c>\n</a>\n"
        );
        assert_eq!(Element::parse(&pretty_xml(&el)).unwrap(), el);
    }
}
