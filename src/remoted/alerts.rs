//! `lrmd_alert_exec`: alert agents run with their `CRM_alert_*` environment as the cluster's
//! daemon user. No completion notify is sent, so results are only logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::Command;
use tracing::{info, warn};

use super::agents::process_spawn;
use super::executor::rc;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

pub fn run(id: &str, path: &str, env: Vec<(String, String)>, timeout: Duration) -> i32 {
    if !std::path::Path::new(path).is_file() {
        warn!(alert = id, path, "Alert agent not found");
        return rc::EINVAL;
    }
    let mut cmd = Command::new(path);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .envs(
            env.iter()
                .filter(|(k, _)| !k.is_empty() && !k.contains('=') && !k.contains('\0'))
                .map(|(k, v)| (k, v)),
        )
        .env(
            "CRM_alert_node_sequence",
            (SEQUENCE.fetch_add(1, Ordering::Relaxed) + 1).to_string(),
        );
    if let Ok(Some(user)) = nix::unistd::User::from_name("hacluster") {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let (_, outcome) = process_spawn(cmd, timeout);
    let (id, path) = (id.to_string(), path.to_string());
    tokio::spawn(async move {
        let outcome = outcome.await;
        info!(alert = %id, path = %path, outcome = ?outcome_summary(&outcome), "Alert agent finished");
    });
    0
}

fn outcome_summary(o: &super::agents::AgentOutcome) -> String {
    use super::agents::AgentOutcome::*;
    match o {
        Exited { code, .. } => format!("exit {code}"),
        Signaled { .. } => "killed by signal".into(),
        TimedOut => "timed out".into(),
        SpawnFailed(e) => format!("spawn failed: {e}"),
    }
}
