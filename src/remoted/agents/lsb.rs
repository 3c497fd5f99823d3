//! LSB init scripts: `<lsb dir>/<type> <action>`, `monitor` runs as `status`; no parameters.

use tokio::process::Command;

use super::ocf::{pick_output, timed_out};
use super::process::{AgentOutcome, spawn};
use super::{
    ActionRequest, ActionResult, AgentPaths, AgentSpec, Started, exec_status, not_installed, ocf_rc,
};

pub(super) fn start(paths: &AgentPaths, spec: &AgentSpec, req: ActionRequest) -> Started {
    let path = if spec.agent_type.starts_with('/') {
        std::path::PathBuf::from(&spec.agent_type)
    } else if spec.agent_type.contains('/') {
        return not_installed(&spec.agent_type);
    } else {
        paths.lsb_dir.join(&spec.agent_type)
    };
    if !path.is_file() {
        return not_installed(&spec.agent_type);
    }
    let status_like = matches!(req.action.as_str(), "monitor" | "status");
    let action = if status_like {
        "status"
    } else {
        req.action.as_str()
    };
    let mut cmd = Command::new(&path);
    cmd.arg(action)
        .envs(paths.extra_env.iter().map(|(k, v)| (k, v)));
    let timeout = req.timeout;
    let (pgid, outcome) = spawn(cmd, timeout);
    Started {
        pgid,
        done: Box::pin(async move {
            match outcome.await {
                AgentOutcome::Exited {
                    code,
                    stdout,
                    stderr,
                } => {
                    let mut r =
                        ActionResult::new(map_exit(code, status_like), exec_status::DONE, None);
                    r.output = pick_output(stdout, stderr);
                    r
                }
                AgentOutcome::Signaled { .. } => ActionResult::new(
                    ocf_rc::UNKNOWN_ERROR,
                    exec_status::ERROR,
                    Some("Init script was terminated by a signal".into()),
                ),
                AgentOutcome::TimedOut => timed_out(timeout),
                AgentOutcome::SpawnFailed(e) => ActionResult::new(
                    ocf_rc::UNKNOWN_ERROR,
                    exec_status::ERROR,
                    Some(format!("Could not execute {}: {e}", path.display())),
                ),
            }
        }),
    }
}

/// `services_result2ocf` for LSB.
pub fn map_exit(code: i32, status_action: bool) -> i32 {
    if status_action {
        match code {
            0 => ocf_rc::OK,
            1..=3 => ocf_rc::NOT_RUNNING,
            150 => ocf_rc::NOT_INSTALLED,
            151 => ocf_rc::INSUFFICIENT_PRIV,
            _ => ocf_rc::UNKNOWN_ERROR,
        }
    } else if (0..=7).contains(&code) {
        code
    } else {
        ocf_rc::UNKNOWN_ERROR
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lsb_mapping() {
        use super::map_exit;
        assert_eq!(
            [0, 1, 2, 3, 4, 150, 151].map(|c| map_exit(c, true)),
            [0, 7, 7, 7, 1, 5, 4]
        );
        assert_eq!(
            [0, 3, 7, 8, 255].map(|c| map_exit(c, false)),
            [0, 3, 7, 1, 1]
        );
    }
}
