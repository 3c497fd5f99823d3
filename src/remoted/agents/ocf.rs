//! OCF agents: `<OCF_RA_PATH dir>/<provider>/<type> <action>` with the `OCF_*` environment.

use std::os::unix::fs::PermissionsExt;

use tokio::process::Command;

use super::process::{AgentOutcome, spawn};
use super::{
    ActionRequest, ActionResult, AgentPaths, AgentSpec, Started, exec_status, finished,
    not_installed, ocf_rc,
};

pub const EXIT_REASON_PREFIX: &str = "ocf-exit-reason:";
/// Pacemaker keeps at most this many characters of an exit reason.
const EXIT_REASON_MAX: usize = 128;

pub(super) fn start(paths: &AgentPaths, spec: &AgentSpec, req: ActionRequest) -> Started {
    let provider = spec.provider.as_deref().unwrap_or("heartbeat");
    if !is_safe_name(provider) || !is_safe_name(&spec.agent_type) {
        return finished(ActionResult::new(
            ocf_rc::UNKNOWN_ERROR,
            exec_status::ERROR,
            Some("Invalid resource agent name".into()),
        ));
    }
    let Some(path) = paths
        .ocf_ra_path
        .iter()
        .map(|dir| dir.join(provider).join(&spec.agent_type))
        .find(|p| p.is_file())
    else {
        return not_installed(&spec.agent_type);
    };
    let executable = std::fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    if !executable {
        return finished(ActionResult::new(
            ocf_rc::INSUFFICIENT_PRIV,
            exec_status::ERROR,
            Some(format!("{}: Permission denied", spec.agent_type)),
        ));
    }

    let mut cmd = Command::new(&path);
    cmd.arg(&req.action)
        .envs(paths.extra_env.iter().map(|(k, v)| (k, v)))
        .env("OCF_RA_VERSION_MAJOR", "1")
        .env("OCF_RA_VERSION_MINOR", "1")
        .env("OCF_ROOT", &paths.ocf_root)
        .env("OCF_EXIT_REASON_PREFIX", EXIT_REASON_PREFIX)
        .env("OCF_RESOURCE_INSTANCE", &req.rsc_id)
        .env("OCF_RESOURCE_TYPE", &spec.agent_type)
        .env("OCF_RESOURCE_PROVIDER", provider);
    for (k, v) in &req.params {
        if k == "OCF_CHECK_LEVEL" {
            cmd.env(k, v);
        } else if is_env_safe(k) {
            cmd.env(format!("OCF_RESKEY_{k}"), v);
        }
    }
    let timeout = req.timeout;
    let (pgid, outcome) = spawn(cmd, timeout);
    Started {
        pgid,
        done: Box::pin(
            async move { map_outcome(outcome.await, timeout, &path.display().to_string()) },
        ),
    }
}

fn map_outcome(outcome: AgentOutcome, timeout: std::time::Duration, what: &str) -> ActionResult {
    match outcome {
        AgentOutcome::Exited {
            code,
            stdout,
            stderr,
        } => {
            let rc = match code {
                0..=9 | 190 | 191 => code,
                _ => ocf_rc::UNKNOWN_ERROR,
            };
            let mut r = ActionResult::new(rc, exec_status::DONE, exit_reason(&stderr));
            r.output = pick_output(stdout, stderr);
            r
        }
        AgentOutcome::Signaled { stdout, stderr } => {
            let mut r = ActionResult::new(
                ocf_rc::UNKNOWN_ERROR,
                exec_status::ERROR,
                Some("Resource agent was terminated by a signal".into()),
            );
            r.output = pick_output(stdout, stderr);
            r
        }
        AgentOutcome::TimedOut => timed_out(timeout),
        AgentOutcome::SpawnFailed(e) => ActionResult::new(
            ocf_rc::UNKNOWN_ERROR,
            exec_status::ERROR,
            Some(format!("Could not execute {what}: {e}")),
        ),
    }
}

pub(super) fn timed_out(timeout: std::time::Duration) -> ActionResult {
    ActionResult::new(
        ocf_rc::UNKNOWN_ERROR,
        exec_status::TIMEOUT,
        Some(format!(
            "Resource agent did not complete within {}",
            readable_ms(timeout.as_millis())
        )),
    )
}

/// Like Pacemaker's readable intervals: "20s", "1m 30s", "250ms".
fn readable_ms(ms: u128) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, rest) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || rest > 0 {
        parts.push(if rest > 0 {
            format!("{s}.{rest:03}s")
        } else {
            format!("{s}s")
        });
    }
    parts.join(" ")
}

pub(super) fn pick_output(stdout: String, stderr: String) -> Option<String> {
    if !stderr.is_empty() {
        Some(stderr)
    } else if !stdout.is_empty() {
        Some(stdout)
    } else {
        None
    }
}

/// The text after the last `ocf-exit-reason:` on stderr, to the end of that line.
pub fn exit_reason(stderr: &str) -> Option<String> {
    let at = stderr.rfind(EXIT_REASON_PREFIX)?;
    let rest = &stderr[at + EXIT_REASON_PREFIX.len()..];
    let line = rest
        .split('\n')
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    Some(line.chars().take(EXIT_REASON_MAX).collect())
}

/// Provider and type become path components: no separators, no parent references.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

/// Environment variable names the shell can use (the cluster only sends such names, but a
/// malformed request must not make the spawn fail).
fn is_env_safe(k: &str) -> bool {
    !k.is_empty() && !k.contains('=') && !k.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reason_takes_last_and_truncates() {
        assert_eq!(
            exit_reason("ocf-exit-reason:first\nnoise\nocf-exit-reason:second one\nmore"),
            Some("second one".into())
        );
        assert_eq!(exit_reason("nothing here"), None);
        let long = format!("ocf-exit-reason:{}", "x".repeat(300));
        assert_eq!(exit_reason(&long).map(|s| s.len()), Some(128));
    }

    #[test]
    fn readable_intervals() {
        assert_eq!(readable_ms(20_000), "20s");
        assert_eq!(readable_ms(90_000), "1m 30s");
        assert_eq!(readable_ms(300), "300ms");
        assert_eq!(readable_ms(1_500), "1.500s");
    }
}
