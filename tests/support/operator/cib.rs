//! Reading the live CIB as the operator's tests check it: primitives, their nvpairs and
//! operations, node entries and node states; and spare addresses on a test host.

use std::process::Command;
use std::time::Duration;

use kubemaker::wire::Element;

use super::super::generation::Generation;
use super::super::netns::NetnsHost;
use super::super::process::{run_ok, run_with_input, run_with_timeout, text};

/// `cibadmin ARGS` of the generation under test, against its cluster; panics unless it succeeds.
fn cibadmin(args: &[&str]) -> std::process::Output {
    let mut cmd = Generation::current().cluster_command("cibadmin");
    cmd.args(args);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "cibadmin {args:?} failed: {}",
        text(&out)
    );
    out
}

/// `cibadmin -Q`, parsed.
pub fn cib_root() -> Element {
    let out = cibadmin(&["-Q"]);
    Element::parse(&String::from_utf8_lossy(&out.stdout)).expect("cibadmin -Q prints XML")
}

/// `(admin_epoch, epoch, num_updates)` of the live CIB.
pub fn cib_version() -> (u64, u64, u64) {
    let out = cibadmin(&["--query", "--no-children"]);
    let root = Element::parse(&String::from_utf8_lossy(&out.stdout)).expect("cib XML");
    let n = |a: &str| root.attr_i64(a).unwrap_or(0).max(0) as u64;
    (n("admin_epoch"), n("epoch"), n("num_updates"))
}

/// Every `<primitive>` in `<resources>` (also inside groups, clones, bundles).
pub fn primitives(root: &Element) -> Vec<&Element> {
    fn walk<'a>(e: &'a Element, out: &mut Vec<&'a Element>) {
        if e.name == "primitive" {
            out.push(e);
        }
        for c in &e.children {
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    if let Some(r) = root
        .child("configuration")
        .and_then(|c| c.child("resources"))
    {
        walk(r, &mut out);
    }
    out
}

/// The primitives whose id starts with `prefix` (a test's group of nodes).
pub fn primitives_with_prefix<'a>(root: &'a Element, prefix: &str) -> Vec<&'a Element> {
    primitives(root)
        .into_iter()
        .filter(|p| p.attr("id").is_some_and(|id| id.starts_with(prefix)))
        .collect()
}

/// The primitive with this id.
pub fn primitive<'a>(root: &'a Element, id: &str) -> Option<&'a Element> {
    primitives(root)
        .into_iter()
        .find(|p| p.attr("id") == Some(id))
}

/// `class:provider:type` of a primitive.
pub fn agent_of(p: &Element) -> String {
    match p.attr("provider") {
        Some(prov) => format!(
            "{}:{prov}:{}",
            p.attr("class").unwrap_or(""),
            p.attr("type").unwrap_or("")
        ),
        None => format!(
            "{}:{}",
            p.attr("class").unwrap_or(""),
            p.attr("type").unwrap_or("")
        ),
    }
}

/// Value of nvpair `name` in any `<set>` (`instance_attributes`, `meta_attributes`) of `p`.
pub fn nvpair(p: &Element, set: &str, name: &str) -> Option<String> {
    p.children
        .iter()
        .filter(|c| c.name == set)
        .flat_map(|s| s.children.iter())
        .find(|n| n.name == "nvpair" && n.attr("name") == Some(name))
        .and_then(|n| n.attr("value"))
        .map(str::to_string)
}

/// `interval` of op `name` in `p`'s operations.
pub fn op_interval(p: &Element, name: &str) -> Option<String> {
    p.child("operations")?
        .children
        .iter()
        .find(|o| {
            o.name == "op" && o.attr("name") == Some(name) && o.attr("interval") != Some("0s")
        })
        .or_else(|| {
            p.child("operations")?
                .children
                .iter()
                .find(|o| o.name == "op" && o.attr("name") == Some(name))
        })
        .and_then(|o| o.attr("interval"))
        .map(str::to_string)
}

/// Whether `<nodes>` has a `<node>` whose id or uname is `name`.
pub fn has_node_entry(root: &Element, name: &str) -> bool {
    root.child("configuration")
        .and_then(|c| c.child("nodes"))
        .is_some_and(|n| {
            n.children.iter().any(|e| {
                e.name == "node" && (e.attr("id") == Some(name) || e.attr("uname") == Some(name))
            })
        })
}

/// Whether `<status>` has a `<node_state>` whose id or uname is `name`.
pub fn has_node_state(root: &Element, name: &str) -> bool {
    root.child("status").is_some_and(|s| {
        s.children.iter().any(|e| {
            e.name == "node_state" && (e.attr("id") == Some(name) || e.attr("uname") == Some(name))
        })
    })
}

/// Adds addresses `10.250.<n>.<first>..` (`count` of them) inside `host` (on its eth0), so that
/// connections to them are refused at once by the host's kernel (nothing listens) instead of
/// timing out; traffic stays on the test host's own link. Returns the addresses.
pub fn add_host_addresses(host: &NetnsHost, first: u32, count: u32) -> Vec<String> {
    let base = host.addr();
    let prefix = base
        .rsplit_once('.')
        .map(|(p, _)| p.to_string())
        .expect("an IPv4 address");
    assert!(
        first >= 3 && first + count <= 255,
        "addresses 3..=254 are free in a test host's /24"
    );
    let addrs: Vec<String> = (first..first + count)
        .map(|i| format!("{prefix}.{i}"))
        .collect();
    let batch: String = addrs
        .iter()
        .map(|a| format!("addr replace {a}/24 dev eth0\n"))
        .collect();
    let o = run_with_input(
        Command::new("ip").args(["-n", host.name(), "-batch", "-"]),
        Some(batch.as_bytes()),
        Duration::from_secs(60),
    );
    assert!(
        o.status.success(),
        "ip -n {} -batch (addr add): {}",
        host.name(),
        text(&o)
    );
    addrs
}

/// Asserts that primitive `names[i]` connects to `addrs[i]` and that no other primitive connects
/// to that address (each node configured exactly once).
pub fn assert_one_connection_each(root: &Element, names: &[String], addrs: &[String]) {
    for (n, a) in names.iter().zip(addrs) {
        let p = primitive(root, n).unwrap_or_else(|| panic!("no primitive {n}"));
        assert_eq!(
            nvpair(p, "instance_attributes", "server").as_deref(),
            Some(a.as_str()),
            "{}",
            p.to_xml()
        );
        let servers = primitives(root)
            .iter()
            .filter(|p| nvpair(p, "instance_attributes", "server").as_deref() == Some(a.as_str()))
            .count();
        assert_eq!(servers, 1, "exactly one connection to {a}");
    }
}
