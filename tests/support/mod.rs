//! Test harness for integration tests that run against a REAL Pacemaker cluster.
//!
//! Include it from an integration test with `mod support;`. What it offers:
//!
//! - [`require_tools`] / [`require_root`]: skip a test outside CI when the machine lacks something,
//!   fail it in CI (`CI=true`).
//! - [`Cluster`]: exclusive use of the one-node test cluster of `scripts/test-cluster.sh`, reset to an
//!   empty configuration, plus `crm_mon`/`cibadmin` helpers and bounded waits on a parsed [`MonView`].
//! - [`NetnsHost`]: a network namespace with a veth pair, i.e. a "remote host" with its own address.
//! - [`Daemon`]: a process started inside a [`NetnsHost`], with its log, signals and bounded waits.
//! - Pacemaker Remote keys: [`write_authkey`], [`write_key_file`], [`test_authkey`],
//!   [`install_cluster_authkey`]; and [`reference_remoted`], the real `pacemaker-remoted` 2.1.5.
//!
//! Everything here runs as root (network namespaces, the cluster), every wait is bounded in time, and
//! only processes this module (or the test) started are ever signalled, by pid.

// Each integration test binary compiles its own copy of this module and uses only part of it; without
// this, every helper one test does not call would be a dead-code warning (an error under clippy -D).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kubemaker::wire::Element;

/// Shared state of the test cluster and of the harness (pid files, logs, locks).
pub const TEST_STATE_DIR: &str = "/var/tmp/kubemaker-test";
/// Held (flock) by whoever uses the test cluster; `scripts/test-cluster.sh start|stop` takes it too.
pub const CLUSTER_LOCK: &str = "/var/tmp/kubemaker-test/cluster.lock";
/// The key file the cluster's controller reads to connect to remote nodes.
pub const CLUSTER_AUTHKEY: &str = "/etc/pacemaker/authkey";
/// Where `scripts/install-test-deps.sh` extracts the reference daemon.
pub const REFERENCE_REMOTED: &str = "/var/tmp/kubemaker-cache/reference/usr/sbin/pacemaker-remoted";

/// Marker for the controller's Pacemaker Remote key cache, see [`install_cluster_authkey`].
/// `scripts/test-cluster.sh` deletes it when it starts a fresh pacemakerd.
const KEY_READ_MARKER: &str = "/var/tmp/kubemaker-test/cluster/remote-key-read";

const CMD_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// Environment checks
// ---------------------------------------------------------------------------------------------

/// True when running in CI (`CI=true`), where missing prerequisites are failures, not skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn current_test_name() -> String {
    thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_string()
}

fn skip_or_panic(what: &str) -> bool {
    let test = current_test_name();
    if in_ci() {
        panic!(
            "{test} needs {what}, which is missing (CI=true: a missing prerequisite is a failure)"
        );
    }
    eprintln!("SKIP: {test} needs {what}");
    false
}

/// Whether `program` is an executable file: a path, or a name found in `PATH`.
pub fn have_tool(program: &str) -> bool {
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        return is_exec(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| is_exec(&dir.join(program)))
}

/// Checks that all `tools` exist (names in `PATH`, or paths). If one is missing: panics when
/// `CI=true`, otherwise prints `SKIP: <test> needs <tool>` to stderr and returns false, so a test
/// starts with `if !support::require_tools(&[...]) { return; }`.
pub fn require_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if missing.is_empty() {
        true
    } else {
        skip_or_panic(&missing.join(", "))
    }
}

/// Like [`require_tools`] for root privileges (network namespaces, the cluster, /etc/pacemaker).
pub fn require_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        true
    } else {
        skip_or_panic("root privileges")
    }
}

