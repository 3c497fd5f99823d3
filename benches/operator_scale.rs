//! `kubemaker controller` at scale: 500 RemoteNodes applied at once (one `kubectl apply` of a
//! List) against the real test cluster, with the controller running as the chart's ServiceAccount
//! against the test API server. Side by side, in the same run: the same 500 primitives added with
//! a `cibadmin --create` loop (what a shell script or pcs loop does, see `benches/cib_bulk.rs`).
//!
//!     sudo cargo bench --bench operator_scale            (BENCH_NODES=500)
//!
//! Measured: time until all primitives are in the CIB (`cibadmin -Q` polled every 200 ms), CIB
//! transactions (epoch delta, and the controller's kubemaker_cib_transactions_total), time until
//! every RemoteNode is Configured=True, the controller's peak (VmHWM) and final (VmRSS) resident
//! memory, and the time to delete them all again. Goal (issue #5): all configured within 30 s,
//! controller under 50 MiB.
//!
//! The nodes' addresses are extra addresses inside test network namespaces where nothing listens,
//! so the cluster's connection attempts are refused at once (traffic stays on the test hosts'
//! links); a long reconnect interval and a 5 s start timeout keep the failed attempts cheap.
//!
//!     sudo BENCH_LIVE=1 cargo bench --bench operator_scale   (BENCH_NODES=200)
//!
//! With `BENCH_LIVE=1` every RemoteNode is a real remote node instead: a network-namespace host
//! running `kubemaker-remoted` with the cluster's key (the authkey Secret is created with that key
//! before the controller starts, so the cluster's key does not change), the spec only a cluster and
//! an address. It then also measures the time until every RemoteNode is `Ready=True` (online in
//! Pacemaker), and skips the `cibadmin` loop.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubemaker::cib::DesiredNode;
use kubemaker::cib::spec::{MonitorSpec, RemoteNodeSpec};
use serde_json::{Value, json};
use support::operator::{self, Api, Controller, TEST_LABEL, condition_is, str_at};
use support::{Cluster, NetnsHost, RemoteHost, cib_port};

const NS: &str = "kubemaker-bench";
const CLUSTER: &str = "bench";
const CREDENTIALS: &str = "pcmk-credentials";
const GROUP_LABEL: &str = "kubemaker-e2e/group";
const RECONNECT: &str = "3600s";
const START_TIMEOUT: &str = "5s";
const MONITOR: &str = "60s";
const LIMIT: Duration = Duration::from_secs(600);

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn say(msg: &str) {
    eprintln!("[operator_scale] {msg}");
}

