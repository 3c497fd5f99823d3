//! Processes the tests start: commands run to completion with a time limit ([`run`], [`run_ok`],
//! [`run_with_timeout`], [`run_with_input`]), children that run beside the test with their output
//! captured ([`ChildGuard`]), and long-running daemons that log to a file ([`Daemon`]). Every wait
//! is bounded, and only our own children are ever signalled, by pid.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const CMD_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Commands run to completion
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` to completion with captured stdout/stderr, killing it (our own child, by pid) if it
/// is still running after `timeout`; a note is then appended to stderr. Panics if it cannot start.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_input(cmd, None, timeout)
}

/// [`run_with_timeout`] with `input` on stdin (or /dev/null when `None`).
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    // Program and arguments only: the environment can hold passwords (CIB_passwd).
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let (mut output, timed_out) = spawn_captured(cmd, input.map(<[u8]>::to_vec)).finish(timeout);
    if timed_out {
        output.stderr.extend_from_slice(
            format!("\n[harness] {shown} killed after {timeout:?}\n").as_bytes(),
        );
    }
    output
}

/// Waits (bounded) for our child; kills it on timeout. Returns its status and whether it timed out.
pub fn wait_child(child: &mut Child, timeout: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let status = child.wait().expect("wait for killed child");
                return (status, true);
            }
        }
    }
}

/// Runs `program args` with [`run_with_timeout`] and the default 30 s limit.
pub fn run(program: &str, args: &[&str]) -> Output {
    run_with_timeout(Command::new(program).args(args), CMD_TIMEOUT)
}

/// Like [`run`], but panics with the command's output unless it exits with status 0.
pub fn run_ok(program: &str, args: &[&str]) -> Output {
    let out = run(program, args);
    if !out.status.success() {
        panic!(
            "`{program} {}` failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// stdout and stderr of `o`, lossy UTF-8.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for a test).
/// The fields of `/proc/PID/stat` after the command name (state, ppid, ..., utime at index 11,
/// stime 12, cutime 13, cstime 14); empty when the process is gone.
pub fn proc_stat(pid: u32) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The pid recorded in a pid file of our scripts (`<pid> <starttime>`) if that process still runs
/// (its start time in `/proc/PID/stat` matches, so a reused pid does not count).
pub fn recorded_pid(file: &Path) -> Option<u32> {
    let recorded = fs::read_to_string(file).ok()?;
    let mut fields = recorded.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let start = fields.next()?;
    (proc_stat(pid).get(19).map(String::as_str) == Some(start)).then_some(pid)
}

/// CPU seconds in `/proc/PID/stat` field `index` of [`proc_stat`] (clock ticks of 1/100 s).
pub fn proc_cpu_secs(stat: &[String], index: usize) -> f64 {
    stat.get(index)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 100.0
}

/// Resident memory of a process in KiB (`VmRSS`), 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A port nobody listens on, never handed out twice in this test process: a port released here
/// can be given to the next `bind(0)` before its server binds it, and tests run in parallel (a
/// CI run's anonymous-TLS test reached the PSK test's gnutls-serv that way).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind 127.0.0.1:0");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no fresh port in 1000 binds of 127.0.0.1:0");
}

// ---------------------------------------------------------------------------------------------
// Children running beside the test
// ---------------------------------------------------------------------------------------------

/// A thread reading one pipe to its end.
type Reader = thread::JoinHandle<Vec<u8>>;

/// A child process whose stdout and stderr are drained by threads from the start (so it never
/// blocks on a full pipe); killed (SIGKILL, by pid, our own child) and reaped on drop unless it
/// was waited for.
pub struct ChildGuard {
    child: Option<Child>,
    readers: Option<(Reader, Reader)>,
}

impl ChildGuard {
    /// Waits for the child (at most `timeout`, then kills it) and returns its output.
    pub fn wait_output(&mut self, timeout: Duration) -> Output {
        self.finish(timeout).0
    }

    /// [`ChildGuard::wait_output`], and whether the child had to be killed.
    fn finish(&mut self, timeout: Duration) -> (Output, bool) {
        let mut child = self.child.take().expect("a child not yet waited for");
        let (status, timed_out) = wait_child(&mut child, timeout);
        let (out, err) = self.readers.take().expect("reader threads");
        let output = Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        };
        (output, timed_out)
    }

    /// Whether the child has exited (Some(status)), without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns `cmd` with `input` written to its stdin (from a thread), stdout and stderr captured.
pub fn spawn_with_input(cmd: &mut Command, input: Vec<u8>) -> ChildGuard {
    spawn_captured(cmd, Some(input))
}

/// Spawns `cmd` with stdout and stderr captured and `input` on stdin (/dev/null when `None`).
/// Panics if it cannot start.
fn spawn_captured(cmd: &mut Command, input: Option<Vec<u8>>) -> ChildGuard {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(data) = input {
        let mut pipe = child.stdin.take().expect("piped stdin");
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    ChildGuard {
        child: Some(child),
        readers: Some((out, err)),
    }
}

// ---------------------------------------------------------------------------------------------
// Daemons logging to a file
// ---------------------------------------------------------------------------------------------

/// A process started by the test (in a network namespace with `Daemon::spawn_in` of
/// [`super::netns`], or not); its log is a file. Dropping
/// it kills the process (SIGKILL, by pid; it is our own child, not yet reaped, so the pid cannot
/// have been reused) if it is still running.
pub struct Daemon {
    child: Child,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `cmd` with stdin from /dev/null and stdout and stderr appended to `log` (created,
    /// with its parent directory, if needed).
    pub fn spawn(mut cmd: Command, log: &Path) -> std::io::Result<Daemon> {
        if let Some(dir) = log.parent() {
            fs::create_dir_all(dir)?;
        }
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        Ok(Daemon {
            child,
            log_path: log.to_path_buf(),
            exit: None,
        })
    }

    /// Starts `cmd` with stdin, stdout and stderr on /dev/null: a daemon that writes `log` itself
    /// (`kubemaker remoted -l log`).
    pub fn spawn_logging_itself(mut cmd: Command, log: &Path) -> std::io::Result<Daemon> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Daemon {
            child,
            log_path: log.to_path_buf(),
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Sends `sig` (by pid) unless the process has exited.
    pub fn signal(&mut self, sig: nix::sys::signal::Signal) {
        if self.try_exit().is_none() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }

    /// SIGKILL (a crash, as far as the peer can tell).
    pub fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    /// SIGTERM (a graceful stop request).
    pub fn terminate(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Whether the process has exited (a zombie not yet reaped counts), without needing `&mut`.
    pub fn has_exited(&self) -> bool {
        if self.exit.is_some() {
            return true;
        }
        match fs::read_to_string(format!("/proc/{}/stat", self.child.id())) {
            // The state follows the parenthesized command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_none_or(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits at most `timeout` for the process to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The log so far (lossy UTF-8; empty if unreadable).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log().contains(needle)
    }

    /// Waits (polling every 100 ms, at most `timeout`) until the log contains `needle`; panics
    /// with the end of the log on timeout.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_contains(needle) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{:?} not in {} after {timeout:?}; last lines:\n{}",
                    needle,
                    self.log_path.display(),
                    tail(&self.log(), 40)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
