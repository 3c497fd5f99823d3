//! The Pacemaker generation the real-cluster tests run against, chosen by `KUBEMAKER_PACEMAKER`
//! (the one place that reads it): unset or `2.1.5` is Debian 12's Pacemaker installed on this
//! machine; `3.0.0` (Debian trixie) and `3.0.3` (Debian sid) run from a cached root file system
//! (`scripts/pacemaker-root.sh`), the cluster node in namespaces of its own
//! (`scripts/lib/pcmk-node.sh`). [`Generation`] says where that cluster's files, address and
//! tools are, and how to run the generation's own tools and reference daemon on a test host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::env::{TEST_STATE_DIR, repo_root};
use super::netns::NetnsHost;
use super::process::run_with_timeout;

/// Where `scripts/install-test-deps.sh` extracts the host's (2.1.5) reference daemon.
pub const HOST_REFERENCE_REMOTED: &str =
    "/var/tmp/kubemaker-cache/reference/usr/sbin/pacemaker-remoted";
/// Where `scripts/pacemaker-root.sh` unpacks a root's reference daemon (inside the root).
const ROOT_REFERENCE_REMOTED: &str = "/opt/pacemaker-remote/usr/sbin/pacemaker-remoted";
/// Inside a 3.x node, a tool that outlives every harness limit is killed there (the harness
/// itself can only kill the `nsenter` in front of it).
const IN_NODE_LIMIT_SECS: &str = "300";

/// One Pacemaker generation under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    version: &'static str,
    /// Debian suite of the root; None for the packages installed on this machine.
    suite: Option<&'static str>,
    /// The node's subnet 10.249.<subnet>.0/24 (3.x only).
    subnet: u8,
}

const GENERATIONS: [Generation; 3] = [
    Generation {
        version: "2.1.5",
        suite: None,
        subnet: 0,
    },
    Generation {
        version: "3.0.0",
        suite: Some("trixie"),
        subnet: 30,
    },
    Generation {
        version: "3.0.3",
        suite: Some("sid"),
        subnet: 33,
    },
];