/// Count of primitives whose id starts with `prefix`.
fn count_in_cib(prefix: &str) -> usize {
    operator::primitives_with_prefix(&operator::cib_root(), prefix).len()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Hosts {
    hosts: Vec<NetnsHost>,
    /// `BENCH_LIVE`: one host with a running daemon per node.
    live: Vec<RemoteHost>,
    addrs: Vec<String>,
}

/// One test host running `kubemaker-remoted` with `key` per node, for `BENCH_LIVE`.
fn live_hosts(n: usize, key: &[u8]) -> Hosts {
    let live: Vec<RemoteHost> = (0..n)
        .map(|i| {
            if i % 50 == 0 {
                say(&format!("starting remote daemons {i}..{}", (i + 50).min(n)));
            }
            RemoteHost::start_in_netns(&format!("ol{i}"), key)
        })
        .collect();
    let addrs = live.iter().map(|h| h.addr()).collect();
    Hosts {
        hosts: Vec::new(),
        live,
        addrs,
    }
}

/// Enough test hosts for `n` addresses (250 each), nothing listening on any of them.
fn hosts_for(n: usize) -> Hosts {
    let mut hosts = Vec::new();
    let mut addrs = Vec::new();
    let mut i = 0;
    while addrs.len() < n {
        i += 1;
        let h = NetnsHost::create(&format!("bench-{i}"));
        let want = (n - addrs.len()).min(250) as u32;
        addrs.extend(operator::add_host_addresses(&h, 3, want));
        hosts.push(h);
    }
    Hosts {
        hosts,
        live: Vec::new(),
        addrs,
    }
}

fn spec_json(addr: &str, live: bool) -> Value {
    if live {
        return json!({"clusterRef": {"name": CLUSTER}, "address": addr});
    }
    json!({
        "clusterRef": {"name": CLUSTER},
        "address": addr,
        "reconnectInterval": RECONNECT,
        "startTimeout": START_TIMEOUT,
        "monitor": {"interval": MONITOR, "timeout": "20s"},
    })
}

/// The same node as a CIB-layer spec (what the `cibadmin` loop writes).
fn cib_spec(addr: &str) -> RemoteNodeSpec {
    RemoteNodeSpec {
        address: Some(addr.to_string()),
        reconnect_interval: Some(RECONNECT.into()),
        start_timeout: Some(START_TIMEOUT.into()),
        monitor: Some(MonitorSpec {
            interval: Some(MONITOR.into()),
            timeout: Some("20s".into()),
        }),
        ..Default::default()
    }
}

#[derive(Default)]
struct KubemakerRun {
    apply: Duration,
    cpu_configure: Duration,
    cpu_delete: Duration,
    peak_configure_kib: u64,
    first_in_cib: Option<Duration>,
    all_in_cib: Option<Duration>,
    all_configured: Option<Duration>,
    /// `BENCH_LIVE`: every RemoteNode `Ready=True`.
    all_ready: Option<Duration>,
    epochs: u64,
    transactions: f64,
    conflicts: f64,
    peak_kib: u64,
    end_kib: u64,
    delete_all: Option<Duration>,
}

fn main() {
    // `cargo test --all-targets` runs bench targets too; this one needs the real cluster and the
    // API server for minutes, so it only runs under `cargo bench` (which passes --bench).
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator scale benchmark: run it with `cargo bench --bench operator_scale`");
        return;
    }
    if !support::require_tools(&["cibadmin", "crm_mon", "chpasswd", "ip"])
        || !support::require_root()
    {
        std::process::exit(1);
    }
    let live = std::env::var("BENCH_LIVE").is_ok_and(|v| v == "1");
    let n = env_num("BENCH_NODES", if live { 200 } else { 500 }).max(1);
    let api = match Api::ensure() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("operator_scale needs the test API server: {e}");
            std::process::exit(1);
        }
    };
    let cluster = Cluster::acquire();
    let remote = cib_port::enable_remote_cib(&cluster);
    api.wait_until_unshared(NS, &[CLUSTER], Duration::from_secs(600));
    api.remove_leftovers(NS, &[CLUSTER]);
    let dir = PathBuf::from(operator::STATE_DIR).join("bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    api.install_chart(NS);
    let kubeconfig = dir.join("controller.kubeconfig");
    api.sa_kubeconfig(NS, operator::CONTROLLER_SA, &kubeconfig);
    api.create_credentials_secret(NS, CREDENTIALS, remote.password.expose());
    api.apply(&json!({
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "PacemakerCluster",
        "metadata": {"name": CLUSTER, "labels": {TEST_LABEL: "true"}},
        "spec": {
            "endpoints": [{"host": "127.0.0.1", "port": cib_port::TLS_PORT}],
            "tlsMode": "anonymous",
            "credentialsSecretRef": {"name": CREDENTIALS},
        },
    }));
    let hosts = if live {
        // The cluster's key, in the Secret the controller would otherwise create.
        let key = support::test_authkey();
        support::install_cluster_authkey(&key);
        api.apply(&operator::secret(
            NS,
            "kubemaker-authkey",
            "Opaque",
            &[("authkey", &key)],
        ));
        live_hosts(n, &key)
    } else {
        hosts_for(n)
    };
    say(&format!(
        "{n} addresses on {} test hosts",
        hosts.hosts.len() + hosts.live.len()
    ));

    let mut ctl = Controller::spawn(
        Path::new(env!("CARGO_BIN_EXE_kubemaker")),
        NS,
        "bench",
        &kubeconfig,
        &[],
        &dir.join("logs"),
        "info",
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_kubemaker(&api, &cluster, &mut ctl, &hosts.addrs, live)
    }));
    // Whatever happened: stop the controller, remove the objects and the namespace.
    ctl.terminate();
    if ctl.wait_exit(Duration::from_secs(10)).is_none() {
        ctl.kill9();
    }
    api.remove_leftovers(NS, &[CLUSTER]);
    cluster.reset();
    let run = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("--- controller log (last lines) ---\n{}", ctl.log_tail(40));
            api.stop_if_started();
            std::panic::resume_unwind(e);
        }
    };

    drop(hosts.live);
    if live {
        api.stop_if_started();
        print_rows(n, &run, None);
        return;
    }
    // Reference: one `cibadmin --create` per node.
    say("reference: cibadmin --create loop");
    let (v0, t0) = (operator::cib_version(), Instant::now());
    for (i, a) in hosts.addrs.iter().enumerate() {
        let d = DesiredNode::from_spec(&format!("bc-{i:04}"), &cib_spec(a))
            .expect("a valid reference spec");
        support::run_ok(
            "cibadmin",
            &[
                "--create",
                "-o",
                "resources",
                "--xml-text",
                &d.primitive.to_element().to_xml(),
            ],
        );
    }
    let loop_wall = t0.elapsed();
    let loop_epochs = operator::cib_version().1 - v0.1;
    assert_eq!(
        count_in_cib("bc-"),
        n,
        "the cibadmin loop did not create all nodes"
    );
    support::mark_remote_key_in_use();
    cluster.reset();
    support::mark_remote_key_idle();
    api.stop_if_started();

    print_rows(n, &run, Some((loop_wall, loop_epochs)));
}

