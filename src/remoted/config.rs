//! Settings, from the command line and Pacemaker's environment variables (same names and
//! defaults as `pacemaker-remoted`, so existing `/etc/default/pacemaker` files keep working).

use std::path::PathBuf;

use tracing::warn;

use crate::tls::X509Files;

/// `DEFAULT_REMOTE_PORT`.
pub const DEFAULT_PORT: u16 = 3121;
pub const DEFAULT_AUTHKEY: &str = "/etc/pacemaker/authkey";
/// Pacemaker 2.1.x still falls back to corosync's key when the default is unusable.
pub const LEGACY_AUTHKEY: &str = "/etc/corosync/authkey";
/// `CRM_RSCTMP_DIR`: agents keep their state files here.
pub const RSC_TMP_DIR: &str = "/run/resource-agents";

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// `PCMK_remote_address`; `None` listens on every address (IPv6 and IPv4).
    pub address: Option<String>,
    /// Key files in the order they are tried (PSK mode).
    pub authkey_paths: Vec<PathBuf>,
    /// X.509 mode (Pacemaker 3.0): set when `PCMK_ca_file`, `PCMK_cert_file` and
    /// `PCMK_key_file` (or their `CIB_*` forms) are all set; the authkey is then unused.
    pub x509: Option<X509Files>,
    pub logfile: Option<PathBuf>,
    pub handshake_timeout: std::time::Duration,
    /// Bounds on peers that have not finished their handshake, and their log budget.
    pub admission: super::admission::Limits,
    /// How long after a `shutdown_req` to wait for the cluster's answer.
    pub shutdown_ack_timeout: std::time::Duration,
    pub max_message: u32,
    /// Serve libqb IPC for local Pacemaker tools (off on hosts that run cluster daemons
    /// themselves, whose IPC names would clash).
    pub local_ipc: bool,
    /// `KUBEMAKER_READY_FILE`: kept present while a cluster could connect (see `readiness`).
    pub ready_file: Option<PathBuf>,
    /// `PCMK_node_start_state` (`default`, `online` or `standby`): reported to the cluster on
    /// register, which puts the node in that state when it joins (Pacemaker 2.1.7+).
    pub node_start_state: Option<String>,
    /// `KUBEMAKER_CIB_GATEWAY_PORT`: serve the CIB gateway (`cib_gateway`) on this port, on the
    /// same address as the cluster port; off when unset.
    pub cib_gateway_port: Option<u16>,
    pub cib_gateway: super::cib_gateway::Limits,
}

impl Config {
    /// Builds the settings from an explicit port (`-p`) and logfile (`-l`) plus the environment.
    pub fn from_env(port: Option<u16>, logfile: Option<PathBuf>) -> Config {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let port = port.unwrap_or_else(|| match env("PCMK_remote_port") {
            None => DEFAULT_PORT,
            Some(v) => match v.trim().parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    warn!(value = %v, "Ignoring invalid PCMK_remote_port, using {DEFAULT_PORT}");
                    DEFAULT_PORT
                }
            },
        });
        let mut authkey_paths = Vec::new();
        if let Some(p) = env("PCMK_authkey_location") {
            authkey_paths.push(PathBuf::from(p));
        }
        authkey_paths.push(PathBuf::from(DEFAULT_AUTHKEY));
        authkey_paths.push(PathBuf::from(LEGACY_AUTHKEY));
        Config {
            port,
            address: env("PCMK_remote_address"),
            authkey_paths,
            x509: X509Files::from_env(),
            logfile: logfile.or_else(|| env("PCMK_logfile").map(PathBuf::from)),
            handshake_timeout: std::time::Duration::from_secs(10),
            admission: super::admission::Limits::default(),
            shutdown_ack_timeout: std::time::Duration::from_secs(20),
            max_message: crate::wire::frame::DEFAULT_MAX_MESSAGE,
            local_ipc: true,
            ready_file: env("KUBEMAKER_READY_FILE").map(PathBuf::from),
            node_start_state: node_start_state(env("PCMK_node_start_state")),
            cib_gateway_port: env("KUBEMAKER_CIB_GATEWAY_PORT").and_then(|v| {
                let port = v.trim().parse::<u16>().ok().filter(|&p| p > 0);
                if port.is_none() {
                    warn!(value = %v, "Ignoring invalid KUBEMAKER_CIB_GATEWAY_PORT; the CIB gateway stays off");
                }
                port
            }),
            cib_gateway: super::cib_gateway::Limits::default(),
        }
    }
}

fn node_start_state(value: Option<String>) -> Option<String> {
    let v = value?.trim().to_ascii_lowercase();
    if matches!(v.as_str(), "default" | "online" | "standby") {
        Some(v)
    } else {
        warn!(value = %v, "Ignoring invalid PCMK_node_start_state (default, online or standby)");
        None
    }
}

/// `PCMK_debug` is `yes`/`true`/`1` or a list of daemon names.
pub fn debug_from_env() -> bool {
    std::env::var("PCMK_debug").is_ok_and(|v| {
        super::requests::is_true(&v)
            || v.split([',', ' ']).any(|d| {
                matches!(
                    d.trim(),
                    "pacemaker-remoted" | "pacemaker_remoted" | "kubemaker"
                )
            })
    })
}
