//! systemd units, driven through `systemctl` (which reaches the host's systemd over its private
//! socket or D-Bus). Like Pacemaker, start and stop wait until the unit has settled.

use std::time::{Duration, Instant};

use tokio::process::Command;

use super::ocf::timed_out;
use super::process::{AgentOutcome, spawn};
use super::{ActionRequest, ActionResult, AgentPaths, AgentSpec, Started, exec_status, ocf_rc};

/// How often start/stop poll the unit's state while it is (de)activating.
const SETTLE_POLL: Duration = Duration::from_millis(500);

pub(super) fn start(paths: &AgentPaths, spec: &AgentSpec, req: ActionRequest) -> Started {
    let unit = unit_name(&spec.agent_type);
    let systemctl = paths.systemctl.clone();
    let deadline = Instant::now() + req.timeout;
    let timeout = req.timeout;
    let action = req.action.clone();
    Started {
        pgid: None,
        done: Box::pin(async move {
            let state = |deadline| unit_state(systemctl.clone(), unit.clone(), deadline);
            match action.as_str() {
                "monitor" | "status" => match state(deadline).await {
                    Ok(s) => s.monitor_result(),
                    Err(r) => r,
                },
                "start" | "stop" => {
                    let starting = action == "start";
                    let before = match state(deadline).await {
                        Ok(s) => s,
                        Err(r) => return r,
                    };
                    if before.load == "not-found" {
                        return not_found(&unit);
                    }
                    if let Err(r) = run(
                        &systemctl,
                        &[action.as_str(), "--no-block", &unit],
                        deadline,
                    )
                    .await
                    {
                        return r;
                    }
                    loop {
                        let s = match state(deadline).await {
                            Ok(s) => s,
                            Err(r) => return r,
                        };
                        let settled = !matches!(
                            s.active.as_str(),
                            "activating" | "deactivating" | "reloading"
                        );
                        if settled {
                            let running = s.active == "active";
                            let rc = if running == starting {
                                ocf_rc::OK
                            } else {
                                ocf_rc::UNKNOWN_ERROR
                            };
                            return ActionResult::new(rc, exec_status::DONE, None);
                        }
                        if Instant::now() + SETTLE_POLL >= deadline {
                            return timed_out(timeout);
                        }
                        tokio::time::sleep(SETTLE_POLL).await;
                    }
                }
                other => match run(&systemctl, &[other, &unit], deadline).await {
                    Ok(()) => ActionResult::new(ocf_rc::OK, exec_status::DONE, None),
                    Err(r) => r,
                },
            }
        }),
    }
}

/// `nginx` means `nginx.service`; names with a unit suffix are used as given.
pub fn unit_name(agent_type: &str) -> String {
    let has_suffix = [
        ".service", ".socket", ".mount", ".timer", ".target", ".path",
    ]
    .iter()
    .any(|s| agent_type.ends_with(s));
    if has_suffix {
        agent_type.to_string()
    } else {
        format!("{agent_type}.service")
    }
}

struct UnitState {
    load: String,
    active: String,
}

impl UnitState {
    fn monitor_result(&self) -> ActionResult {
        if self.load == "not-found" {
            return not_found("unit");
        }
        match self.active.as_str() {
            "active" | "reloading" => ActionResult::new(ocf_rc::OK, exec_status::DONE, None),
            // Pacemaker reports a pending state; the cluster simply monitors again.
            "activating" | "deactivating" => ActionResult::new(ocf_rc::OK, exec_status::DONE, None),
            _ => ActionResult::new(ocf_rc::NOT_RUNNING, exec_status::DONE, None),
        }
    }
}

fn not_found(unit: &str) -> ActionResult {
    ActionResult::new(
        ocf_rc::NOT_INSTALLED,
        exec_status::NOT_INSTALLED,
        Some(format!("{unit}: No such file or directory")),
    )
}

async fn unit_state(
    systemctl: std::path::PathBuf,
    unit: String,
    deadline: Instant,
) -> Result<UnitState, ActionResult> {
    let out = capture(
        &systemctl,
        &["show", "-p", "LoadState", "-p", "ActiveState", &unit],
        deadline,
    )
    .await?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    Ok(UnitState {
        load: field("LoadState"),
        active: field("ActiveState"),
    })
}

async fn run(
    systemctl: &std::path::Path,
    args: &[&str],
    deadline: Instant,
) -> Result<(), ActionResult> {
    capture(systemctl, args, deadline).await.map(|_| ())
}

async fn capture(
    systemctl: &std::path::Path,
    args: &[&str],
    deadline: Instant,
) -> Result<String, ActionResult> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut cmd = Command::new(systemctl);
    cmd.args(args);
    let (_, outcome) = spawn(cmd, remaining);
    match outcome.await {
        AgentOutcome::Exited {
            code: 0, stdout, ..
        } => Ok(stdout),
        AgentOutcome::Exited { code, stderr, .. } => Err(ActionResult::new(
            ocf_rc::UNKNOWN_ERROR,
            exec_status::ERROR,
            Some(format!(
                "systemctl {} failed ({code}): {}",
                args.join(" "),
                stderr.trim()
            )),
        )),
        AgentOutcome::Signaled { .. } => Err(ActionResult::new(
            ocf_rc::UNKNOWN_ERROR,
            exec_status::ERROR,
            Some("systemctl was terminated by a signal".into()),
        )),
        AgentOutcome::TimedOut => Err(timed_out(remaining)),
        AgentOutcome::SpawnFailed(e) => Err(ActionResult::new(
            ocf_rc::UNKNOWN_ERROR,
            exec_status::ERROR,
            Some(format!("Could not run {}: {e}", systemctl.display())),
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_names() {
        assert_eq!(super::unit_name("nginx"), "nginx.service");
        assert_eq!(super::unit_name("x.socket"), "x.socket");
    }
}
