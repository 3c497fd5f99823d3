//! The two-node test cluster of `KUBEMAKER_CLUSTER_NODES=2 scripts/test-cluster.sh` (Pacemaker 3.x
//! only): `node1` and `node2`, each in namespaces of its own (`scripts/lib/pcmk-node.sh`), corosync
//! with both members (`two_node: 1`), stonith disabled, both exposing the remote CIB port. A node
//! can be lost like a power cut ([`TwoNodeCluster::lose`]) and brought back
//! ([`TwoNodeCluster::restore`]).
//!
//! [`TwoNodeCluster::acquire`] takes the same flock as [`super::Cluster`] (one real cluster test at
//! a time), starts the cluster (or reuses it), opens the remote CIB port on both nodes and empties
//! the configuration a crashed run may have left. Unlike the one-node cluster, it is stopped when
//! dropped: only the node-loss test uses it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kubemaker::wire::Element;

use super::cluster::CLUSTER_LOCK;
use super::env::{TEST_STATE_DIR, lock_file, repo_root};
use super::generation::Generation;
use super::keys::{hex, random_bytes};
use super::mon::MonView;
use super::process::{run_with_input, run_with_timeout, text};

/// The remote CIB port (TLS) both nodes listen on.
pub const TLS_PORT: u16 = 5989;
const CIB_FILE: &str = "/var/lib/pacemaker/cib/cib.xml";

/// The two nodes, by number.
pub const NODES: [usize; 2] = [1, 2];

/// Exclusive use of the two-node test cluster; holds [`CLUSTER_LOCK`] until dropped, and stops the
/// cluster on drop.
pub struct TwoNodeCluster {
    generation: &'static Generation,
    password: String,
    _lock: File,
}

impl Drop for TwoNodeCluster {
    fn drop(&mut self) {
        let out = self.script(&["stop"]);
        if !out.status.success() {
            eprintln!("[two-node] test-cluster.sh stop failed: {}", text(&out));
        }
    }
}

impl TwoNodeCluster {
    /// Locks the cluster (waiting at most 30 min for other tests), starts the two-node cluster of
    /// [`Generation::current`] (a 3.x one) or reuses it, gives `hacluster` a fresh password on both
    /// nodes, opens the remote CIB port (restarting the cluster the first time on a machine: it is
    /// read only at start-up) and removes any resource a crashed run left.
    pub fn acquire() -> TwoNodeCluster {
        let generation = Generation::current();
        assert!(
            !generation.is_host(),
            "the two-node test cluster is for the 3.x generations"
        );
        let lock = lock_file(Path::new(CLUSTER_LOCK), Duration::from_secs(30 * 60));
        let cluster = TwoNodeCluster {
            generation,
            password: format!("km-{}", hex(&random_bytes(12))),
            _lock: lock,
        };
        let t0 = Instant::now();
        cluster.script_ok(&["start"]);
        eprintln!(
            "[two-node] Pacemaker {} two-node cluster up after {:.1} s",
            generation.version(),
            t0.elapsed().as_secs_f64()
        );
        cluster.enable_remote_cib();
        cluster.reset();
        cluster
    }

    /// `scripts/test-cluster.sh ARGS` for this cluster (we hold the lock), 300 s at most.
    fn script(&self, args: &[&str]) -> Output {
        run_with_timeout(
            Command::new("bash")
                .arg(repo_root().join("scripts/test-cluster.sh"))
                .args(args)
                .env("KUBEMAKER_PACEMAKER", self.generation.version())
                .env("KUBEMAKER_CLUSTER_NODES", "2")
                .env("KUBEMAKER_CLUSTER_ENV", "")
                .env("KUBEMAKER_CLUSTER_LOCKED", "1"),
            Duration::from_secs(300),
        )
    }

    fn script_ok(&self, args: &[&str]) -> Output {
        let out = self.script(args);
        assert!(
            out.status.success(),
            "test-cluster.sh {args:?} (two nodes) failed: {}",
            text(&out)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        out
    }

    /// Where the script keeps the cluster's state.
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(format!(
            "{TEST_STATE_DIR}/cluster-{}-2nodes",
            self.generation.version()
        ))
    }

    /// Node `n`'s subnet number: 10.249.<subnet>.0/24 (`select_node` in lib/pcmk-node.sh).
    fn subnet(&self, n: usize) -> usize {
        let one_node: usize = self
            .generation
            .node_addr()
            .split('.')
            .nth(2)
            .and_then(|s| s.parse().ok())
            .expect("a 3.x node address 10.249.<n>.2");
        one_node + 9 + n
    }

    /// `node1` or `node2`.
    pub fn name(&self, n: usize) -> String {
        format!("node{n}")
    }

    /// Node `n`'s address, where its remote CIB port listens.
    pub fn addr(&self, n: usize) -> String {
        format!("10.249.{}.2", self.subnet(n))
    }