impl Generation {
    /// The generation of this test run (`KUBEMAKER_PACEMAKER`); panics on an unknown value.
    pub fn current() -> &'static Generation {
        static CURRENT: OnceLock<Generation> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let wanted = std::env::var("KUBEMAKER_PACEMAKER").unwrap_or_default();
            let wanted = if wanted.is_empty() { "2.1.5" } else { &wanted };
            GENERATIONS
                .iter()
                .find(|g| g.version == wanted)
                .cloned()
                .unwrap_or_else(|| {
                    panic!("KUBEMAKER_PACEMAKER={wanted}: not one of 2.1.5, 3.0.0, 3.0.3")
                })
        })
    }

    /// Every generation the tests know, oldest first.
    pub fn all() -> &'static [Generation] {
        &GENERATIONS
    }

    /// `2.1.5`, `3.0.0` or `3.0.3`.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Whether this is the Pacemaker installed on this machine (2.1.5).
    pub fn is_host(&self) -> bool {
        self.suite.is_none()
    }

    /// Whether this generation is `version` or newer (dotted numbers).
    pub fn at_least(&self, version: &str) -> bool {
        let parse =
            |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
        parse(self.version) >= parse(version)
    }

    /// Where `scripts/test-cluster.sh` keeps this generation's pid files and logs.
    pub fn state_dir(&self) -> PathBuf {
        let dir = if self.is_host() {
            "cluster".to_string()
        } else {
            format!("cluster-{}", self.version)
        };
        Path::new(TEST_STATE_DIR).join(dir)
    }

    /// The cluster node's address: 127.0.0.1 on this machine, 10.249.<n>.2 for a 3.x node.
    pub fn node_addr(&self) -> String {
        if self.is_host() {
            "127.0.0.1".to_string()
        } else {
            format!("10.249.{}.2", self.subnet)
        }
    }

    /// The generation's root file system (`scripts/pacemaker-root.sh path`); None for 2.1.5.
    /// Panics if it was not built.
    pub fn root(&self) -> Option<PathBuf> {
        self.built_root().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Generation::root`], or why there is none yet (`scripts/pacemaker-root.sh build` not run).
    pub fn built_root(&self) -> Result<Option<PathBuf>, String> {
        let Some(suite) = self.suite else {
            return Ok(None);
        };
        let script = repo_root().join("scripts/pacemaker-root.sh");
        let out = run_with_timeout(
            Command::new("bash").arg(&script).args(["path", suite]),
            std::time::Duration::from_secs(30),
        );
        if !out.status.success() {
            return Err(format!(
                "no {suite} root for Pacemaker {} (bash scripts/pacemaker-root.sh build {suite}): {}",
                self.version,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Some(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim(),
        )))
    }

    /// PID 1 of the running 3.x node (checked against its recorded start time); panics when the
    /// node is not running.
    fn node_init_pid(&self) -> u32 {
        let file = self.state_dir().join("init.pid");
        super::process::recorded_pid(&file).unwrap_or_else(|| {
            panic!(
                "the Pacemaker {} cluster node is not running (no live pid in {})",
                self.version,
                file.display()
            )
        })
    }

    /// A Pacemaker tool (`crm_mon`, `cibadmin`, `chpasswd`, ...) against this generation's cluster:
    /// the host's own for 2.1.5, else the root's, run inside the node's mount, UTS, network and
    /// PID namespaces with a clean environment. Add arguments and spawn.
    pub fn cluster_command(&self, program: &str) -> Command {
        if self.is_host() {
            return Command::new(program);
        }
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.node_init_pid().to_string())
            .args(["-m", "-u", "-n", "-p", "-r", "-w", "env", "-i"])
            .args([
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
            ])
            .args(["timeout", IN_NODE_LIMIT_SECS, program]);
        cmd
    }

    /// Where the cluster node's file `path` is seen from here: `path` itself for 2.1.5; for a 3.x
    /// node its persistent directories in the state directory, anything else through the root of
    /// its PID 1 (`/proc/<pid>/root`, so the node must be running).
    pub fn cluster_path(&self, path: &str) -> PathBuf {
        if self.is_host() {
            return PathBuf::from(path);
        }
        for dir in [
            "/etc/pacemaker",
            "/var/lib/pacemaker",
            "/var/log/pacemaker",
            "/etc/corosync",
        ] {
            if let Some(rest) = path.strip_prefix(dir)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                let host_dir = self
                    .state_dir()
                    .join("node")
                    .join(dir.trim_start_matches('/').replace('/', "-"));
                return PathBuf::from(format!("{}{rest}", host_dir.display()));
            }
        }
        PathBuf::from(format!("/proc/{}/root{path}", self.node_init_pid()))
    }

    /// The generation's reference `pacemaker-remoted`, as seen from here.
    pub fn reference_remoted(&self) -> PathBuf {
        match self.root() {
            None => PathBuf::from(HOST_REFERENCE_REMOTED),
            Some(root) => root.join(ROOT_REFERENCE_REMOTED.trim_start_matches('/')),
        }
    }

    /// `program` of this generation on test host `host`: in its network namespace; for 3.x the
    /// root's program (`crm_mon`, `attrd_updater`, the reference daemon
    /// [`ROOT_REFERENCE_REMOTED`], ...), chrooted in a private mount namespace with the host's
    /// /dev (so its /dev/shm), /proc, /sys and /run, and each of `binds` (directories under
    /// /var/tmp or /tmp: key files, logs) at the same path (`scripts/lib/pcmk-root-exec.sh`).
    /// The spawned child's pid is the program's own.
    pub fn host_command(&self, host: &NetnsHost, program: &str, binds: &[&Path]) -> Command {
        let Some(root) = self.root() else {
            return host.command(program);
        };
        let mut cmd = host.command("bash");
        cmd.arg(repo_root().join("scripts/lib/pcmk-root-exec.sh"))
            .arg(&root)
            .args(binds)
            .arg("--")
            .arg(program);
        cmd
    }

    /// [`Generation::host_command`] for the generation's reference `pacemaker-remoted`.
    pub fn reference_remoted_command(&self, host: &NetnsHost, binds: &[&Path]) -> Command {
        if self.is_host() {
            return host.command(HOST_REFERENCE_REMOTED);
        }
        self.host_command(host, ROOT_REFERENCE_REMOTED, binds)
    }
}
