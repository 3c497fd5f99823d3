//! Memory of the chart's pods on real kubelet nodes, as Kubernetes accounts it (the container's
//! cgroup: the daemon and every agent it runs), to set the chart's requests and limits from:
//!
//!     sudo cargo bench --bench pod_memory     (BENCH_KEEP_DEMO=1 leaves the demo up)
//!
//! The fixture is `make demo` itself (scripts/demo.sh up): the test cluster, two local kubelet
//! workers, the chart with its controller Deployment and remoted DaemonSet, both workers joined.
//! Then, each phase sampled every 5 s for 60 s from the kubelet's summary API (through the API
//! server's node proxy; what metrics-server and the eviction manager read):
//!   1. idle: the controller and both remoted pods right after the demo is up;
//!   2. remoted with 10 `ocf:pacemaker:Dummy` resources placed on km-worker1 (10 s monitors);
//!   3. the controller with 50 more RemoteNodes (addresses on the host's loopback where nothing
//!      listens: configured in the CIB, never connected).
//!
//! Printed per container: working set (what limits and evictions use), cgroup usage and RSS,
//! median and maximum over the samples, and the container cgroup's own peak over the phase
//! (memory.max_usage_in_bytes, cgroup v1 as on the test machines; it catches the short-lived
//! agent processes between samples), then the overall peaks to compare with the chart's
//! requests and limits.
//! Everything the bench adds (Dummies, constraints, RemoteNodes) is removed again at the end, and
//! the demo is taken down (`scripts/demo.sh down`) unless BENCH_KEEP_DEMO=1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const NAMESPACE: &str = "kubemaker";
const CLUSTER: &str = "demo";
const WORKER: &str = "km-worker1";
const DUMMIES: usize = 10;
const EXTRA_NODES: usize = 50;
const SAMPLES: usize = 12;
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const BENCH_LABEL: &str = "kubemaker.io/bench";
const PREFIX: &str = "podmem";
const MEMORY_CGROUPS: &str = "/sys/fs/cgroup/memory";

fn say(msg: &str) {
    eprintln!("[pod_memory] {msg}");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn demo(args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/demo.sh")).args(args);
    cmd
}

fn kubectl(args: &[&str]) -> String {
    let mut all = vec!["kubectl"];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&run(&mut demo(&all)).stdout).into_owned()
}

fn kubectl_json(args: &[&str]) -> Value {
    serde_json::from_str(&kubectl(args)).expect("kubectl printed JSON")
}

/// `kubectl apply -f -` of one object.
fn apply(obj: &Value) {
    let mut child = demo(&["kubectl", "apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn kubectl apply");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(obj.to_string().as_bytes())
            .expect("write object");
    }
    assert!(
        child.wait().expect("kubectl apply").success(),
        "apply {obj}"
    );
}

fn cibadmin(args: &[&str]) {
    run(Command::new("cibadmin").args(args));
}

/// Polls `done` every second until it holds or `limit` passes (then panics with `what`).
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        sleep(Duration::from_secs(1));
    }
    start.elapsed()
}

/// One container of one pod, as the bench follows it.
#[derive(Clone)]
struct Target {
    label: String,
    pod: String,
    node: String,
    container: &'static str,
    /// The container's memory cgroup (v1) on this machine: its peak counter catches agent
    /// processes that live between two samples.
    cgroup: Option<PathBuf>,
}

#[derive(Default, Clone, Copy)]
struct Reading {
    working_set: u64,
    usage: u64,
    rss: u64,
}

