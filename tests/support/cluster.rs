//! Exclusive use of the one-node test cluster of `scripts/test-cluster.sh` (of the Pacemaker
//! generation [`Generation::current`]), reset to an empty configuration, with
//! `crm_mon`/`cibadmin` helpers (the generation's own tools, inside its node), bounded waits on a
//! parsed [`MonView`], and `ocf:pacemaker:Dummy` resources pinned to one remote node.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kubemaker::wire::Element;

use super::env::{lock_file, repo_root};
use super::generation::Generation;
use super::keys::{mark_remote_key_idle, mark_remote_key_in_use};
use super::mon::{MonView, walk};
use super::process::{run_with_timeout, wait_child};

/// Held (flock) by whoever uses the test cluster; `scripts/test-cluster.sh start|stop` takes it too.
pub const CLUSTER_LOCK: &str = "/var/tmp/kubemaker-test/cluster.lock";

const POLL: Duration = Duration::from_millis(500);

/// Exclusive use of the one-node test cluster (`scripts/test-cluster.sh`).
///
/// [`Cluster::acquire`] serializes all users, threads and test binaries alike, with an flock on
/// [`CLUSTER_LOCK`] that is held until the `Cluster` is dropped. The cluster keeps running after the
/// drop (it is reused by the next test; `scripts/test.sh` stops it at the end).
pub struct Cluster {
    _lock: File,
    node1: String,
}

impl Cluster {
    /// Locks the cluster (waiting at most 30 min for other tests), starts it if needed, and resets
    /// it to an empty configuration (see [`Cluster::reset`]).
    pub fn acquire() -> Cluster {
        let lock = lock_file(Path::new(CLUSTER_LOCK), Duration::from_secs(30 * 60));
        let script = repo_root().join("scripts/test-cluster.sh");
        let started = Instant::now();
        // The script's progress lines go straight to our stderr. It bounds its own waits; the
        // limit here only guards against a hung script.
        let generation = Generation::current();
        eprintln!(
            "[harness] Pacemaker {} test cluster (KUBEMAKER_PACEMAKER)",
            generation.version()
        );
        let mut child = Command::new("bash")
            .arg(&script)
            .arg("start")
            .env("KUBEMAKER_PACEMAKER", generation.version())
            .env("KUBEMAKER_CLUSTER_LOCKED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let (status, timed_out) = wait_child(&mut child, Duration::from_secs(300));
        if timed_out || !status.success() {
            panic!(
                "`{} start` failed ({status}{}); logs in {}/",
                script.display(),
                if timed_out {
                    ", killed after 300 s"
                } else {
                    ""
                },
                generation.state_dir().display()
            );
        }
        eprintln!(
            "[harness] cluster ready after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut cluster = Cluster {
            _lock: lock,
            node1: "node1".to_string(),
        };
        let view = cluster.mon();
        if let Some(member) = view.nodes().iter().find(|n| n.node_type == "member") {
            cluster.node1 = member.name.clone();
        }
        let reset_start = Instant::now();
        cluster.reset();
        eprintln!(
            "[harness] cluster reset in {:.1} s",
            reset_start.elapsed().as_secs_f64()
        );
        cluster
    }

    /// Name of the (only) cluster node, `node1` with the package's corosync.conf.
    pub fn node1(&self) -> &str {
        &self.node1
    }

    /// The Pacemaker generation of this cluster.
    pub fn generation(&self) -> &'static Generation {
        Generation::current()
    }

    /// The cluster node's address (127.0.0.1 for 2.1.5, the node's own for 3.x).
    pub fn node_addr(&self) -> String {
        self.generation().node_addr()
    }

    /// Where the cluster node's file `path` is seen from the test (see
    /// [`Generation::cluster_path`]).
    pub fn node_path(&self, path: &str) -> PathBuf {
        self.generation().cluster_path(path)
    }