    /// Node `n`'s network namespace.
    pub fn netns(&self, n: usize) -> String {
        format!("km-pc{}", self.subnet(n))
    }

    /// The `hacluster` password of this run (never print it).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// PID 1 of node `n` (checked against its recorded start time), None when it does not run.
    fn init_pid(&self, n: usize) -> Option<u32> {
        super::process::recorded_pid(&self.state_dir().join(format!("node{n}/init.pid")))
    }

    /// The generation's `program` inside node `n` (all its namespaces, its root, a clean
    /// environment), killed there after 300 s. Panics if the node does not run.
    pub fn command(&self, n: usize, program: &str) -> Command {
        let pid = self
            .init_pid(n)
            .unwrap_or_else(|| panic!("two-node cluster: node{n} is not running"));
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(pid.to_string())
            .args(["-m", "-u", "-n", "-p", "-r", "-w", "env", "-i"])
            .args([
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
            ])
            .args(["timeout", "300", program]);
        cmd
    }

    /// Runs `program args` in node `n` (30 s limit); its output whatever the exit status.
    pub fn run(&self, n: usize, program: &str, args: &[&str]) -> Output {
        run_with_timeout(self.command(n, program).args(args), Duration::from_secs(30))
    }

    /// Like [`TwoNodeCluster::run`], panicking unless it succeeds.
    pub fn run_ok(&self, n: usize, program: &str, args: &[&str]) -> Output {
        let out = self.run(n, program, args);
        assert!(
            out.status.success(),
            "node{n}: `{program} {}` failed: {}",
            args.join(" "),
            text(&out)
        );
        out
    }

    /// Node `n`'s CIB (`cibadmin -Q`, its local copy), parsed.
    pub fn cib(&self, n: usize) -> Element {
        let out = self.run_ok(n, "cibadmin", &["-Q", "--local"]);
        Element::parse(&String::from_utf8_lossy(&out.stdout)).expect("cibadmin -Q prints XML")
    }

    /// `crm_mon -1 --output-as=xml` on node `n`, parsed; None if crm_mon printed no result.
    pub fn mon(&self, n: usize) -> Option<MonView> {
        let out = self.run(n, "crm_mon", &["-1", "--output-as=xml"]);
        let xml = String::from_utf8_lossy(&out.stdout);
        xml.contains("<pacemaker-result")
            .then(|| MonView::parse(&xml))
    }

    /// Whether node `n` sees a DC and the nodes `online` online (and the others not).
    pub fn sees(&self, n: usize, online: &[usize]) -> bool {
        self.mon(n).is_some_and(|v| {
            v.dc_present()
                && NODES.iter().all(|m| {
                    v.node(&self.name(*m)).is_some_and(|node| node.online) == online.contains(m)
                })
        })
    }