fn pods(component: &str, container: &'static str) -> Vec<Target> {
    let list = kubectl_json(&[
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        &format!("app.kubernetes.io/component={component}"),
        "-o",
        "json",
    ]);
    let mut found: Vec<Target> = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .map(|p| {
                    let node = p["spec"]["nodeName"].as_str().unwrap_or("?").to_string();
                    let id = p["status"]["containerStatuses"]
                        .as_array()
                        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
                        .and_then(|c| c["containerID"].as_str())
                        .and_then(|id| id.rsplit("://").next())
                        .unwrap_or("");
                    Target {
                        label: format!("{component} on {node}"),
                        pod: p["metadata"]["name"].as_str().unwrap_or("?").to_string(),
                        node,
                        container,
                        cgroup: find_cgroup(id),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| a.label.cmp(&b.label));
    assert!(!found.is_empty(), "no running {component} pod");
    found
}

/// The memory cgroup directory named after container `id` (kubelet's cgroupfs layout:
/// kubepods/<qos>/pod<uid>/<id>), searched at most 4 levels deep.
fn find_cgroup(id: &str) -> Option<PathBuf> {
    if id.is_empty() {
        return None;
    }
    let mut dirs = vec![(PathBuf::from(MEMORY_CGROUPS), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            if e.file_name().to_string_lossy().contains(id) {
                return Some(path);
            }
            if depth < 4 {
                dirs.push((path, depth + 1));
            }
        }
    }
    None
}

fn read_peak(t: &Target) -> Option<u64> {
    let path = t.cgroup.as_ref()?.join("memory.max_usage_in_bytes");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Starts the peak counter afresh (cgroup v1: writing 0 resets it).
fn reset_peak(t: &Target) {
    if let Some(dir) = &t.cgroup {
        let _ = std::fs::write(dir.join("memory.max_usage_in_bytes"), "0");
    }
}

/// The container's memory from its node's kubelet summary API.
fn read(target: &Target) -> Reading {
    let summary = kubectl_json(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/stats/summary", target.node),
    ]);
    let pod = summary["pods"]
        .as_array()
        .and_then(|pods| {
            pods.iter()
                .find(|p| p["podRef"]["name"] == target.pod.as_str())
        })
        .unwrap_or_else(|| panic!("pod {} not in {}'s summary", target.pod, target.node));
    let container = pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == target.container))
        .unwrap_or_else(|| panic!("no container {} in {}", target.container, target.pod));
    let mem = &container["memory"];
    let num = |k: &str| mem[k].as_u64().unwrap_or(0);
    Reading {
        working_set: num("workingSetBytes"),
        usage: num("usageBytes"),
        rss: num("rssBytes"),
    }
}

struct Row {
    phase: &'static str,
    label: String,
    median: Reading,
    max: Reading,
    /// The cgroup's own peak over the phase (None where the cgroup was not found).
    peak: Option<u64>,
}

