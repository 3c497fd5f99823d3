//! Output for people: indented XML and a `kubectl get`-style table of node states.

use std::fmt::Write as _;

use crate::wire::Element;
use crate::wire::xml::escape_attr_into;

use super::status::NodeStatus;

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