    /// Runs the generation's `program args` against the cluster (30 s limit) and returns its
    /// output whatever the exit status.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = self.generation().cluster_command(program);
        cmd.args(args);
        run_with_timeout(&mut cmd, Duration::from_secs(30))
    }

    /// Like [`Cluster::run`], but panics with the output unless the exit status is 0.
    pub fn run_ok(&self, program: &str, args: &[&str]) -> Output {
        let out = self.run(program, args);
        if !out.status.success() {
            panic!(
                "`{program} {}` (Pacemaker {}) failed ({}):\nstdout: {}\nstderr: {}",
                args.join(" "),
                self.generation().version(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    /// Sets the cluster property `name` (`crm_attribute --type crm_config`), or deletes it when
    /// `value` is None; returns the tool's output.
    pub fn set_property(&self, name: &str, value: Option<&str>) -> Output {
        let mut args = vec!["--type", "crm_config", "--name", name];
        match value {
            Some(v) => args.extend(["--update", v]),
            None => args.push("--delete"),
        }
        self.run("crm_attribute", &args)
    }

    /// `crm_mon -1 --output-as=xml` (panics if crm_mon fails).
    pub fn crm_mon_xml(&self) -> String {
        let out = self.run_ok("crm_mon", &["-1", "--output-as=xml"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `crm_mon -1 --inactive --failcounts` as text, for humans (never panics).
    pub fn crm_mon_text(&self) -> String {
        let out = self.run("crm_mon", &["-1", "--inactive", "--failcounts"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Parsed [`Cluster::crm_mon_xml`].
    pub fn mon(&self) -> MonView {
        MonView::parse(&self.crm_mon_xml())
    }

    /// Runs `cibadmin args` (30 s limit) and returns its output whatever the exit status.
    pub fn cibadmin(&self, args: &[&str]) -> Output {
        if args.iter().any(|a| mentions_remote_connection(a)) {
            mark_remote_key_in_use();
        }
        self.run("cibadmin", args)
    }

    /// `cibadmin -Q`: the whole CIB as XML.
    pub fn cib_xml(&self) -> String {
        String::from_utf8_lossy(&self.run_ok("cibadmin", &["-Q"]).stdout).into_owned()
    }

    /// Adds `xml` (a `<primitive>`, `<group>`, `<clone>`, ...) to the `resources` section; panics on
    /// failure.
    pub fn create_resource_xml(&self, xml: &str) {
        self.create_in("resources", xml);
    }

    /// Adds `xml` (an `<rsc_location>`, `<rsc_order>`, ...) to the `constraints` section; panics on
    /// failure.
    pub fn create_constraint_xml(&self, xml: &str) {
        self.create_in("constraints", xml);
    }

    fn create_in(&self, section: &str, xml: &str) {
        let out = self.cibadmin(&["--create", "-o", section, "--xml-text", xml]);
        if !out.status.success() {
            panic!(
                "cibadmin --create -o {section} failed ({}): {}{}\nXML: {xml}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Sets meta attribute `target-role` of resource `id` to `role` (`Started`, `Stopped`);
    /// panics on failure.
    pub fn set_target_role(&self, id: &str, role: &str) {
        self.run_ok(
            "crm_resource",
            &[
                "--resource",
                id,
                "--meta",
                "--set-parameter",
                "target-role",
                "--parameter-value",
                role,
            ],
        );
    }

    /// After nodes `names` were removed through the CIB alone: a Pacemaker 3.0 DC keeps a removed
    /// remote node that was online in its remote peer cache and writes an empty `<node_state>` back
    /// at once when the CIB deletes it (2.1.5 does not); the scheduler ignores it. Only the
    /// controller's API drops it (`crm_node --force --remove`, what `pcs cluster node
    /// remove-remote` runs), which the remote CIB port cannot reach. On 3.x this clears each such
    /// entry the admin's way and checks that none is left once the cluster is idle; returns the
    /// names it cleared.
    /// On 2.1.5 it does nothing: any `<node_state>` left there is a trace the caller must find.
    pub fn clear_removed_remote_states(&self, names: &[&str]) -> Vec<String> {
        if self.generation().is_host() {
            return Vec::new();
        }
        // 3.0.0's controller does not find a remote node in its peer cache by name (fixed in
        // 3.0.1, "better detect remote nodes in peer cache"), so a transition still in flight
        // can write entries back, also of nodes whose entry was already gone when we looked.
        // So each round starts from an idle cluster and a fresh CIB; four rounds at most.
        let bare_now = || {
            self.settle(Duration::from_secs(30));
            let cib = Element::parse(&self.cib_xml()).expect("cibadmin -Q prints XML");
            names
                .iter()
                .filter(|n| bare_remote_state(&cib, n))
                .map(|n| n.to_string())
                .collect::<Vec<String>>()
        };
        let mut cleared: Vec<String> = Vec::new();
        for _round in 0..4 {
            let bare = bare_now();
            if bare.is_empty() {
                return cleared;
            }
            for name in bare {
                eprintln!(
                    "[harness] Pacemaker {} kept an empty node_state for removed node {name}; crm_node --force --remove clears it",
                    self.generation().version()
                );
                self.run_ok("crm_node", &["--force", "--remove", &name]);
                if !cleared.contains(&name) {
                    cleared.push(name);
                }
            }
        }
        let left = bare_now();
        assert!(
            left.is_empty(),
            "node_state of {left:?} still in the CIB after four rounds of crm_node --force --remove"
        );
        cleared
    }

    /// Waits (at most `timeout`) until the cluster has nothing left to do: no transition in
    /// flight and none the scheduler would start (`crm_resource --wait`). A resource shown
    /// started may still have its recurring monitor being set up; a fault injected then lands
    /// in that action and Pacemaker records a different outcome.
    pub fn settle(&self, timeout: Duration) {
        let limit = format!("--timeout={}s", timeout.as_secs());
        let mut cmd = self.generation().cluster_command("crm_resource");
        cmd.args(["--wait", &limit]);
        let out = run_with_timeout(&mut cmd, timeout + Duration::from_secs(10));
        if !out.status.success() {
            panic!(
                "the cluster did not settle within {timeout:?} (crm_resource --wait: {}):\n{}\n--- crm_mon ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.crm_mon_text()
            );
        }
    }

    /// Polls `crm_mon` every 500 ms until `pred` holds, at most `timeout`; returns the view that
    /// satisfied it. On timeout panics with `what` and the last `crm_mon` text output.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&MonView) -> bool,
    ) -> MonView {
        match self.poll_until(timeout, pred) {
            Ok(view) => view,
            Err(last_error) => panic!(
                "timed out after {timeout:?} waiting for: {what}\n{last_error}--- crm_mon ---\n{}",
                self.crm_mon_text()
            ),
        }
    }

    /// Bounded polling without panicking; Err carries a note about the last crm_mon failure.
    pub fn poll_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&MonView) -> bool,
    ) -> Result<MonView, String> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::new();
        loop {
            let out = run_with_timeout(
                self.generation()
                    .cluster_command("crm_mon")
                    .args(["-1", "--output-as=xml"]),
                Duration::from_secs(15),
            );
            // crm_mon exits non-zero in some transient states but still prints XML.
            let xml = String::from_utf8_lossy(&out.stdout);
            if xml.contains("<pacemaker-result") {
                let view = MonView::parse(&xml);
                if pred(&view) {
                    return Ok(view);
                }
            } else {
                last_error = format!(
                    "last crm_mon error: {}\n",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            if Instant::now() + POLL > deadline {
                return Err(last_error);
            }
            thread::sleep(POLL);
        }
    }

    /// Brings the cluster back to an empty configuration: no resources, no constraints, no remote
    /// node entries (`<nodes>` and `<status>`), no failure history, `stop-all-resources` unset, no
    /// `standby`/`maintenance` on the cluster node. [`Cluster::acquire`] calls it; a test may call it
    /// at its end to stop resources while its remote daemons still run (a clean stop is quicker than
    /// recovering from a vanished remote node).
    ///
    /// Steps: set `stop-all-resources=true` and wait (60 s at most) until nothing is active; replace
    /// `<resources/>` and `<constraints/>`; `crm_node --force --remove` every remote node, then delete
    /// its `<node>`/`<node_state>` should they remain; fencing off again if a crashed fencing test
    /// left it on; `crm_resource --cleanup` (forgets the failures
    /// and history of the now-orphaned resources); unset `stop-all-resources`; wait (60 s) until
    /// crm_mon shows no resource, no remote node and no failure.
    pub fn reset(&self) {
        let cib = self.cib_xml();
        let state = CibLeftovers::scan(&cib);
        if state.had_remote_connection {
            mark_remote_key_in_use();
        }

        if state.has_resources {
            self.run_ok(
                "crm_attribute",
                &[
                    "--type",
                    "crm_config",
                    "--name",
                    "stop-all-resources",
                    "--update",
                    "true",
                ],
            );
            let stopped = self.poll_until(Duration::from_secs(60), |v| {
                v.resources().iter().all(|r| !r.active)
            });
            if stopped.is_err() {
                eprintln!(
                    "[harness] reset: resources still active after 60 s, removing them anyway:\n{}",
                    self.crm_mon_text()
                );
            }
        }
        if state.has_resources || state.has_constraints {
            for section in ["constraints", "resources"] {
                let empty = format!("<{section}/>");
                let out = self.run(
                    "cibadmin",
                    &["--replace", "-o", section, "--xml-text", &empty],
                );
                if !out.status.success() {
                    panic!(
                        "reset: emptying {section} failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        for name in &state.remote_nodes {
            let out = self.run("crm_node", &["--force", "--remove", name]);
            if !out.status.success() {
                eprintln!(
                    "[harness] reset: crm_node --force --remove {name}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            // crm_node deletes both; make sure (missing elements are an error we ignore).
            for xpath in [
                format!("/cib/configuration/nodes/node[@id='{name}']"),
                format!("/cib/status/node_state[@id='{name}']"),
            ] {
                let _ = self.run("cibadmin", &["--delete", "--xpath", &xpath]);
            }
        }
        if state.fencing_left_on {
            // As scripts/test-cluster.sh starts it: no fencing (a fencing test turns it on).
            let _ = self.set_property("stonith-action", None);
            let out = self.set_property("stonith-enabled", Some("false"));
            assert!(out.status.success(), "reset: stonith-enabled=false failed");
        }
        for attr in ["standby", "maintenance"] {
            if state.node_attrs.iter().any(|a| a == attr) {
                let _ = self.run(
                    "crm_attribute",
                    &["--node", &self.node1, "--name", attr, "--delete"],
                );
            }
        }
        let view = self.mon();
        if !view.failures().is_empty() || state.has_resources {
            self.run_ok("crm_resource", &["--cleanup"]);
        }
        if state.stop_all_resources_set || state.has_resources {
            let _ = self.run(
                "crm_attribute",
                &[
                    "--type",
                    "crm_config",
                    "--name",
                    "stop-all-resources",
                    "--delete",
                ],
            );
        }
        if state.had_remote_connection {
            mark_remote_key_idle();
        }
        let node1 = self.node1.clone();
        self.wait_until(
            "a clean cluster (no resources, no remote nodes, no failures)",
            Duration::from_secs(60),
            move |v| {
                v.dc_present()
                    && v.resources().is_empty()
                    && v.failures().is_empty()
                    && v.nodes().iter().all(|n| n.node_type != "remote")
                    && v.node(&node1).is_some_and(|n| n.online)
            },
        );
    }
}

/// Whether the status of `cib` holds, for `name`, only an empty remote `<node_state>` marked out of
/// the membership: what a Pacemaker 3.0 DC writes back for a removed remote node that was online
/// (see [`Cluster::clear_removed_remote_states`]).
pub fn bare_remote_state(cib: &Element, name: &str) -> bool {
    let states: Vec<&Element> = cib
        .child("status")
        .map(|s| {
            s.children
                .iter()
                .filter(|c| c.name == "node_state" && c.attr("id") == Some(name))
                .collect()
        })
        .unwrap_or_default();
    states.len() == 1
        && states[0].children.is_empty()
        && states[0].attr("remote_node") == Some("true")
        && states[0].attr("in_ccm") == Some("0")
}

/// Restarts the test cluster (`scripts/test-cluster.sh stop`, then `start`) for a caller that holds
/// [`CLUSTER_LOCK`] (a [`Cluster`]); panics if either fails.
pub fn restart_test_cluster() {
    run_test_cluster_script(&["stop", "start"], "");
}

/// Starts the 3.x test cluster's pacemakerd with `settings` ("PCMK_a=x PCMK_b=y", what
/// /etc/default/pacemaker holds on a real node; empty for none), restarting it when it runs with
/// others, then waits for a DC. For a caller that holds [`CLUSTER_LOCK`]; panics on failure.
pub fn start_test_cluster_with(settings: &str) {
    run_test_cluster_script(&["start"], settings);
}

fn run_test_cluster_script(actions: &[&str], settings: &str) {
    let script = repo_root().join("scripts/test-cluster.sh");
    for action in actions {
        let out = run_with_timeout(
            Command::new("bash")
                .arg(&script)
                .arg(action)
                .env("KUBEMAKER_PACEMAKER", Generation::current().version())
                .env("KUBEMAKER_CLUSTER_ENV", settings)
                .env("KUBEMAKER_CLUSTER_LOCKED", "1"),
            Duration::from_secs(300),
        );
        assert!(
            out.status.success(),
            "test-cluster.sh {action} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn mentions_remote_connection(xml: &str) -> bool {
    (xml.contains("provider=\"pacemaker\"") && xml.contains("type=\"remote\""))
        || xml.contains("remote-node")
}

/// What [`Cluster::reset`] has to clean, read from `cibadmin -Q`.
#[derive(Debug, Default)]
struct CibLeftovers {
    has_resources: bool,
    has_constraints: bool,
    had_remote_connection: bool,
    stop_all_resources_set: bool,
    /// A fencing test's settings (`stonith-enabled=true`, `stonith-action`) left by a crashed run.
    fencing_left_on: bool,
    /// Remote (and guest) node names from `<nodes>` and `<status>`.
    remote_nodes: Vec<String>,
    /// Names of permanent node attributes anywhere in `<nodes>`.
    node_attrs: Vec<String>,
}

impl CibLeftovers {
    fn scan(cib: &str) -> CibLeftovers {
        let root =
            Element::parse(cib).unwrap_or_else(|e| panic!("cannot parse cibadmin -Q output: {e}"));
        let mut found = CibLeftovers::default();
        let config = root.child("configuration");
        let section = |name: &str| config.and_then(|c| c.child(name));
        found.has_resources = section("resources").is_some_and(|r| !r.children.is_empty());
        found.has_constraints = section("constraints").is_some_and(|c| !c.children.is_empty());
        for node in section("nodes")
            .map(|n| n.children.as_slice())
            .unwrap_or_default()
        {
            if node.name == "node" && node.attr("type") == Some("remote") {
                push_unique(
                    &mut found.remote_nodes,
                    node.attr("uname").or(node.attr("id")),
                );
            }
            walk(node, &mut |e| {
                if e.name == "nvpair" {
                    push_unique(&mut found.node_attrs, e.attr("name"));
                }
            });
        }
        for state in root
            .child("status")
            .map(|s| s.children.as_slice())
            .unwrap_or_default()
        {
            if state.name == "node_state" && state.attr("remote_node") == Some("true") {
                push_unique(
                    &mut found.remote_nodes,
                    state.attr("id").or(state.attr("uname")),
                );
            }
        }
        walk(&root, &mut |e| match e.name.as_str() {
            "primitive"
                if e.attr("type") == Some("remote") && e.attr("provider") == Some("pacemaker") =>
            {
                found.had_remote_connection = true;
            }
            "nvpair" if e.attr("name") == Some("remote-node") => found.had_remote_connection = true,
            "nvpair" if e.attr("name") == Some("stop-all-resources") => {
                found.stop_all_resources_set = true
            }
            "nvpair"
                if (e.attr("name") == Some("stonith-enabled")
                    && e.attr("value") == Some("true"))
                    || e.attr("name") == Some("stonith-action") =>
            {
                found.fencing_left_on = true
            }
            _ => {}
        });
        if !found.remote_nodes.is_empty() {
            found.had_remote_connection = true;
        }
        found
    }
}

fn push_unique(list: &mut Vec<String>, item: Option<&str>) {
    if let Some(item) = item
        && !list.iter().any(|x| x == item)
    {
        list.push(item.to_string());
    }
}

/// Creates `ocf:pacemaker:Dummy` resources `<prefix><i>` for `i` in `range`, each allowed (and
/// probed) only on `node`, with a recurring monitor every `monitor`. Their state files live in
/// `/run/resource-agents/km-<id>.state`: test hosts share the cluster node's file system, so a
/// probe on another node would find them too (hence `resource-discovery="exclusive"`).
/// Two CIB writes in all, however many resources.
pub fn create_pinned_dummies(
    cluster: &Cluster,
    prefix: &str,
    range: std::ops::Range<usize>,
    node: &str,
    monitor: &str,
) -> Vec<String> {
    let ids: Vec<String> = range.map(|i| format!("{prefix}{i}")).collect();
    let placed: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), node)).collect();
    create_dummies_on(cluster, &placed, monitor);
    ids
}

/// Like [`create_pinned_dummies`], each `(id, node)` of `placed` a Dummy pinned to its own node.
pub fn create_dummies_on(cluster: &Cluster, placed: &[(&str, &str)], monitor: &str) {
    // One argument holds at most 128 KiB (MAX_ARG_STRLEN): 150 resources stay well below.
    for chunk in placed.chunks(150) {
        create_dummies_chunk(cluster, chunk, monitor);
    }
}

fn create_dummies_chunk(cluster: &Cluster, placed: &[(&str, &str)], monitor: &str) {
    let mut rsc = String::from("<resources>");
    let mut cons = String::from("<constraints>");
    for (id, node) in placed {
        rsc.push_str(&format!(
            r#"<primitive class="ocf" id="{id}" provider="pacemaker" type="Dummy"><instance_attributes id="{id}-instance_attributes"><nvpair id="{id}-instance_attributes-state" name="state" value="{}"/></instance_attributes><operations><op id="{id}-monitor-interval-{monitor}" interval="{monitor}" name="monitor" timeout="20s"/></operations></primitive>"#,
            dummy_state_file(id)
        ));
        cons.push_str(&format!(
            r#"<rsc_location id="{id}-on-{node}" rsc="{id}" node="{node}" score="INFINITY" resource-discovery="exclusive"/>"#
        ));
    }
    rsc.push_str("</resources>");
    cons.push_str("</constraints>");
    for (section, xml) in [("resources", &rsc), ("constraints", &cons)] {
        let out = cluster.cibadmin(&["--create", "-o", section, "--xml-text", xml]);
        assert!(
            out.status.success(),
            "cibadmin --create -o {section}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Where [`create_pinned_dummies`] resources keep their state file.
pub fn dummy_state_file(id: &str) -> String {
    format!("/run/resource-agents/km-{id}.state")
}

/// Whether every resource in `ids` is Started on `node`.
pub fn all_started_on(v: &MonView, ids: &[String], node: &str) -> bool {
    // A resource whose monitor just failed still shows role Started (flagged failed) until the
    // cluster has recovered it.
    ids.iter().all(|id| {
        v.resource(id)
            .is_some_and(|r| r.role == "Started" && !r.failed && r.nodes.iter().any(|n| n == node))
    })
}
