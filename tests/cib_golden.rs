//! Golden files for the pure parts of the CIB layer, and a property test of the planner.
//!
//! - `tests/golden/cib/plan/<case>.yaml` → `<case>.render.xml` (what `kubemaker render` prints) and
//!   `<case>.patch.xml` (the patch against `<case>.live.xml`, or `base.cib.xml`).
//! - `tests/golden/cib/status/<state>.cib.xml` (captured from the real test cluster by
//!   `tests/cib_status_capture.rs`) → `<state>.status.json`, and the status reader agrees with
//!   `crm_mon --output-as=xml` run on the same file (`CIB_file=…`), the oracle.
//!
//! `UPDATE_GOLDEN=1 cargo test --test cib_golden` rewrites the expected files; review the diff.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kubemaker::cib::DesiredNode;
use kubemaker::cib::live_checks;
use kubemaker::cib::model::Cib;
use kubemaker::cib::patch::apply_change;
use kubemaker::cib::plan::{Plan, plan};
use kubemaker::cib::render::pretty_xml;
use kubemaker::cib::spec::{GuestSpec, MonitorSpec, NodeType, RemoteNodeManifest, RemoteNodeSpec};
use kubemaker::cib::status::{NodeStatus, read_status};
use kubemaker::wire::Element;

fn golden_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/cib")
        .join(sub)
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// Compares `actual` with the file, or rewrites it under UPDATE_GOLDEN=1.
fn check_golden(path: &Path, actual: &str) {
    if updating() {
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "missing golden file {} ({e}); run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from the output (UPDATE_GOLDEN=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

fn cases(dir: &Path, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(suffix)
                .map(str::to_string)
        })
        .collect();
    out.sort();
    out
}

