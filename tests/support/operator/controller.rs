//! A `kubemaker controller` process we started: its log, signals, `/metrics` (parsed Prometheus
//! text), `/readyz`, CPU time and memory.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::super::process::{Daemon, free_port, tail};

/// A `kubemaker controller` process we started; stdout and stderr go to its log file. Dropping it
/// kills it (SIGKILL, by pid, our own unreaped child) if it still runs.
pub struct Controller {
    /// The process; dropping it kills the controller.
    pub daemon: Daemon,
    pub identity: String,
    pub metrics_addr: String,
    pub log_path: PathBuf,
}

impl Controller {
    /// Starts `bin controller --namespace ns --metrics-addr 127.0.0.1:<free port> --identity
    /// identity <extra>` with `KUBECONFIG=kubeconfig`, logging (RUST_LOG=`log_filter`) to
    /// `<log_dir>/controller-<identity>-<n>.log`.
    pub fn spawn(
        bin: &Path,
        ns: &str,
        identity: &str,
        kubeconfig: &Path,
        extra: &[&str],
        log_dir: &Path,
        log_filter: &str,
    ) -> Controller {
        fs::create_dir_all(log_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_dir.display()));
        let mut n = 0;
        let log_path = loop {
            let p = log_dir.join(format!("controller-{identity}-{n}.log"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(bin);
        cmd.args([
            "controller",
            "--namespace",
            ns,
            "--metrics-addr",
            &metrics_addr,
            "--identity",
            identity,
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", log_filter)
        .env("NO_COLOR", "1")
        .env_remove("KUBEMAKER_NAMESPACE")
        .env_remove("KUBEMAKER_POD_NAME")
        .env_remove("KUBEMAKER_LEADER_ELECTION")
        .env_remove("KUBEMAKER_METRICS_ADDR")
        .env_remove("KUBEMAKER_LOG_FORMAT")
        .env_remove("KUBERNETES_SERVICE_HOST");
        let daemon = Daemon::spawn(cmd, &log_path)
            .unwrap_or_else(|e| panic!("cannot start {} controller: {e}", bin.display()));
        eprintln!(
            "[operator] controller {identity} pid {} metrics {metrics_addr} log {}",
            daemon.pid(),
            log_path.display()
        );
        Controller {
            daemon,
            identity: identity.to_string(),
            metrics_addr,
            log_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// Whether the process has exited (a zombie not yet reaped counts), without needing `&mut`.
    pub fn has_exited(&self) -> bool {
        self.daemon.has_exited()
    }

    /// Sends `sig` (by pid) unless the process has exited.
    pub fn signal(&mut self, sig: nix::sys::signal::Signal) {
        self.daemon.signal(sig);
    }

    /// SIGKILL and reap (a crash).
    pub fn kill9(&mut self) -> ExitStatus {
        self.daemon.kill9();
        self.wait_exit(Duration::from_secs(10))
            .expect("a SIGKILLed process exits")
    }

    /// SIGTERM (a graceful stop request).
    pub fn terminate(&mut self) {
        self.daemon.terminate();
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.daemon.wait_exit(timeout)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log(), n)
    }

    /// `GET path` on the metrics address: (status code, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(&self.metrics_addr, path)
    }

    /// `/metrics`, parsed.
    pub fn metrics(&self) -> Result<Metrics, String> {
        match self.get("/metrics")? {
            (200, body) => Ok(Metrics::parse(&body)),
            (code, body) => Err(format!("/metrics answered {code}: {}", tail(&body, 5))),
        }
    }

    /// `kubemaker_leader` (None while /metrics does not answer).
    pub fn leader(&self) -> Option<f64> {
        self.metrics().ok()?.get("kubemaker_leader", &[])
    }

    /// CPU time used so far (user + system), from /proc/<pid>/stat.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        // Fields after the command: state is field 3; utime and stime are fields 14 and 15.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        Some(Duration::from_millis(ticks * 1000 / hz.max(1)))
    }

    /// Peak and current resident memory in KiB (VmHWM, VmRSS from /proc/<pid>/status).
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((field("VmHWM:")?, field("VmRSS:")?))
    }
}

/// A minimal HTTP/1.0 GET over a std TcpStream (2 s connect, 5 s read, at most 16 MiB).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let sock: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut buf = Vec::new();
    s.take(16 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read from {addr}{path}: {e}"))?;
    let resp = String::from_utf8_lossy(&buf);
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}{path}: no complete HTTP response: {resp:?}"))?;
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}{path}: bad status line in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// Prometheus text exposition, parsed: one entry per series.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut series = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // name{labels} value [timestamp]
            let (name_labels, rest) = match line.find('}') {
                Some(end) => (&line[..=end], line[end + 1..].trim()),
                None => match line.split_once(char::is_whitespace) {
                    Some((n, r)) => (n, r.trim()),
                    None => continue,
                },
            };
            let Some(value) = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            let (name, labels) = match name_labels.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (name_labels, ""),
            };
            let mut map = BTreeMap::new();
            for pair in labels.split("\",").filter(|p| !p.trim().is_empty()) {
                if let Some((k, v)) = pair.split_once('=') {
                    map.insert(
                        k.trim().trim_start_matches(',').to_string(),
                        v.trim().trim_matches('"').to_string(),
                    );
                }
            }
            series.push((name.to_string(), map, value));
        }
        Metrics { series }
    }

    /// The first series named `name` whose labels include all of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| *v)
    }

    /// The sum over all series named `name` (0 if none).
    pub fn sum(&self, name: &str) -> f64 {
        self.series
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }
}
