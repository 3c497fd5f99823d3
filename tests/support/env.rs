//! The machine a test runs on: CI or not, the tools and privileges it needs, the repository and the
//! binary under test, the shared state directory and its locks, and the one progress printer.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Shared state of the test cluster and of the harness (pid files, logs, locks).
pub const TEST_STATE_DIR: &str = "/var/tmp/kubemaker-test";

/// True when running in CI (`CI=true`, or `CI=1`), where missing prerequisites are failures, not
/// skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Prints a progress line, `[<test binary>] msg`, to stderr.
pub fn step(msg: &str) {
    eprintln!("[{}] {msg}", env!("CARGO_CRATE_NAME"));
}

/// The `kubemaker` binary under test.
pub fn kubemaker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubemaker"))
}

/// The daemon's own binary under test, `kubemaker-remoted` (what the image ships and the chart's
/// DaemonSet runs; `kubemaker remoted` runs the same code).
pub fn kubemaker_remoted() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubemaker-remoted"))
}

fn current_test_name() -> String {
    thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_string()
}

/// Returns false after printing `SKIP: <test> needs <what>`, or panics when `CI=true`.
pub fn skip_or_panic(what: &str) -> bool {
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
    find_tool(program).is_some()
}

/// Where executable `program` is: itself when it is a path, else the first match in `PATH`.
pub fn find_tool(program: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| is_exec(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_exec(p))
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

pub(super) fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Takes an exclusive flock on `path` (created if needed), waiting at most `timeout`.
pub(super) fn lock_file(path: &Path, timeout: Duration) -> File {
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