fn sample(phase: &'static str, targets: &[Target], rows: &mut Vec<Row>) {
    say(&format!(
        "{phase}: {SAMPLES} samples every {}s of {}",
        SAMPLE_EVERY.as_secs(),
        targets
            .iter()
            .map(|t| t.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut all: Vec<Vec<Reading>> = vec![Vec::new(); targets.len()];
    targets.iter().for_each(reset_peak);
    for i in 0..SAMPLES {
        if i > 0 {
            sleep(SAMPLE_EVERY);
        }
        for (t, seen) in targets.iter().zip(all.iter_mut()) {
            seen.push(read(t));
        }
    }
    for (t, seen) in targets.iter().zip(all) {
        let pick = |f: fn(&Reading) -> u64| -> (u64, u64) {
            let mut v: Vec<u64> = seen.iter().map(f).collect();
            v.sort_unstable();
            (v[v.len() / 2], v[v.len() - 1])
        };
        let (ws, ws_max) = pick(|r| r.working_set);
        let (us, us_max) = pick(|r| r.usage);
        let (rss, rss_max) = pick(|r| r.rss);
        rows.push(Row {
            phase,
            label: t.label.clone(),
            median: Reading {
                working_set: ws,
                usage: us,
                rss,
            },
            max: Reading {
                working_set: ws_max,
                usage: us_max,
                rss: rss_max,
            },
            peak: read_peak(t),
        });
    }
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

fn crm_mon_xml() -> String {
    let out = Command::new("crm_mon")
        .args(["-1", "--output-as=xml"])
        .output()
        .expect("crm_mon");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dummy_id(i: usize) -> String {
    format!("{PREFIX}-dummy-{i:02}")
}

fn add_dummies() {
    for i in 0..DUMMIES {
        let id = dummy_id(i);
        cibadmin(&[
            "--create",
            "-o",
            "resources",
            "-X",
            &format!(
                "<primitive id=\"{id}\" class=\"ocf\" provider=\"pacemaker\" type=\"Dummy\">\
                 <operations><op id=\"{id}-monitor\" name=\"monitor\" interval=\"10s\" timeout=\"20s\"/>\
                 </operations></primitive>"
            ),
        ]);
        cibadmin(&[
            "--create",
            "-o",
            "constraints",
            "-X",
            &format!(
                "<rsc_location id=\"{id}-on-worker\" rsc=\"{id}\" node=\"{WORKER}\" score=\"INFINITY\"/>"
            ),
        ]);
    }
}

fn remove_dummies() {
    for i in 0..DUMMIES {
        let id = dummy_id(i);
        // Stopped first so the agent's state file on the worker goes too; errors ignored: a
        // failed earlier phase may have left only some of them.
        let _ = Command::new("crm_resource")
            .args(["--resource", &id, "--set-parameter", "target-role"])
            .args(["--meta", "--parameter-value", "Stopped"])
            .output();
    }
    let stopped = || {
        let prefix = format!("id=\"{PREFIX}-dummy-");
        !crm_mon_xml()
            .split("<resource ")
            .any(|r| r.starts_with(&prefix) && !r.contains("role=\"Stopped\""))
    };
    let _ = wait_for("Dummies stopped", Duration::from_secs(120), stopped);
    for i in 0..DUMMIES {
        let id = dummy_id(i);
        let _ = Command::new("cibadmin")
            .args(["--delete", "-o", "constraints", "-X"])
            .arg(format!("<rsc_location id=\"{id}-on-worker\"/>"))
            .output();
        let _ = Command::new("cibadmin")
            .args(["--delete", "-o", "resources", "-X"])
            .arg(format!("<primitive id=\"{id}\"/>"))
            .output();
    }
}

fn dummies_started() -> bool {
    let mon = crm_mon_xml();
    (0..DUMMIES).all(|i| {
        let id = dummy_id(i);
        mon.split("<resource ").any(|r| {
            r.starts_with(&format!("id=\"{id}\""))
                && r.contains("role=\"Started\"")
                && r.contains(&format!("name=\"{WORKER}\""))
        })
    })
}

fn extra_node_name(i: usize) -> String {
    format!("{PREFIX}-{i:03}")
}

fn add_extra_nodes() {
    for i in 0..EXTRA_NODES {
        apply(&json!({
            "apiVersion": "kubemaker.io/v1alpha1",
            "kind": "RemoteNode",
            "metadata": {"name": extra_node_name(i), "labels": {BENCH_LABEL: "true"}},
            "spec": {
                "clusterRef": {"name": CLUSTER},
                // The host's loopback: the connection is refused at once, no traffic leaves it.
                "address": format!("127.0.1.{}", i + 1),
                "reconnectInterval": "3600s",
                "startTimeout": "5s",
                "monitor": {"interval": "60s", "timeout": "20s"},
            },
        }));
    }
}

fn configured_extra_nodes() -> usize {
    let list = kubectl_json(&[
        "get",
        "remotenodes",
        "-l",
        &format!("{BENCH_LABEL}=true"),
        "-o",
        "json",
    ]);
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|rn| {
                    rn["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Configured" && c["status"] == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

fn remove_extra_nodes() {
    let _ = demo(&[
        "kubectl",
        "delete",
        "remotenodes",
        "-l",
        &format!("{BENCH_LABEL}=true"),
        "--wait=true",
        "--timeout=300s",
    ])
    .output();
}

fn main() {
    // `cargo test --all-targets` runs bench targets too; this one brings up the whole demo for
    // minutes, so it only runs under `cargo bench` (which passes --bench), unfiltered.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pod memory benchmark: run it with `sudo cargo bench --bench pod_memory`");
        return;
    }
    if std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        return;
    }
    assert!(
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0")),
        "run as root: sudo cargo bench --bench pod_memory"
    );
    let keep = std::env::var("BENCH_KEEP_DEMO").is_ok_and(|v| v == "1");

    let started = Instant::now();
    say("scripts/demo.sh up (the chart on two local kubelet nodes, both joined)");
    let status = demo(&["up"]).status().expect("run scripts/demo.sh up");
    assert!(status.success(), "scripts/demo.sh up failed");
    say(&format!(
        "demo up after {:.0} s",
        started.elapsed().as_secs_f64()
    ));

    let result = std::panic::catch_unwind(|| {
        let mut rows = Vec::new();
        let controller = pods("controller", "controller");
        let remoted = pods("remoted", "remoted");
        let mut idle = controller.clone();
        idle.extend(remoted.iter().cloned());
        sample("idle", &idle, &mut rows);

        say(&format!("{DUMMIES} Dummies on {WORKER}"));
        add_dummies();
        let took = wait_for("Dummies started", Duration::from_secs(180), dummies_started);
        say(&format!(
            "all {DUMMIES} started in {:.1} s",
            took.as_secs_f64()
        ));
        let on_worker: Vec<Target> = remoted
            .iter()
            .filter(|t| t.node == WORKER)
            .cloned()
            .collect();
        sample("10 Dummies", &on_worker, &mut rows);

        say(&format!("{EXTRA_NODES} more RemoteNodes"));
        add_extra_nodes();
        let took = wait_for("RemoteNodes Configured", Duration::from_secs(300), || {
            configured_extra_nodes() == EXTRA_NODES
        });
        say(&format!(
            "all {EXTRA_NODES} Configured in {:.1} s",
            took.as_secs_f64()
        ));
        sample("52 RemoteNodes", &controller, &mut rows);
        rows
    });

    say("removing what the bench added");
    remove_extra_nodes();
    remove_dummies();
    if keep {
        say("BENCH_KEEP_DEMO=1: the demo stays up (make demo-down)");
    } else {
        say("scripts/demo.sh down");
        if !demo(&["down"]).status().is_ok_and(|s| s.success()) {
            say("warning: scripts/demo.sh down failed");
        }
    }

    let rows = match result {
        Ok(rows) => rows,
        Err(e) => std::panic::resume_unwind(e),
    };
    println!();
    let line = |cols: [&str; 6]| {
        println!(
            "{:<16} {:<28} {:>16} {:>16} {:>16} {:>10}",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]
        )
    };
    line([
        "phase",
        "container",
        "working set MiB",
        "usage MiB",
        "RSS MiB",
        "peak MiB",
    ]);
    line([
        "",
        "",
        "median / max",
        "median / max",
        "median / max",
        "(cgroup)",
    ]);
    for r in &rows {
        line([
            r.phase,
            &r.label,
            &format!("{} / {}", mib(r.median.working_set), mib(r.max.working_set)),
            &format!("{} / {}", mib(r.median.usage), mib(r.max.usage)),
            &format!("{} / {}", mib(r.median.rss), mib(r.max.rss)),
            &r.peak.map_or("-".to_string(), mib),
        ]);
    }
    let peak = |prefix: &str| {
        rows.iter()
            .filter(|r| r.label.starts_with(prefix))
            .map(|r| r.max.working_set.max(r.peak.unwrap_or(0)))
            .max()
            .unwrap_or(0)
    };
    let values = Path::new("charts/kubemaker/values.yaml");
    println!();
    println!(
        "peak (working set or cgroup peak): controller {} MiB, remoted {} MiB (compare with the requests and limits in {})",
        mib(peak("controller")),
        mib(peak("remoted")),
        values.display()
    );
}