/// The benchmark's table; `reference` is the `cibadmin` loop's wall time and epoch delta.
fn print_rows(n: usize, run: &KubemakerRun, reference: Option<(Duration, u64)>) {
    let secs = |d: Option<Duration>| {
        d.map(|d| format!("{:.2} s", d.as_secs_f64()))
            .unwrap_or_else(|| "not reached".into())
    };
    println!();
    println!("operator scale benchmark, {n} RemoteNodes, same run, same cluster");
    println!("{:<58} {:>16}", "measure", "value");
    let mut rows: Vec<(String, String)> = vec![
        (
            "kubectl apply of the List (client side)".into(),
            secs(Some(run.apply)),
        ),
        (
            "kubemaker: first primitive in the CIB".into(),
            secs(run.first_in_cib),
        ),
        (
            format!("kubemaker: all {n} primitives in the CIB"),
            secs(run.all_in_cib),
        ),
        (
            format!("kubemaker: all {n} Configured=True"),
            secs(run.all_configured),
        ),
        (
            format!("kubemaker: all {n} Ready=True (online in Pacemaker)"),
            if reference.is_none() {
                secs(run.all_ready)
            } else {
                "(BENCH_LIVE=1)".into()
            },
        ),
        (
            "kubemaker: CIB transactions (epoch delta)".into(),
            run.epochs.to_string(),
        ),
        (
            "kubemaker: kubemaker_cib_transactions_total".into(),
            format!("{}", run.transactions),
        ),
        (
            "kubemaker: kubemaker_cib_conflicts_total".into(),
            format!("{}", run.conflicts),
        ),
        (
            "kubemaker: all in the CIB, counted from kubectl's exit".into(),
            run.all_in_cib
                .map(|d| format!("{:+.2} s", d.as_secs_f64() - run.apply.as_secs_f64()))
                .unwrap_or_else(|| "not reached".into()),
        ),
        (
            "controller CPU time while configuring".into(),
            secs(Some(run.cpu_configure)),
        ),
        (
            "controller peak RSS (VmHWM) once all were configured".into(),
            format!("{:.1} MiB", mib(run.peak_configure_kib)),
        ),
        (
            "controller RSS 5 s after all were configured (VmRSS)".into(),
            format!("{:.1} MiB", mib(run.end_kib)),
        ),
        (
            "controller peak RSS (VmHWM) including the deletion".into(),
            format!("{:.1} MiB", mib(run.peak_kib)),
        ),
        (
            "controller CPU time while deleting".into(),
            secs(Some(run.cpu_delete)),
        ),
        (
            format!("kubemaker: delete all {n} (objects and CIB entries gone)"),
            secs(run.delete_all),
        ),
    ];
    if let Some((loop_wall, loop_epochs)) = reference {
        rows.push((
            format!("cibadmin --create loop: all {n} in the CIB"),
            secs(Some(loop_wall)),
        ));
        rows.push((
            "cibadmin --create loop: CIB transactions (epoch delta)".into(),
            loop_epochs.to_string(),
        ));
    }
    for (k, v) in &rows {
        println!("{k:<58} {v:>16}");
    }
    let configured_ok = run
        .all_configured
        .is_some_and(|d| d <= Duration::from_secs(30));
    let memory_ok = run.peak_kib < 50 * 1024;
    println!(
        "\ngoal: all configured within 30 s: {}; controller under 50 MiB: {}",
        if configured_ok { "MET" } else { "MISSED" },
        if memory_ok { "MET" } else { "MISSED" }
    );
}