/// The repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Running commands with a time limit
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` to completion with captured stdout/stderr, killing it (our own child, by pid) if it
/// is still running after `timeout`; a note is then appended to stderr. Panics if it cannot start.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_input(cmd, None, timeout)
}

/// [`run_with_timeout`] with `input` on stdin (or /dev/null when `None`).
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let writer = input.map(|data| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let (status, timed_out) = wait_child(&mut child, timeout);
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let mut stderr = err_reader.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(
            format!("\n[harness] {shown} killed after {timeout:?}\n").as_bytes(),
        );
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Waits (bounded) for our child; kills it on timeout. Returns its status and whether it timed out.
pub fn wait_child(child: &mut Child, timeout: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let status = child.wait().expect("wait for killed child");
                return (status, true);
            }
        }
    }
}

/// Runs `program args` with [`run_with_timeout`] and the default 30 s limit.
pub fn run(program: &str, args: &[&str]) -> Output {
    run_with_timeout(Command::new(program).args(args), CMD_TIMEOUT)
}

/// Like [`run`], but panics with the command's output unless it exits with status 0.
pub fn run_ok(program: &str, args: &[&str]) -> Output {
    let out = run(program, args);
    if !out.status.success() {
        panic!(
            "`{program} {}` failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Takes an exclusive flock on `path` (created if needed), waiting at most `timeout`.
fn lock_file(path: &Path, timeout: Duration) -> File {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let start = Instant::now();
    let mut noted = false;
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < timeout => {
                if !noted {
                    eprintln!(
                        "[harness] waiting for {} (held by another test)",
                        path.display()
                    );
                    noted = true;
                }
                thread::sleep(Duration::from_millis(200));
            }
            Err(fs::TryLockError::WouldBlock) => {
                panic!("{} still locked after {timeout:?}", path.display())
            }
            Err(fs::TryLockError::Error(e)) => panic!("cannot lock {}: {e}", path.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test cluster
// ---------------------------------------------------------------------------------------------

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
        let mut child = Command::new("bash")
            .arg(&script)
            .arg("start")
            .env("KUBEMAKER_CLUSTER_LOCKED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let (status, timed_out) = wait_child(&mut child, Duration::from_secs(300));
        if timed_out || !status.success() {
            panic!(
                "`{} start` failed ({status}{}); logs in {TEST_STATE_DIR}/cluster/",
                script.display(),
                if timed_out {
                    ", killed after 300 s"
                } else {
                    ""
                }
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

    /// `crm_mon -1 --output-as=xml` (panics if crm_mon fails).
    pub fn crm_mon_xml(&self) -> String {
        let out = run_ok("crm_mon", &["-1", "--output-as=xml"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `crm_mon -1 --inactive --failcounts` as text, for humans (never panics).
    pub fn crm_mon_text(&self) -> String {
        let out = run("crm_mon", &["-1", "--inactive", "--failcounts"]);
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
        run("cibadmin", args)
    }

    /// `cibadmin -Q`: the whole CIB as XML.
    pub fn cib_xml(&self) -> String {
        String::from_utf8_lossy(&run_ok("cibadmin", &["-Q"]).stdout).into_owned()
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
    fn poll_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&MonView) -> bool,
    ) -> Result<MonView, String> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::new();
        loop {
            let out = run_with_timeout(
                Command::new("crm_mon").args(["-1", "--output-as=xml"]),
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
    /// its `<node>`/`<node_state>` should they remain; `crm_resource --cleanup` (forgets the failures
    /// and history of the now-orphaned resources); unset `stop-all-resources`; wait (60 s) until
    /// crm_mon shows no resource, no remote node and no failure.
    pub fn reset(&self) {
        let cib = self.cib_xml();
        let state = CibLeftovers::scan(&cib);
        if state.had_remote_connection {
            mark_remote_key_in_use();
        }

        if state.has_resources {
            run_ok(
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
                let out = run(
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
            let out = run("crm_node", &["--force", "--remove", name]);
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
                let _ = run("cibadmin", &["--delete", "--xpath", &xpath]);
            }
        }
        for attr in ["standby", "maintenance"] {
            if state.node_attrs.iter().any(|a| a == attr) {
                let _ = run(
                    "crm_attribute",
                    &["--node", &self.node1, "--name", attr, "--delete"],
                );
            }
        }
        let view = self.mon();
        if !view.failures().is_empty() || state.has_resources {
            run_ok("crm_resource", &["--cleanup"]);
        }
        if state.stop_all_resources_set || state.has_resources {
            let _ = run(
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
            _ => {}
        });
        if !found.remote_nodes.is_empty() {
            found.had_remote_connection = true;
        }
        found
    }
}

/// Calls `f` on `el` and every element below it, in document order.
fn walk<'a>(el: &'a Element, f: &mut impl FnMut(&'a Element)) {
    f(el);
    for c in &el.children {
        walk(c, f);
    }
}

fn push_unique(list: &mut Vec<String>, item: Option<&str>) {
    if let Some(item) = item
        && !list.iter().any(|x| x == item)
    {
        list.push(item.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// crm_mon --output-as=xml
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Network namespaces as test hosts
// ---------------------------------------------------------------------------------------------

/// A "host" for a remote node: network namespace `km-<tag>` joined to the root namespace by a veth
/// pair. Host side: link `km-<tag>` with `10.250.<n>.1/24`; inside: `eth0` with `10.250.<n>.2/24`,
/// and `lo` up.
///
/// `n` (1..=250) is the lowest index whose lock file `/var/tmp/kubemaker-test/netns/<n>.lock` this
/// process can flock; the lock is held for the host's lifetime, so hosts in several threads and test
/// binaries get distinct subnets. A leftover `km-*` link with an address in `10.250.<n>.0/24` (a
/// crashed run) is deleted when `n` is taken; a subnet used by any other link is skipped.
///
/// Tags must be unique among concurrently running tests (a per-tag lock makes a second user wait);
/// they are 1 to 12 characters of `[a-z0-9-]` (Linux link names have at most 15).
///
/// Drop deletes the namespace and the veth pair. It does not kill processes: the caller owns those
/// ([`Daemon`] kills its child on drop). A namespace that still has processes lives on until they
/// exit, but without its veth.
pub struct NetnsHost {
    name: String,
    index: u32,
    _index_lock: File,
    _tag_lock: File,
}

impl NetnsHost {
    /// Creates namespace `km-<tag>`; first deletes a leftover namespace or link of that name.
    pub fn create(tag: &str) -> NetnsHost {
        assert!(
            !tag.is_empty()
                && tag.len() <= 12
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "NetnsHost tag {tag:?}: use 1 to 12 characters of [a-z0-9-]"
        );
        let name = format!("km-{tag}");
        let lock_dir = Path::new(TEST_STATE_DIR).join("netns");
        let tag_lock_path = lock_dir.join(format!("tag-{tag}.lock"));
        let tag_lock = lock_file(&tag_lock_path, Duration::from_secs(120));
        let (index, index_lock) = allocate_index(&lock_dir);

        // Leftovers of a crashed run with the same name.
        let _ = run("ip", &["netns", "delete", &name]);
        let _ = run("ip", &["link", "delete", &name]);

        let host_addr = format!("10.250.{index}.1/24");
        let ns_addr = format!("10.250.{index}.2/24");
        run_ok("ip", &["netns", "add", &name]);
        let host = NetnsHost {
            name: name.clone(),
            index,
            _index_lock: index_lock,
            _tag_lock: tag_lock,
        };
        // From here on, Drop cleans up if a step panics.
        run_ok(
            "ip",
            &[
                "link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ],
        );
        run_ok("ip", &["addr", "add", &host_addr, "dev", &name]);
        run_ok("ip", &["link", "set", &name, "up"]);
        run_ok("ip", &["-n", &name, "addr", "add", &ns_addr, "dev", "eth0"]);
        run_ok("ip", &["-n", &name, "link", "set", "eth0", "up"]);
        run_ok("ip", &["-n", &name, "link", "set", "lo", "up"]);
        host
    }

    /// The namespace's address (`10.250.<n>.2`): where a daemon inside listens.
    pub fn addr(&self) -> String {
        format!("10.250.{}.2", self.index)
    }

    /// The root namespace's end of the veth (`10.250.<n>.1`): where the cluster's traffic comes from.
    pub fn host_addr(&self) -> String {
        format!("10.250.{}.1", self.index)
    }

    /// The namespace name, `km-<tag>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <ns> <program>`: add arguments, environment, stdio, then spawn. `ip netns exec`
    /// joins the namespace and then execs `program` in the same process (no fork), so the child's
    /// pid is the program's pid.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "delete", &self.name]);
        let _ = run("ip", &["link", "delete", &self.name]);
    }
}

fn allocate_index(lock_dir: &Path) -> (u32, File) {
    fs::create_dir_all(lock_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_dir.display()));
    for index in 1..=250u32 {
        let path = lock_dir.join(format!("{index}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        if file.try_lock().is_err() {
            continue;
        }
        // Nobody alive owns this index. A km-* link with an address in the subnet is a leftover of
        // a crashed run; any other link with one belongs to someone else: skip the subnet.
        let subnet = format!("10.250.{index}.");
        let out = run("ip", &["-o", "-4", "addr", "show"]);
        let mut usable = true;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut fields = line.split_whitespace();
            let (_, dev, _, cidr) = (fields.next(), fields.next(), fields.next(), fields.next());
            let (Some(dev), Some(cidr)) = (dev, cidr) else {
                continue;
            };
            if !cidr.starts_with(&subnet) {
                continue;
            }
            let dev = dev.split('@').next().unwrap_or(dev);
            if dev.starts_with("km-") {
                eprintln!("[harness] deleting leftover link {dev} ({cidr})");
                let _ = run("ip", &["link", "delete", dev]);
            } else {
                usable = false; // not ours: leave it alone, use another subnet
            }
        }
        if usable {
            return (index, file);
        }
    }
    panic!("no free 10.250.<n>.0/24 test subnet (all 250 in use?)");
}

// ---------------------------------------------------------------------------------------------
// Daemons inside a test host
// ---------------------------------------------------------------------------------------------

/// A process started by the test inside a [`NetnsHost`]; stdout and stderr go to `log_path`.
/// Dropping it kills the process (SIGKILL, by pid; it is our own child, not yet reaped, so the pid
/// cannot have been reused) if it is still running.
pub struct Daemon {
    child: Child,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `program args` in `host` with extra environment `env`, output appended to `log`
    /// (created, with its parent directory, if needed).
    pub fn spawn_in(
        host: &NetnsHost,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Daemon {
        let mut cmd = host.command(program);
        cmd.args(args).envs(env.iter().copied());
        Daemon::spawn(cmd, log).unwrap_or_else(|e| {
            panic!("cannot start {} in {}: {e}", program.display(), host.name())
        })
    }

    /// Starts `cmd` with stdin from /dev/null and stdout and stderr appended to `log` (created,
    /// with its parent directory, if needed).
    pub fn spawn(mut cmd: Command, log: &Path) -> std::io::Result<Daemon> {
        if let Some(dir) = log.parent() {
            fs::create_dir_all(dir)?;
        }
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Daemon {
            child,
            log_path: log.to_path_buf(),
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Sends `sig` (by pid) unless the process has exited.
    pub fn signal(&mut self, sig: nix::sys::signal::Signal) {
        if self.try_exit().is_none() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }

    /// SIGKILL (a crash, as far as the peer can tell).
    pub fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    /// SIGTERM (a graceful stop request).
    pub fn terminate(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Whether the process has exited (a zombie not yet reaped counts), without needing `&mut`.
    pub fn has_exited(&self) -> bool {
        if self.exit.is_some() {
            return true;
        }
        match fs::read_to_string(format!("/proc/{}/stat", self.child.id())) {
            // The state follows the parenthesized command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_none_or(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits at most `timeout` for the process to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log so far (lossy UTF-8; empty if unreadable).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log().contains(needle)
    }

    /// Waits (polling every 100 ms, at most `timeout`) until the log contains `needle`; panics
    /// with the end of the log on timeout.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_contains(needle) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{:?} not in {} after {timeout:?}; last lines:\n{}",
                    needle,
                    self.log_path.display(),
                    tail(&self.log(), 40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The reference `pacemaker-remoted` 2.1.5 extracted by `scripts/install-test-deps.sh`.
pub fn reference_remoted() -> PathBuf {
    PathBuf::from(REFERENCE_REMOTED)
}

// ---------------------------------------------------------------------------------------------
// Pacemaker Remote keys
// ---------------------------------------------------------------------------------------------

/// Writes `len` random bytes (from /dev/urandom) to `path` with mode 0400 and returns them.
pub fn write_authkey(path: &Path, len: usize) -> Vec<u8> {
    let mut key = vec![0u8; len];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .expect("read /dev/urandom");
    write_key_file(path, &key);
    key
}

/// Writes `key` to `path` with mode 0400 (replacing the file atomically).
pub fn write_key_file(path: &Path, key: &[u8]) {
    write_file_atomically(path, key, 0o400);
}

fn write_file_atomically(path: &Path, data: &[u8], mode: u32) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).expect("chmod key file");
    fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("cannot rename {} to {}: {e}", tmp.display(), path.display()));
}

/// A stable 4096-byte test key (`/var/tmp/kubemaker-test/authkey`, created on first use). Using the
/// same key in every test keeps [`install_cluster_authkey`] a no-op after the first install.
pub fn test_authkey() -> Vec<u8> {
    let path = Path::new(TEST_STATE_DIR).join("authkey");
    let _guard = lock_file(
        &Path::new(TEST_STATE_DIR).join("authkey.lock"),
        Duration::from_secs(60),
    );
    match fs::read(&path) {
        Ok(key) if key.len() == 4096 => key,
        _ => write_authkey(&path, 4096),
    }
}

/// Installs `key` as the cluster's Pacemaker Remote key ([`CLUSTER_AUTHKEY`]), owner
/// `root:haclient`, mode 0640, like the pacemaker package and Pacemaker's documentation do: the
/// controller runs as `hacluster` (group `haclient`) and only needs to read it.
///
/// A no-op if the file already holds exactly `key`. Otherwise beware: the controller caches the key
/// it last read for 60 s (`lrmd_client.c`), so right after a remote connection it would still use
/// the old key. The harness records when a remote connection may last have read the key (creating
/// a remote resource; [`Cluster::reset`] removing one; a fresh cluster start clears it), and this
/// function sleeps until 61 s after that before returning.
pub fn install_cluster_authkey(key: &[u8]) {
    assert!(
        !key.is_empty(),
        "an empty key file means ENOKEY to Pacemaker"
    );
    if fs::read(CLUSTER_AUTHKEY).is_ok_and(|old| old == key) {
        return;
    }
    write_file_atomically(Path::new(CLUSTER_AUTHKEY), key, 0o640);
    let group = nix::unistd::Group::from_name("haclient")
        .ok()
        .flatten()
        .expect("group haclient (created by the pacemaker package)");
    nix::unistd::chown(
        CLUSTER_AUTHKEY,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(group.gid),
    )
    .expect("chown /etc/pacemaker/authkey");

    if let Some(last_read) = remote_key_last_read() {
        let ready = last_read + 61;
        let now = epoch_secs();
        if ready > now {
            eprintln!(
                "[harness] cluster authkey changed; waiting {} s for the controller's 60 s key cache to expire",
                ready - now
            );
            thread::sleep(Duration::from_secs(ready - now));
        }
    }
}

/// Records that a remote connection is (or may soon be) active: the key may be read any time.
/// [`Cluster::cibadmin`] calls it itself; a test whose remote connections something else creates
/// (the operator's controller) calls it before the first one.
pub fn mark_remote_key_in_use() {
    let _ = fs::create_dir_all(
        Path::new(KEY_READ_MARKER)
            .parent()
            .unwrap_or(Path::new("/")),
    );
    let _ = fs::write(KEY_READ_MARKER, "active\n");
}

/// Records that no remote connection is configured any more: the key was last read at most now.
/// Call it only once every remote connection resource is gone from the CIB.
pub fn mark_remote_key_idle() {
    let _ = fs::write(KEY_READ_MARKER, format!("{}\n", epoch_secs()));
}

/// When the controller may last have read the key (epoch seconds), if ever since it started.
fn remote_key_last_read() -> Option<u64> {
    let text = match fs::read_to_string(KEY_READ_MARKER) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(_) => return Some(epoch_secs()),
    };
    Some(text.trim().parse().unwrap_or_else(|_| epoch_secs()))
}

// ---------------------------------------------------------------------------------------------
// Resources pinned to one remote node
// ---------------------------------------------------------------------------------------------

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
    let mut rsc = String::from("<resources>");
    let mut cons = String::from("<constraints>");
    for id in &ids {
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
    ids
}

/// Where [`create_pinned_dummies`] resources keep their state file.
pub fn dummy_state_file(id: &str) -> String {
    format!("/run/resource-agents/km-{id}.state")
}

/// Whether every resource in `ids` is Started on `node`.
pub fn all_started_on(v: &MonView, ids: &[String], node: &str) -> bool {
    ids.iter().all(|id| {
        v.resource(id)
            .is_some_and(|r| r.role == "Started" && r.nodes.iter().any(|n| n == node))
    })
}