fn load_cib(path: &Path) -> Element {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Element::parse(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn apply(live: &mut Element, p: &Plan) {
    for c in p.changes() {
        apply_change(live, c).unwrap_or_else(|e| panic!("{e} while applying {}", c.describe()));
    }
}

#[test]
fn planner_golden_files() {
    let dir = golden_dir("plan");
    let names = cases(&dir, ".yaml");
    assert!(
        names.len() >= 5,
        "planner cases missing in {}",
        dir.display()
    );
    for case in names {
        let text = std::fs::read_to_string(dir.join(format!("{case}.yaml"))).unwrap();
        let manifests =
            RemoteNodeManifest::all_from_yaml(&text).unwrap_or_else(|e| panic!("{case}: {e}"));
        let desired: Vec<DesiredNode> = manifests
            .iter()
            .map(|m| DesiredNode::from_manifest(m).unwrap_or_else(|p| panic!("{case}: {p:?}")))
            .collect();
        let rendered: String = desired.iter().map(|d| pretty_xml(&d.render())).collect();
        check_golden(&dir.join(format!("{case}.render.xml")), &rendered);

        let live_path = dir.join(format!("{case}.live.xml"));
        let mut live = if live_path.exists() {
            load_cib(&live_path)
        } else {
            load_cib(&dir.join("base.cib.xml"))
        };
        assert_eq!(
            live_checks::check_against_cib(&desired, &live),
            vec![],
            "{case}"
        );
        let p = plan(&desired, &live);
        let patch = p.to_patch(Cib::new(&live).version());
        check_golden(&dir.join(format!("{case}.patch.xml")), &pretty_xml(&patch));
        // Stable: the same inputs plan the same; applied, nothing is left to do.
        assert_eq!(
            plan(&desired, &live),
            p,
            "{case}: planning is not deterministic"
        );
        apply(&mut live, &p);
        assert!(plan(&desired, &live).is_empty(), "{case}: not idempotent");
    }
}

// ---------------------------------------------------------------------------------------------
// Property test: a small seeded generator (no dependency), many rounds.
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn random_duration(r: &mut Rng) -> String {
    let unit = r.pick(&["s", "ms", "min", "m", "h", ""]);
    format!("{}{unit}", 1 + r.below(120))
}

fn random_spec(r: &mut Rng, i: usize) -> (String, RemoteNodeSpec) {
    let name = format!("n{i}-{}", r.pick(&["a", "bb", "x.y", "k_8"]));
    let mut spec = RemoteNodeSpec {
        address: r
            .chance(80)
            .then(|| format!("10.{}.{}.{}", r.below(250), r.below(250), i + 1)),
        port: r.chance(30).then(|| 1 + r.below(65535) as i64),
        monitor: r.chance(50).then(|| MonitorSpec {
            interval: r.chance(70).then(|| format!("{}s", 1 + r.below(90))),
            timeout: r.chance(50).then(|| random_duration(r)),
        }),
        start_timeout: r.chance(30).then(|| random_duration(r)),
        stop_timeout: r.chance(30).then(|| random_duration(r)),
        standby: r.chance(30),
        maintenance: r.chance(20),
        ..Default::default()
    };
    for _ in 0..r.below(4) {
        let k = r
            .pick(&["rack", "zone", "gpu", "site", "tier", "#health-x"])
            .replace('#', "h");
        spec.attributes
            .insert(k, r.pick(&["1", "on", "a b", "<&>\"'", "r9"]).to_string());
    }
    if r.chance(35) {
        spec.node_type = NodeType::Guest;
        let mut params = BTreeMap::new();
        params.insert("config".to_string(), format!("/etc/pacemaker/{name}.xml"));
        if r.chance(50) {
            params.insert("hypervisor".into(), "qemu:///session".into());
        }
        spec.guest = Some(GuestSpec {
            resource_id: r.chance(50).then(|| format!("vm-{i}")),
            agent: r.chance(30).then(|| "ocf:pacemaker:Dummy".to_string()),
            parameters: params,
            connect_timeout: r.chance(40).then(|| random_duration(r)),
            allow_migrate: r.chance(50).then(|| r.chance(50)),
        });
    } else if r.chance(40) {
        spec.reconnect_interval = Some(random_duration(r));
    }
    (name, spec)
}

/// Shuffles children and attributes of every element (order carries no meaning in the CIB).
fn shuffle(el: &mut Element, r: &mut Rng) {
    for i in (1..el.children.len()).rev() {
        let j = r.below(i as u64 + 1) as usize;
        el.children.swap(i, j);
    }
    for i in (1..el.attrs.len()).rev() {
        let j = r.below(i as u64 + 1) as usize;
        el.attrs.swap(i, j);
    }
    for c in &mut el.children {
        shuffle(c, r);
    }
}

#[test]
fn plan_is_deterministic_and_idempotent() {
    let base = load_cib(&golden_dir("plan").join("base.cib.xml"));
    let seed = std::env::var("CIB_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_u64);
    let mut r = Rng(seed | 1);
    for round in 0..300 {
        let n = 1 + r.below(6) as usize;
        let specs: Vec<(String, RemoteNodeSpec)> = (0..n).map(|i| random_spec(&mut r, i)).collect();
        let desired: Vec<DesiredNode> = specs
            .iter()
            .map(|(name, s)| {
                DesiredNode::from_spec(name, s).unwrap_or_else(|p| panic!("round {round}: {p:?}"))
            })
            .collect();
        let mut live = base.clone();
        let p1 = plan(&desired, &live);
        let p2 = plan(&desired, &live);
        assert_eq!(p1, p2, "round {round}: plan differs between runs");
        let v = Cib::new(&live).version();
        assert_eq!(p1.to_patch(v).to_xml(), p2.to_patch(v).to_xml());
        apply(&mut live, &p1);
        assert!(
            plan(&desired, &live).is_empty(),
            "round {round}: not idempotent after apply"
        );
        // Order of elements and attributes in the live CIB does not matter.
        shuffle(&mut live, &mut r);
        let after_shuffle = plan(&desired, &live);
        assert!(
            after_shuffle.is_empty(),
            "round {round}: order-sensitive: {after_shuffle:?}"
        );
        // A changed spec converges in one plan, and untouched nodes get no changes.
        let k = r.below(n as u64) as usize;
        let mut specs2 = specs.clone();
        let (name, _) = &specs[k];
        // Same kind of node (a kind change is a remove and re-create, not an update).
        let mut changed = random_spec(&mut r, k).1;
        for _ in 0..100 {
            if changed.node_type == specs[k].1.node_type {
                break;
            }
            changed = random_spec(&mut r, k).1;
        }
        assert_eq!(
            changed.node_type, specs[k].1.node_type,
            "generator never produced the same kind"
        );
        if let (Some(g), Some(old)) = (changed.guest.as_mut(), specs[k].1.guest.as_ref()) {
            g.resource_id = old.resource_id.clone();
        }
        specs2[k] = (name.clone(), changed);
        let desired2: Vec<DesiredNode> = specs2
            .iter()
            .map(|(n, s)| DesiredNode::from_spec(n, s).unwrap())
            .collect();
        let p3 = plan(&desired2, &live);
        assert!(
            p3.nodes.iter().all(|nc| &nc.node == name),
            "round {round}: other nodes touched"
        );
        apply(&mut live, &p3);
        assert!(
            plan(&desired2, &live).is_empty(),
            "round {round}: did not converge"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Status reader
// ---------------------------------------------------------------------------------------------

/// What crm_mon says about one node and the resources on it.
#[derive(Debug, PartialEq, Eq)]
struct OracleNode {
    online: bool,
    standby: bool,
    maintenance: bool,
    unclean: bool,
    host: Option<String>,
    resources: Vec<String>,
    failures: Vec<(String, String, String)>,
}

/// `crm_mon` of `generation` run on the CIB file `cib` (`CIB_file`): the host's for 2.1.5, the
/// root's for 3.x (chrooted by scripts/lib/pcmk-root-exec.sh, with a copy of the file in a
/// directory it binds).
fn crm_mon_on_file(cib: &Path, generation: &support::Generation, root: Option<&Path>) -> Element {
    let args = ["-1", "--output-as=xml", "--inactive"];
    let out = match root {
        None => support::run_with_timeout(
            Command::new("crm_mon").args(args).env("CIB_file", cib),
            Duration::from_secs(30),
        ),
        Some(root) => {
            let dir = std::env::temp_dir().join(format!(
                "km-golden-{}-{}",
                generation.version(),
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let copy = dir.join(cib.file_name().unwrap());
            std::fs::copy(cib, &copy).unwrap();
            let out = support::run_with_timeout(
                Command::new("bash")
                    .arg(support::repo_root().join("scripts/lib/pcmk-root-exec.sh"))
                    .arg(root)
                    .arg(&dir)
                    .arg("--")
                    .arg("crm_mon")
                    .args(args)
                    .env("CIB_file", &copy),
                Duration::from_secs(30),
            );
            let _ = std::fs::remove_dir_all(&dir);
            out
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    Element::parse(&text).unwrap_or_else(|e| {
        panic!(
            "Pacemaker {}'s crm_mon on {}: {e}\n{text}\n{}",
            generation.version(),
            cib.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn all_resources(el: &Element, out: &mut Vec<(String, Vec<String>, bool)>) {
    for c in &el.children {
        if c.name == "resource" {
            let nodes = c
                .children
                .iter()
                .filter(|n| n.name == "node")
                .filter_map(|n| n.attr("name").map(str::to_string))
                .collect();
            out.push((
                c.attr("id").unwrap_or("").to_string(),
                nodes,
                c.attr("active") == Some("true"),
            ));
        } else {
            all_resources(c, out);
        }
    }
}

fn oracle(mon: &Element, node: &str, connection: &str) -> OracleNode {
    let n = mon
        .child("nodes")
        .and_then(|ns| ns.children.iter().find(|n| n.attr("name") == Some(node)))
        .unwrap_or_else(|| panic!("crm_mon has no node {node}"));
    let b = |k: &str| n.attr(k) == Some("true");
    let mut rscs = Vec::new();
    if let Some(r) = mon.child("resources") {
        all_resources(r, &mut rscs);
    }
    let host = rscs
        .iter()
        .find(|(id, nodes, active)| id == connection && *active && !nodes.is_empty())
        .map(|(_, nodes, _)| nodes[0].clone());
    let mut resources: Vec<String> = rscs
        .iter()
        .filter(|(_, nodes, active)| *active && nodes.iter().any(|x| x == node))
        .map(|(id, _, _)| id.clone())
        .collect();
    resources.sort();
    let mut failures: Vec<(String, String, String)> = mon
        .child("failures")
        .map(|f| {
            f.children
                .iter()
                .map(|x| {
                    let key = x.attr("op_key").unwrap_or("");
                    let task = x.attr("task").unwrap_or("").to_string();
                    let rsc = key
                        .rsplit_once(&format!("_{task}_"))
                        .map_or(key, |(r, _)| r)
                        .to_string();
                    (rsc, x.attr("node").unwrap_or("").to_string(), task)
                })
                .collect()
        })
        .unwrap_or_default();
    failures.sort();
    OracleNode {
        online: b("online"),
        standby: b("standby"),
        maintenance: b("maintenance"),
        unclean: b("unclean"),
        host,
        resources,
        failures,
    }
}

fn ours(s: &NodeStatus, all: &[NodeStatus]) -> OracleNode {
    let mut failures: Vec<(String, String, String)> = s
        .failed_actions
        .iter()
        .map(|f| (f.resource.clone(), f.node.clone(), f.task.clone()))
        .collect();
    failures.sort();
    let _ = all;
    OracleNode {
        online: s.online,
        standby: s.standby,
        maintenance: s.maintenance,
        unclean: s.unclean,
        host: s.host.clone(),
        resources: s.resources.iter().map(|r| r.id.clone()).collect(),
        failures,
    }
}

/// The status fixtures of each generation: `status/` from 2.1.5, `status-<version>/` from 3.x
/// (captured by `tests/cib_status_capture.rs` under that `KUBEMAKER_PACEMAKER`), each checked
/// against that generation's own crm_mon.
#[test]
fn status_reader_golden_files_and_crm_mon_oracle() {
    let mut fixtures = 0;
    for generation in support::Generation::all() {
        let dir = if generation.is_host() {
            golden_dir("status")
        } else {
            golden_dir(&format!("status-{}", generation.version()))
        };
        if !dir.exists() {
            assert!(
                !generation.is_host(),
                "no status fixtures in {}; capture them with `cargo test --test cib_status_capture -- --ignored`",
                dir.display()
            );
            continue;
        }
        let root = match generation.built_root() {
            Ok(root) => root,
            Err(why) => {
                support::env::skip_or_panic(&why);
                continue;
            }
        };
        let have_crm_mon = root.is_some() || support::require_tools(&["crm_mon"]);
        fixtures +=
            check_status_fixtures(&dir, generation, have_crm_mon.then_some(root.as_deref()));
    }
    assert!(fixtures > 0, "no status fixtures at all");
}

/// Checks the fixtures of `dir`; with `oracle`, against the generation's crm_mon (`Some(root)`).
/// Returns how many it checked.
fn check_status_fixtures(
    dir: &Path,
    generation: &support::Generation,
    oracle_root: Option<Option<&Path>>,
) -> usize {
    let states = cases(dir, ".cib.xml");
    assert!(!states.is_empty(), "no *.cib.xml in {}", dir.display());
    for state in &states {
        let path = dir.join(format!("{state}.cib.xml"));
        let cib = load_cib(&path);
        let statuses = read_status(&cib);
        let json = serde_json::to_string_pretty(&statuses).unwrap() + "\n";
        check_golden(&dir.join(format!("{state}.status.json")), &json);
        let Some(root) = oracle_root else {
            continue;
        };
        // crm_mon's view of every failure must be among ours (ours also keeps failures of
        // resources crm_mon shows elsewhere), and the node facts must be equal.
        let mon = crm_mon_on_file(&path, generation, root);
        for s in &statuses {
            let want = oracle(&mon, &s.name, &s.connection);
            let got = ours(s, &statuses);
            let relevant: Vec<_> = want
                .failures
                .iter()
                .filter(|f| {
                    f.1 == s.name || f.0 == s.connection || Some(&f.0) == s.guest_resource.as_ref()
                })
                .cloned()
                .collect();
            assert_eq!(
                (
                    got.online,
                    got.standby,
                    got.maintenance,
                    got.unclean,
                    &got.host,
                    &got.resources,
                    &got.failures
                ),
                (
                    want.online,
                    want.standby,
                    want.maintenance,
                    want.unclean,
                    &want.host,
                    &want.resources,
                    &relevant
                ),
                "Pacemaker {} {state}: node {} differs from crm_mon (ours, then crm_mon's)",
                generation.version(),
                s.name
            );
        }
    }
    states.len()
}

/// `kubemaker render -f FILE` prints exactly the golden rendering; bad input is explained.
#[test]
fn render_cli_matches_golden_files() {
    let dir = golden_dir("plan");
    for case in ["remote-full", "guest-virtualdomain", "many"] {
        let out = support::run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_kubemaker"))
                .args(["render", "-f"])
                .arg(dir.join(format!("{case}.yaml"))),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = std::fs::read_to_string(dir.join(format!("{case}.render.xml"))).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{case}");
    }
    let bad = std::env::temp_dir().join(format!("km-render-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        "apiVersion: kubemaker.io/v1alpha1\nkind: RemoteNode\nmetadata: {name: 9bad}\nspec: {port: 0}\n",
    )
    .unwrap();
    let out = support::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_kubemaker"))
            .args(["render", "-f"])
            .arg(&bad),
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_file(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("node name \"9bad\"") && err.contains("between 1 and 65535"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Every planned configuration is one each Pacemaker generation accepts (its own crm_verify)
// ---------------------------------------------------------------------------------------------

/// `cib` as the generation's schema wants it, fencing off (the test cluster has no device):
/// 3.x reads `pacemaker-4.0`; 3.0.3 warns (and crm_verify fails) on the `stonith-enabled` name it
/// deprecated for `fencing-enabled`.
fn for_generation(mut cib: Element, generation: &support::Generation) -> Element {
    if generation.at_least("3.0.0") {
        cib.set_attr("validate-with", "pacemaker-4.0");
    }
    let option = if generation.at_least("3.0.3") {
        "fencing-enabled"
    } else {
        "stonith-enabled"
    };
    let crm_config = cib
        .child_mut("configuration")
        .and_then(|c| c.child_mut("crm_config"))
        .expect("a <crm_config> in the planned CIB");
    crm_config
        .children
        .retain(|set| set.name != "cluster_property_set");
    crm_config.children.push(
        Element::new("cluster_property_set")
            .with_attr("id", "cib-bootstrap-options")
            .with_child(
                Element::new("nvpair")
                    .with_attr("id", format!("cib-bootstrap-options-{option}"))
                    .with_attr("name", option)
                    .with_attr("value", "false"),
            ),
    );
    cib
}

#[test]
fn planned_configuration_validates_on_every_generation() {
    let dir = golden_dir("plan");
    let mut checked = 0;
    for generation in support::Generation::all() {
        let root = match generation.built_root() {
            Ok(root) => root,
            Err(why) => {
                support::env::skip_or_panic(&why);
                continue;
            }
        };
        if root.is_none() && !support::require_tools(&["crm_verify"]) {
            continue;
        }
        for case in cases(&dir, ".yaml") {
            let text = std::fs::read_to_string(dir.join(format!("{case}.yaml"))).unwrap();
            let desired: Vec<DesiredNode> = RemoteNodeManifest::all_from_yaml(&text)
                .unwrap()
                .iter()
                .map(|m| DesiredNode::from_manifest(m).unwrap())
                .collect();
            let live_path = dir.join(format!("{case}.live.xml"));
            let mut live = if live_path.exists() {
                load_cib(&live_path)
            } else {
                load_cib(&dir.join("base.cib.xml"))
            };
            let planned = plan(&desired, &live);
            apply(&mut live, &planned);
            let cib = for_generation(live, generation).to_xml();
            let mut cmd = match &root {
                None => Command::new("crm_verify"),
                Some(root) => {
                    let mut c = Command::new("chroot");
                    c.arg(root).arg("crm_verify");
                    c
                }
            };
            cmd.args(["--xml-pipe", "-V"]);
            let out =
                support::run_with_input(&mut cmd, Some(cib.as_bytes()), Duration::from_secs(60));
            assert!(
                out.status.success(),
                "Pacemaker {}'s crm_verify refuses the planned configuration of {case}: {}{}\n{cib}",
                generation.version(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    eprintln!("{checked} planned configurations verified");
}
