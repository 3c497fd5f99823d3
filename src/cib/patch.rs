//! Patch paths (`/cib/configuration/resources/primitive[@id='x']`) and a local applier with
//! Pacemaker's v2 semantics, used to simulate plans in tests and to check a removal leaves the
//! CIB as intended.

use crate::wire::Element;

use super::model::id_step;
use super::plan::Change;

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
