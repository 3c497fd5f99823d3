//! Running resource agents: one child process per action, in its own process group, with
//! Pacemaker's result mapping. Classes: `ocf`, `lsb`, `systemd`, and `service` (lsb if an init
//! script exists, else systemd).

mod lsb;
mod ocf;
mod process;
mod systemd;

use std::path::PathBuf;
use std::time::Duration;

pub use process::{AgentOutcome, OUTPUT_LIMIT, kill_group, spawn as process_spawn};

/// `enum ocf_exitcode`.
pub mod ocf_rc {
    pub const OK: i32 = 0;
    pub const UNKNOWN_ERROR: i32 = 1;
    pub const INSUFFICIENT_PRIV: i32 = 4;
    pub const NOT_INSTALLED: i32 = 5;
    pub const NOT_RUNNING: i32 = 7;
}

/// `enum pcmk_exec_status`.
pub mod exec_status {
    pub const DONE: i32 = 0;
    pub const CANCELLED: i32 = 1;
    pub const TIMEOUT: i32 = 2;
    pub const NOT_SUPPORTED: i32 = 3;
    pub const ERROR: i32 = 4;
    pub const NOT_INSTALLED: i32 = 7;
}

/// Where agents live; the defaults are Debian's.
#[derive(Debug, Clone)]
pub struct AgentPaths {
    /// `OCF_RA_PATH`: provider directories are looked up in each, in order.
    pub ocf_ra_path: Vec<PathBuf>,
    pub ocf_root: PathBuf,
    pub lsb_dir: PathBuf,
    pub systemctl: PathBuf,
    /// Extra environment every agent gets (`HA_LOGFILE` and friends).
    pub extra_env: Vec<(String, String)>,
}

impl Default for AgentPaths {
    fn default() -> Self {
        let ocf_ra_path = std::env::var("OCF_RA_PATH")
            .ok()
            .filter(|p| !p.is_empty())
            .map(|p| p.split(':').map(PathBuf::from).collect())
            .unwrap_or_else(|| vec![PathBuf::from("/usr/lib/ocf/resource.d")]);
        AgentPaths {
            ocf_ra_path,
            ocf_root: PathBuf::from("/usr/lib/ocf"),
            lsb_dir: PathBuf::from("/etc/init.d"),
            systemctl: PathBuf::from("systemctl"),
            extra_env: Vec::new(),
        }
    }
}

/// A resource agent as registered by the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    pub class: String,
    pub provider: Option<String>,
    pub agent_type: String,
}

/// One action to run.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    pub rsc_id: String,
    pub action: String,
    /// Instance and meta parameters (`CRM_meta_*`), in the order the cluster sent them.
    pub params: Vec<(String, String)>,
    pub timeout: Duration,
}

/// Result after Pacemaker's mapping (`services_result2ocf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    pub rc: i32,
    pub status: i32,
    pub exit_reason: Option<String>,
    /// stderr when non-empty, otherwise stdout.
    pub output: Option<String>,
}

impl ActionResult {
    pub fn new(rc: i32, status: i32, exit_reason: Option<String>) -> ActionResult {
        ActionResult {
            rc,
            status,
            exit_reason,
            output: None,
        }
    }
}

/// A started action: its process group (for cancel and timeout) and its completion.
pub struct Started {
    pub pgid: Option<i32>,
    pub done: std::pin::Pin<Box<dyn std::future::Future<Output = ActionResult> + Send>>,
}

/// Starts `req` for `spec`. Problems found before anything runs (agent missing, unknown class)
/// come back as an already-finished action so the caller has one path for every result.
pub fn start(paths: &AgentPaths, spec: &AgentSpec, req: ActionRequest) -> Started {
    match spec.class.as_str() {
        "ocf" => ocf::start(paths, spec, req),
        "lsb" => lsb::start(paths, spec, req),
        "systemd" => systemd::start(paths, spec, req),
        "service" => {
            if paths.lsb_dir.join(&spec.agent_type).is_file() {
                lsb::start(paths, spec, req)
            } else {
                systemd::start(paths, spec, req)
            }
        }
        other => finished(ActionResult::new(
            ocf_rc::UNKNOWN_ERROR,
            exec_status::NOT_SUPPORTED,
            Some(format!("Unsupported resource class '{other}'")),
        )),
    }
}

fn finished(result: ActionResult) -> Started {
    Started {
        pgid: None,
        done: Box::pin(std::future::ready(result)),
    }
}

fn not_installed(what: &str) -> Started {
    finished(ActionResult::new(
        ocf_rc::NOT_INSTALLED,
        exec_status::NOT_INSTALLED,
        Some(format!("{what}: No such file or directory")),
    ))
}
