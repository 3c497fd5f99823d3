//! The patch vocabulary: the steps of a v2 `<diff>` ([`Change`]), the paths they address
//! (`/cib/configuration/resources/primitive[@id='x']`), and a local applier with Pacemaker's
//! v2 semantics, used to simulate plans in tests and to check a removal leaves the CIB as
//! intended.

use crate::wire::Element;

use super::model::id_step;

pub const RESOURCES_PATH: &str = "/cib/configuration/resources";
pub const NODES_PATH: &str = "/cib/configuration/nodes";
pub const CONSTRAINTS_PATH: &str = "/cib/configuration/constraints";
pub const STATUS_PATH: &str = "/cib/status";

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
    /// The path of the element changed, or of the parent a create adds to.
    pub fn target(&self) -> &str {
        match self {
            Change::Create { parent, .. } => parent,
            Change::Modify { path, .. } | Change::Delete { path } => path,
        }
    }

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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("patch path {0:?} is malformed")]
    BadPath(String),
    #[error("patch path {0:?} does not exist")]
    Missing(String),
}

/// One `/tag` or `/tag[@id='X']` step.
fn parse_path(path: &str) -> Result<Vec<(String, Option<String>)>, PatchError> {
    let bad = || PatchError::BadPath(path.to_string());
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    let mut steps = Vec::new();
    // Ids never contain '/' or '\'' (validated), so splitting on '/' is safe.
    for step in rest.split('/') {
        match step.split_once("[@id='") {
            Some((tag, tail)) => {
                let id = tail.strip_suffix("']").ok_or_else(bad)?;
                if tag.is_empty() {
                    return Err(bad());
                }
                steps.push((tag.to_string(), Some(id.to_string())));
            }
            None if !step.is_empty() => steps.push((step.to_string(), None)),
            None => return Err(bad()),
        }
    }
    Ok(steps)
}

fn find_mut<'a>(root: &'a mut Element, path: &str) -> Result<Option<&'a mut Element>, PatchError> {
    let steps = parse_path(path)?;
    let Some(((first_tag, first_id), rest)) = steps.split_first() else {
        return Err(PatchError::BadPath(path.into()));
    };
    if &root.name != first_tag || (first_id.is_some() && root.attr("id") != first_id.as_deref()) {
        return Ok(None);
    }
    let mut cur = root;
    for (tag, id) in rest {
        let next = cur
            .children
            .iter_mut()
            .find(|c| &c.name == tag && (id.is_none() || c.attr("id") == id.as_deref()));
        match next {
            Some(n) => cur = n,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// Applies one change as `apply_v2_patchset` would: a missing path is an error except for deletes.
pub fn apply_change(root: &mut Element, change: &Change) -> Result<(), PatchError> {
    match change {
        Change::Create {
            parent,
            position,
            element,
        } => {
            let p = find_mut(root, parent)?.ok_or_else(|| PatchError::Missing(parent.clone()))?;
            let at = (*position).min(p.children.len());
            p.children.insert(at, element.clone());
        }
        Change::Modify { path, attrs, .. } => {
            let el = find_mut(root, path)?.ok_or_else(|| PatchError::Missing(path.clone()))?;
            el.attrs = attrs.attrs.clone();
        }
        Change::Delete { path } => {
            let Some((parent, _)) = path.rsplit_once('/') else {
                return Err(PatchError::BadPath(path.clone()));
            };
            let steps = parse_path(path)?;
            let Some((tag, id)) = steps.last().cloned() else {
                return Err(PatchError::BadPath(path.clone()));
            };
            if let Some(p) = find_mut(root, parent)?
                && let Some(i) = p
                    .children
                    .iter()
                    .position(|c| c.name == tag && (id.is_none() || c.attr("id") == id.as_deref()))
            {
                p.children.remove(i);
            }
        }
    }
    Ok(())
}

/// The patch path of `target` (found by identity) inside `root`, if it can be addressed.
pub fn element_path(root: &Element, target: &Element) -> Option<String> {
    fn walk(el: &Element, target: &Element, path: String) -> Option<String> {
        if std::ptr::eq(el, target) {
            return Some(path);
        }
        for c in &el.children {
            let step = match c.attr("id") {
                Some(id) => id_step(&c.name, id),
                None => c.name.clone(),
            };
            if let Some(p) = walk(c, target, format!("{path}/{step}")) {
                return Some(p);
            }
        }
        None
    }
    walk(root, target, format!("/{}", root.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_apply() {
        let mut root = Element::parse(
            r#"<cib><configuration><resources><primitive id="a"/></resources></configuration></cib>"#,
        )
        .unwrap();
        assert!(parse_path("cib/x").is_err());
        assert!(parse_path("/cib/x[@id='a").is_err());
        apply_change(
            &mut root,
            &Change::Create {
                parent: "/cib/configuration/resources".into(),
                position: 0,
                element: Element::new("primitive").with_attr("id", "b"),
            },
        )
        .unwrap();
        assert_eq!(
            root.to_xml(),
            r#"<cib><configuration><resources><primitive id="b"/><primitive id="a"/></resources></configuration></cib>"#
        );
        apply_change(
            &mut root,
            &Change::Delete {
                path: "/cib/configuration/resources/primitive[@id='a']".into(),
            },
        )
        .unwrap();
        // Deleting what is not there is fine; modifying it is not.
        apply_change(
            &mut root,
            &Change::Delete {
                path: "/cib/configuration/resources/primitive[@id='zz']".into(),
            },
        )
        .unwrap();
        let missing = Change::Modify {
            path: "/cib/configuration/resources/primitive[@id='zz']".into(),
            attrs: Element::new("primitive"),
            removed: vec![],
        };
        assert!(apply_change(&mut root, &missing).is_err());
        let b = &root.children[0].children[0].children[0];
        assert_eq!(
            element_path(&root, b).as_deref(),
            Some("/cib/configuration/resources/primitive[@id='b']")
        );
    }
}