fn run_kubemaker(
    api: &Api,
    cluster: &Cluster,
    ctl: &mut Controller,
    addrs: &[String],
    live: bool,
) -> KubemakerRun {
    let n = addrs.len();
    let poll = |what: &str, timeout: Duration, check: &mut dyn FnMut() -> Result<(), String>| {
        support::poll(timeout, Duration::from_millis(250), check)
            .unwrap_or_else(|last| panic!("timed out after {timeout:?} waiting for {what}: {last}"))
    };
    poll(
        "the controller to lead",
        Duration::from_secs(60),
        &mut || {
            if ctl.has_exited() {
                panic!("the controller exited:\n{}", ctl.log_tail(30));
            }
            match ctl.leader() {
                Some(1.0) => Ok(()),
                other => Err(format!("kubemaker_leader {other:?}")),
            }
        },
    );
    poll(
        "the PacemakerCluster Connected",
        Duration::from_secs(60),
        &mut || match api.try_get("pacemakercluster", None, CLUSTER)? {
            Some(o) if str_at(&o, "/status/connection") == "Connected" => Ok(()),
            Some(o) => Err(operator::describe(&o)),
            None => Err("no PacemakerCluster".into()),
        },
    );
    let _ = cluster;
    let items: Vec<Value> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({
                "apiVersion": "kubemaker.io/v1alpha1",
                "kind": "RemoteNode",
                "metadata": {"name": format!("bn-{i:04}"),
                             "labels": {TEST_LABEL: "true", GROUP_LABEL: "bench"}},
                "spec": spec_json(a, live),
            })
        })
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let m0 = ctl.metrics().expect("/metrics");
    let v0 = operator::cib_version();
    let cpu0 = ctl.cpu_time().unwrap_or_default();
    let (idle_peak, idle_rss) = ctl.memory_kib().unwrap_or_default();
    say(&format!(
        "controller before the apply: VmHWM {:.1} MiB, VmRSS {:.1} MiB",
        mib(idle_peak),
        mib(idle_rss)
    ));
    support::mark_remote_key_in_use();

    say(&format!("applying {n} RemoteNodes"));
    let t0 = Instant::now();
    let mut kubectl = support::spawn_with_input(
        api.command("kubectl").args(["apply", "-f", "-"]),
        list.into_bytes(),
    );
    let mut run = KubemakerRun::default();
    let mut apply_done = None;
    let mut last_k8s = Instant::now() - Duration::from_secs(10);
    let mut configured = 0;
    let mut in_cib = 0;
    let deadline = t0 + LIMIT;
    let done = |r: &KubemakerRun| r.all_configured.is_some() && (!live || r.all_ready.is_some());
    let mut ready = 0;
    let mut last_print = Instant::now();
    while !done(&run) {
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            say(&format!(
                "after {:.0} s: {in_cib}/{n} in the CIB, {configured} Configured, {ready} Ready",
                t0.elapsed().as_secs_f64()
            ));
        }
        assert!(
            Instant::now() < deadline,
            "after {LIMIT:?}: {in_cib} of {n} in the CIB, {configured} Configured, {ready} Ready; controller log:\n{}",
            ctl.log_tail(30)
        );
        if ctl.has_exited() {
            panic!("the controller exited:\n{}", ctl.log_tail(30));
        }
        if apply_done.is_none() && kubectl.try_wait().is_some() {
            let out = kubectl.wait_output(Duration::from_secs(10));
            assert!(
                out.status.success(),
                "kubectl apply failed: {}",
                support::text(&out)
            );
            apply_done = Some(t0.elapsed());
        }
        if run.all_in_cib.is_none() {
            in_cib = count_in_cib("bn-");
            if in_cib > 0 && run.first_in_cib.is_none() {
                run.first_in_cib = Some(t0.elapsed());
            }
            if in_cib == n {
                run.all_in_cib = Some(t0.elapsed());
                say(&format!(
                    "all {n} in the CIB after {:.2} s",
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
        if last_k8s.elapsed() >= Duration::from_secs(1) {
            last_k8s = Instant::now();
            let sel = format!("{GROUP_LABEL}=bench");
            if let Ok(objs) = api.list("remotenodes", &["-l", &sel]) {
                configured = objs
                    .iter()
                    .filter(|o| condition_is(o, "Configured", "True", "Configured"))
                    .count();
                if configured == n && run.all_configured.is_none() {
                    run.all_configured = Some(t0.elapsed());
                }
                ready = objs
                    .iter()
                    .filter(|o| operator::condition(o, "Ready").is_some_and(|(s, _)| s == "True"))
                    .count();
                if live && ready == n && run.all_ready.is_none() {
                    run.all_ready = Some(t0.elapsed());
                    say(&format!(
                        "all {n} Ready=True after {:.2} s",
                        t0.elapsed().as_secs_f64()
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if apply_done.is_none() {
        let out = kubectl.wait_output(Duration::from_secs(120));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            support::text(&out)
        );
        apply_done = Some(t0.elapsed());
    }
    run.apply = apply_done.unwrap_or_default();
    say(&format!(
        "all {n} Configured=True after {:.2} s",
        run.all_configured.unwrap_or_default().as_secs_f64()
    ));
    assert_eq!(count_in_cib("bn-"), n, "every node exactly once in the CIB");
    let m1 = ctl.metrics().expect("/metrics");
    run.epochs = operator::cib_version().1 - v0.1;
    run.transactions =
        m1.sum("kubemaker_cib_transactions_total") - m0.sum("kubemaker_cib_transactions_total");
    run.conflicts =
        m1.sum("kubemaker_cib_conflicts_total") - m0.sum("kubemaker_cib_conflicts_total");
    // Let status updates settle, then read the memory.
    std::thread::sleep(Duration::from_secs(5));
    let (peak, now) = ctl.memory_kib().expect("/proc/<pid>/status");
    run.peak_configure_kib = peak;
    run.peak_kib = peak;
    run.end_kib = now;
    let cpu1 = ctl.cpu_time().unwrap_or_default();
    run.cpu_configure = cpu1.saturating_sub(cpu0);

    say(&format!("deleting the {n} RemoteNodes"));
    let t1 = Instant::now();
    let sel = format!("{GROUP_LABEL}=bench");
    api.kubectl_ok(&["delete", "remotenodes", "-l", &sel, "--wait=false"]);
    let gone = support::poll(Duration::from_secs(900), Duration::from_secs(1), || {
        let left = api.list("remotenodes", &["-l", &sel])?.len();
        let cib = count_in_cib("bn-");
        if left == 0 && cib == 0 {
            Ok(())
        } else {
            Err(format!("{left} objects and {cib} primitives left"))
        }
    });
    match gone {
        Ok(()) => run.delete_all = Some(t1.elapsed()),
        Err(state) => say(&format!("deletion not finished after 900 s: {state}")),
    }
    if let Some((peak, _)) = ctl.memory_kib() {
        run.peak_kib = run.peak_kib.max(peak);
    }
    run.cpu_delete = ctl.cpu_time().unwrap_or_default().saturating_sub(cpu1);
    run
}
