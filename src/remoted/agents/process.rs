//! Child-process plumbing shared by the agent classes.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Output kept per stream; more is discarded (Pacemaker 3.x trims at about 10 MiB too).
pub const OUTPUT_LIMIT: usize = 10 * 1024 * 1024;
/// After the agent exits, how long to keep draining pipes a daemonized grandchild may hold open.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// How a child process ended.
#[derive(Debug)]
pub enum AgentOutcome {
    Exited {
        code: i32,
        stdout: String,
        stderr: String,
    },
    /// Killed by a signal (no exit code).
    Signaled {
        stdout: String,
        stderr: String,
    },
    TimedOut,
    SpawnFailed(std::io::Error),
}

/// SIGKILL to a whole process group (agents run in their own group, so helpers die with them).
pub fn kill_group(pgid: i32) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Spawns `cmd` in its own process group with captured output; returns its pid and a future for
/// the outcome. The future kills the group when `timeout` expires.
pub fn spawn(
    mut cmd: Command,
    timeout: Duration,
) -> (
    Option<i32>,
    impl std::future::Future<Output = AgentOutcome> + Send + 'static,
) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .env_remove("NOTIFY_SOCKET")
        .kill_on_drop(false);
    let spawned = cmd.spawn();
    let pid = spawned.as_ref().ok().and_then(|c| c.id()).map(|p| p as i32);
    let fut = async move {
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return AgentOutcome::SpawnFailed(e),
        };
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            child
                .stdout
                .take()
                .map(|s| tokio::spawn(drain(s, out.clone()))),
            child
                .stderr
                .take()
                .map(|s| tokio::spawn(drain(s, err.clone()))),
        ];
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(_)) => None,
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid);
                }
                let _ = child.wait().await;
                for r in readers.into_iter().flatten() {
                    r.abort();
                }
                return AgentOutcome::TimedOut;
            }
        };
        for r in readers.into_iter().flatten() {
            let handle = r.abort_handle();
            if tokio::time::timeout(DRAIN_GRACE, r).await.is_err() {
                handle.abort();
            }
        }
        let take = |b: &Arc<Mutex<Vec<u8>>>| {
            let bytes = b
                .lock()
                .map(|mut g| std::mem::take(&mut *g))
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let (stdout, stderr) = (take(&out), take(&err));
        match status.and_then(|s| s.code()) {
            Some(code) => AgentOutcome::Exited {
                code,
                stdout,
                stderr,
            },
            None => AgentOutcome::Signaled { stdout, stderr },
        }
    };
    (pid, fut)
}

async fn drain(mut src: impl tokio::io::AsyncRead + Unpin, sink: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    loop {
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut g) = sink.lock() {
                    let room = OUTPUT_LIMIT.saturating_sub(g.len());
                    g.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    }
}