    /// The established TCP connections to node `n`'s remote CIB port (from `ss` in its network
    /// namespace): the controller's command and notification connections.
    pub fn cib_connections(&self, n: usize) -> usize {
        let out = run_with_timeout(
            Command::new("ip")
                .args(["netns", "exec", &self.netns(n), "ss", "-Htn", "state"])
                .args(["established", &format!("( sport = :{TLS_PORT} )")]),
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    }

    /// Node `n` fails like a power cut (`test-cluster.sh lose n`): its link goes down, then every
    /// process of it is killed.
    pub fn lose(&self, n: usize) {
        self.script_ok(&["lose", &n.to_string()]);
    }

    /// Starts node `n` again and returns once it has rejoined (`test-cluster.sh restore n`).
    pub fn restore(&self, n: usize) {
        self.script_ok(&["restore", &n.to_string()]);
    }

    /// Gives `hacluster` this run's password on both nodes (and what PAM needs to accept it), and
    /// makes pacemaker-based listen on [`TLS_PORT`] on both, restarting the cluster when the port is
    /// not configured yet.
    fn enable_remote_cib(&self) {
        for n in NODES {
            let groups =
                String::from_utf8_lossy(&self.run_ok(n, "id", &["-nG", "hacluster"]).stdout)
                    .into_owned();
            if !groups.split_whitespace().any(|g| g == "haclient") {
                self.run_ok(n, "usermod", &["-a", "-G", "haclient", "hacluster"]);
            }
            let out = run_with_input(
                &mut self.command(n, "chpasswd"),
                Some(format!("hacluster:{}\n", self.password).as_bytes()),
                Duration::from_secs(30),
            );
            assert!(
                out.status.success(),
                "chpasswd for hacluster on node{n} failed"
            );
            // Debian sid's systemd-sysusers account expires on day 1 (see tests/support/cib_port.rs).
            self.run_ok(n, "chage", &["-E", "-1", "hacluster"]);
        }
        let on_disk = |n: usize| {
            let path = self
                .state_dir()
                .join(format!("node{n}/node/var-lib-pacemaker"))
                .join(CIB_FILE.trim_start_matches("/var/lib/pacemaker/"));
            let cib = fs::read_to_string(path).unwrap_or_default();
            cib.split('>')
                .next()
                .is_some_and(|root| root.contains(&format!("remote-tls-port=\"{TLS_PORT}\"")))
        };
        if NODES.iter().all(|n| on_disk(*n)) && NODES.iter().all(|n| self.listening(*n)) {
            return;
        }
        if !NODES.iter().all(|n| on_disk(*n)) {
            let xml = format!(r#"<cib remote-tls-port="{TLS_PORT}"/>"#);
            self.run_ok(1, "cibadmin", &["--modify", "--xml-text", &xml]);
            // A root attribute alone is not written to disk; a configuration change is.
            let prop = [
                "--type",
                "crm_config",
                "--name",
                "kubemaker-remote-cib-enabled",
            ];
            self.run_ok(
                1,
                "crm_attribute",
                &[&prop[..], &["--update", "true"]].concat(),
            );
            self.run_ok(1, "crm_attribute", &[&prop[..], &["--delete"]].concat());
            let deadline = Instant::now() + Duration::from_secs(30);
            while !NODES.iter().all(|n| on_disk(*n)) {
                assert!(
                    Instant::now() < deadline,
                    "the CIB with remote-tls-port was not written to disk on both nodes within 30 s"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        eprintln!("[two-node] restarting the cluster so pacemaker-based listens on {TLS_PORT}");
        self.script_ok(&["stop"]);
        self.script_ok(&["start"]);
        for n in NODES {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !self.listening(n) {
                assert!(
                    Instant::now() < deadline,
                    "node{n} does not listen on {TLS_PORT} 60 s after the restart"
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    /// Whether node `n`'s remote CIB port accepts connections.
    pub fn listening(&self, n: usize) -> bool {
        let addr = format!("{}:{TLS_PORT}", self.addr(n));
        std::net::TcpStream::connect_timeout(
            &addr.parse().expect("an IPv4 socket address"),
            Duration::from_secs(1),
        )
        .is_ok()
    }

    /// Empties what an earlier run left: resources, constraints, remote node entries and states,
    /// failure history; then waits (60 s) until both nodes see a clean cluster.
    pub fn reset(&self) {
        // The remote nodes a run left, to purge them the admin's way below.
        let mut remote: Vec<String> = Vec::new();
        let cib = self.cib(1);
        let entries = |section: &str, elem: &str| -> Vec<&Element> {
            let parent = if section == "status" {
                cib.child("status")
            } else {
                cib.child("configuration").and_then(|c| c.child(section))
            };
            parent
                .map(|p| p.children.iter().filter(|c| c.name == elem).collect())
                .unwrap_or_default()
        };
        for e in entries("nodes", "node") {
            if e.attr("type") == Some("remote")
                && let Some(id) = e.attr("uname").or(e.attr("id"))
            {
                remote.push(id.to_string());
            }
        }
        for e in entries("status", "node_state") {
            if e.attr("remote_node") == Some("true")
                && let Some(id) = e.attr("id").or(e.attr("uname"))
                && !remote.iter().any(|r| r == id)
            {
                remote.push(id.to_string());
            }
        }
        for section in ["constraints", "resources"] {
            let empty = format!("<{section}/>");
            self.run_ok(
                1,
                "cibadmin",
                &["--replace", "-o", section, "--xml-text", &empty],
            );
        }
        // A Pacemaker 3.0 DC keeps removed remote nodes in its peer cache and writes their
        // node_state back; only the controller's API drops them (see Cluster::reset).
        for name in &remote {
            let _ = self.run(1, "crm_node", &["--force", "--remove", name]);
        }
        for xpath in [
            "/cib/configuration/nodes/node[@type='remote']",
            "/cib/status/node_state[@remote_node='true']",
        ] {
            // No match is an error we do not mind.
            let _ = self.run(1, "cibadmin", &["--delete-all", "--xpath", xpath]);
        }
        let _ = self.run(1, "crm_resource", &["--cleanup"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let clean = |v: &MonView| {
                v.resources().is_empty() && v.nodes().iter().all(|n| n.node_type != "remote")
            };
            if NODES
                .iter()
                .all(|n| self.sees(*n, &NODES) && self.mon(*n).is_some_and(|v| clean(&v)))
            {
                return;
            }
            if Instant::now() >= deadline {
                let out = self.run(1, "crm_mon", &["-1", "--inactive"]);
                panic!(
                    "the two-node cluster is not clean 60 s after the reset (purged {} remote nodes):\n{}",
                    remote.len(),
                    text(&out)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
