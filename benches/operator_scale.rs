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
//!     sudo BENCH_VIA=both cargo bench --bench operator_scale   (BENCH_NODES=100)
//!
//! `BENCH_VIA` chooses how the controller reaches the CIB (issue #14): `port` (the default, as
//! above) is the remote CIB port (a PacemakerCluster with `endpoints`); `gateway` is the CIB
//! gateway of a kubemaker node (`via: remoteNodes`); `both` runs the port and then the gateway in
//! the same run, on the same cluster, with the same nodes (default 100 for `gateway` and `both`),
//! a fresh controller process for each (so CPU time and peak RSS are each run's own), and prints
//! both columns and the ratio gateway/port. For the gateway, one real `kubemaker-remoted` with
//! `KUBEMAKER_CIB_GATEWAY_PORT=3122` runs in a test network namespace with the cluster's key,
//! joined to the cluster by hand (the bootstrap) before the first run, so the cluster state is the
//! same in both runs. The test API server has no kubelet or scheduler, so the remoted pod the
//! controller finds the gateway by is a stand-in object: a Pod labelled
//! `app.kubernetes.io/component=remoted` whose status (Ready, `podIP` = the daemon's address) the
//! bench writes through the status subresource. The pod is a stand-in; the daemon, its gateway
//! and the cluster connection it carries the controller's requests over are real. Between the
//! runs the first controller deletes its RemoteNodes (measured, as always) and stops; the
//! PacemakerCluster is replaced. The gateway primitive, the pod and the daemon are removed at the
//! end. The `cibadmin` loop runs once, after the controller runs.
//!
//!     sudo BENCH_LIVE=1 cargo bench --bench operator_scale   (BENCH_NODES=200)
//!
//! With `BENCH_LIVE=1` every RemoteNode is a real remote node instead: a network-namespace host
//! running `kubemaker-remoted` with the cluster's key (the authkey Secret is created with that key
//! before the controller starts, so the cluster's key does not change), the spec only a cluster and
//! an address. It then also measures the time until every RemoteNode is `Ready=True` (online in
//! Pacemaker), and skips the `cibadmin` loop. Only with `BENCH_VIA=port`.

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
const AUTHKEY_SECRET: &str = "kubemaker-authkey";
/// The stand-in remoted pod and the gateway node's name (its primitive, the pod's nodeName).
const GATEWAY_POD: &str = "kubemaker-bench-remoted-gw";
const GATEWAY_NODE: &str = "bench-gw";
const GATEWAY_PORT: u16 = 3122;
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

/// How the controller reaches the CIB in one run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    /// The remote CIB port (`endpoints`).
    Port,
    /// The CIB gateway of a kubemaker node (`via: remoteNodes`).
    Gateway,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Port => "port",
            Via::Gateway => "gateway",
        }
    }
}

/// `BENCH_VIA`: port (default), gateway or both.
fn vias() -> Vec<Via> {
    match std::env::var("BENCH_VIA").as_deref() {
        Err(_) | Ok("") | Ok("port") => vec![Via::Port],
        Ok("gateway") => vec![Via::Gateway],
        Ok("both") => vec![Via::Port, Via::Gateway],
        Ok(other) => {
            eprintln!("BENCH_VIA={other:?}: use port, gateway or both");
            std::process::exit(2);
        }
    }
}

/// The PacemakerCluster's spec for `via`.
fn cluster_spec(via: Via) -> Value {
    match via {
        Via::Port => json!({
            "endpoints": [{"host": "127.0.0.1", "port": cib_port::TLS_PORT}],
            "tlsMode": "anonymous",
            "credentialsSecretRef": {"name": CREDENTIALS},
        }),
        Via::Gateway => json!({"via": "remoteNodes", "authkeySecretName": AUTHKEY_SECRET}),
    }
}

/// The stand-in remoted pod: deleted at once (no kubelet would ever confirm a graceful deletion).
fn delete_gateway_pod(api: &Api) {
    let _ = api.kubectl(&[
        "delete",
        "pod",
        GATEWAY_POD,
        "-n",
        NS,
        "--ignore-not-found",
        "--grace-period=0",
        "--force",
    ]);
}

/// The gateway daemon, joined to the cluster by hand as the bootstrap does, and the stand-in
/// remoted pod naming its address (Ready, through the status subresource).
fn start_gateway(api: &Api, cluster: &Cluster, key: &[u8]) -> RemoteHost {
    say("starting the gateway daemon and joining it to the cluster (the bootstrap)");
    let host = RemoteHost::in_netns("bench-gw")
        .with_key(key)
        .with_env(&[("KUBEMAKER_CIB_GATEWAY_PORT", &GATEWAY_PORT.to_string())])
        .started();
    let addr = host.addr();
    cluster.create_resource_xml(&format!(
        r#"<primitive class="ocf" id="{GATEWAY_NODE}" provider="pacemaker" type="remote"><instance_attributes id="{GATEWAY_NODE}-instance_attributes"><nvpair id="{GATEWAY_NODE}-instance_attributes-server" name="server" value="{addr}"/></instance_attributes><operations><op id="{GATEWAY_NODE}-monitor-interval-10s" interval="10s" name="monitor" timeout="15s"/></operations></primitive>"#
    ));
    cluster.wait_until("the gateway node online", Duration::from_secs(90), |v| {
        v.remote_node_up(GATEWAY_NODE)
    });
    // No controller-manager creates the namespace's default ServiceAccount, which the
    // ServiceAccount admission plugin looks up for a pod.
    let _ = api.kubectl(&["create", "serviceaccount", "default", "-n", NS]);
    api.create(&json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": GATEWAY_POD, "namespace": NS, "labels": {
            "app.kubernetes.io/component": "remoted", TEST_LABEL: "true"}},
        "spec": {
            "nodeName": GATEWAY_NODE,
            "automountServiceAccountToken": false,
            "containers": [{"name": "remoted", "image": "kubemaker:bench-stand-in"}],
        },
    }));
    let status = json!({"status": {
        "phase": "Running",
        "podIP": addr,
        "podIPs": [{"ip": addr}],
        "hostIP": addr,
        "conditions": [{"type": "Ready", "status": "True"}],
    }})
    .to_string();
    api.kubectl_ok(&[
        "patch",
        "pod",
        GATEWAY_POD,
        "-n",
        NS,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    say(&format!(
        "gateway {addr}:{GATEWAY_PORT} (log {})",
        host.log_path().display()
    ));
    host
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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
    let vias = vias();
    if live && vias != [Via::Port] {
        eprintln!("BENCH_LIVE=1 runs only with BENCH_VIA=port");
        std::process::exit(2);
    }
    let gateway = vias.contains(&Via::Gateway);
    let default_n = if live {
        200
    } else if gateway {
        100
    } else {
        500
    };
    let n = env_num("BENCH_NODES", default_n).max(1);
    let api = match Api::ensure() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("operator_scale needs the test API server: {e}");
            std::process::exit(1);
        }
    };
    let cluster = Cluster::acquire();
    let remote = vias
        .contains(&Via::Port)
        .then(|| cib_port::enable_remote_cib(&cluster));
    api.wait_until_unshared(NS, &[CLUSTER], Duration::from_secs(600));
    // A pod outlives its namespace here (nothing deletes a namespace's contents but us).
    delete_gateway_pod(&api);
    api.remove_leftovers(NS, &[CLUSTER]);
    let dir = PathBuf::from(operator::STATE_DIR).join("bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    api.install_chart(NS);
    let kubeconfig = dir.join("controller.kubeconfig");
    api.sa_kubeconfig(NS, operator::CONTROLLER_SA, &kubeconfig);
    if let Some(remote) = &remote {
        api.create_credentials_secret(NS, CREDENTIALS, remote.password.expose());
    }
    let key = (live || gateway).then(|| {
        // The cluster's key, in the Secret the controller would otherwise create.
        let key = support::test_authkey();
        support::install_cluster_authkey(&key);
        api.apply(&operator::secret(
            NS,
            AUTHKEY_SECRET,
            "Opaque",
            &[("authkey", &key)],
        ));
        key
    });
    let gateway_host = key
        .as_ref()
        .filter(|_| gateway)
        .map(|key| start_gateway(&api, &cluster, key));
    let hosts = match &key {
        Some(key) if live => live_hosts(n, key),
        _ => hosts_for(n),
    };
    say(&format!(
        "{n} addresses on {} test hosts",
        hosts.hosts.len() + hosts.live.len()
    ));

    let mut runs: Vec<(Via, KubemakerRun)> = Vec::new();
    for (i, &via) in vias.iter().enumerate() {
        if i > 0 {
            // The previous controller removed its RemoteNodes and stopped; replace the cluster.
            let left = count_in_cib("bn-");
            if left > 0 {
                eprintln!(
                    "{left} primitives of the previous run are still in the CIB; not comparing"
                );
                break;
            }
            api.strip_finalizers_and_delete("pacemakerclusters.kubemaker.io", &[CLUSTER.into()]);
        }
        say(&format!(
            "run via the {}",
            match via {
                Via::Port => "remote CIB port (endpoints)",
                Via::Gateway => "CIB gateway (via: remoteNodes)",
            }
        ));
        api.apply(&json!({
            "apiVersion": "kubemaker.io/v1alpha1",
            "kind": "PacemakerCluster",
            "metadata": {"name": CLUSTER, "labels": {TEST_LABEL: "true"}},
            "spec": cluster_spec(via),
        }));
        let mut ctl = Controller::spawn(
            Path::new(env!("CARGO_BIN_EXE_kubemaker")),
            NS,
            &format!("bench-{}", via.name()),
            &kubeconfig,
            &[],
            &dir.join("logs"),
            "info",
        );
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_kubemaker(&api, &cluster, &mut ctl, &hosts.addrs, live)
        }));
        ctl.terminate();
        if ctl.wait_exit(Duration::from_secs(10)).is_none() {
            ctl.kill9();
        }
        match result {
            Ok(r) => runs.push((via, r)),
            Err(e) => {
                // Whatever happened: remove the objects, the namespace and the gateway.
                eprintln!(
                    "--- controller log ({}, last lines) ---\n{}",
                    ctl.log_path.display(),
                    ctl.log_tail(40)
                );
                if let Some(h) = &gateway_host {
                    eprintln!(
                        "--- gateway daemon log ({}, last lines) ---\n{}",
                        h.log_path().display(),
                        tail(&h.log_path(), 40)
                    );
                }
                delete_gateway_pod(&api);
                api.remove_leftovers(NS, &[CLUSTER]);
                cluster.reset();
                drop(gateway_host);
                api.stop_if_started();
                std::panic::resume_unwind(e);
            }
        }
    }
    delete_gateway_pod(&api);
    api.remove_leftovers(NS, &[CLUSTER]);
    // Removes the gateway's primitive too; then its daemon can stop.
    cluster.reset();
    drop(gateway_host);

    drop(hosts.live);
    if live {
        api.stop_if_started();
        print_rows(n, &runs, None);
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

    print_rows(n, &runs, Some((loop_wall, loop_epochs)));
}

/// One measure of a run: label, value (None: not reached) and how to show it.
struct Measure {
    label: String,
    value: Option<f64>,
    unit: &'static str,
}

fn measures(n: usize, run: &KubemakerRun, live: bool) -> Vec<Measure> {
    let m = |label: String, value: Option<f64>, unit| Measure { label, value, unit };
    let s = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let mut v = vec![
        m(
            "kubectl apply of the List (client side)".into(),
            s(Some(run.apply)),
            "s",
        ),
        m(
            "first primitive in the CIB".into(),
            s(run.first_in_cib),
            "s",
        ),
        m(
            format!("all {n} primitives in the CIB"),
            s(run.all_in_cib),
            "s",
        ),
        m(
            format!("all {n} Configured=True"),
            s(run.all_configured),
            "s",
        ),
    ];
    if live {
        v.push(m(
            format!("all {n} Ready=True (online in Pacemaker)"),
            s(run.all_ready),
            "s",
        ));
    }
    v.extend([
        m(
            "CIB transactions (epoch delta)".into(),
            Some(run.epochs as f64),
            "",
        ),
        m(
            "kubemaker_cib_transactions_total".into(),
            Some(run.transactions),
            "",
        ),
        m(
            "kubemaker_cib_conflicts_total".into(),
            Some(run.conflicts),
            "",
        ),
        m(
            "all in the CIB, counted from kubectl's exit".into(),
            run.all_in_cib
                .map(|d| d.as_secs_f64() - run.apply.as_secs_f64()),
            "s+",
        ),
        m(
            "controller CPU time while configuring".into(),
            s(Some(run.cpu_configure)),
            "s",
        ),
        m(
            "controller peak RSS (VmHWM) once all were configured".into(),
            Some(mib(run.peak_configure_kib)),
            "MiB",
        ),
        m(
            "controller RSS 5 s after all were configured (VmRSS)".into(),
            Some(mib(run.end_kib)),
            "MiB",
        ),
        m(
            "controller peak RSS (VmHWM) including the deletion".into(),
            Some(mib(run.peak_kib)),
            "MiB",
        ),
        m(
            "controller CPU time while deleting".into(),
            s(Some(run.cpu_delete)),
            "s",
        ),
        m(
            format!("delete all {n} (objects and CIB entries gone)"),
            s(run.delete_all),
            "s",
        ),
    ]);
    v
}

fn show(value: Option<f64>, unit: &str) -> String {
    match (value, unit) {
        (None, _) => "not reached".into(),
        (Some(v), "s") => format!("{v:.2} s"),
        (Some(v), "s+") => format!("{v:+.2} s"),
        (Some(v), "MiB") => format!("{v:.1} MiB"),
        (Some(v), _) => format!("{v}"),
    }
}

/// The benchmark's table: one column per run, and the ratio gateway/port when both ran;
/// `reference` is the `cibadmin` loop's wall time and epoch delta.
fn print_rows(n: usize, runs: &[(Via, KubemakerRun)], reference: Option<(Duration, u64)>) {
    let live = reference.is_none();
    println!();
    println!("operator scale benchmark, {n} RemoteNodes, same run, same cluster");
    let cols: Vec<Vec<Measure>> = runs.iter().map(|(_, r)| measures(n, r, live)).collect();
    let Some(first) = cols.first() else {
        println!("(no run finished)");
        return;
    };
    let mut header = format!("{:<58}", "measure (kubemaker controller)");
    for (via, _) in runs {
        header.push_str(&format!(" {:>16}", format!("via {}", via.name())));
    }
    let ratio = runs.len() == 2;
    if ratio {
        header.push_str(&format!(" {:>14}", "gateway/port"));
    }
    println!("{header}");
    for (i, row) in first.iter().enumerate() {
        let mut line = format!("{:<58}", row.label);
        for col in &cols {
            line.push_str(&format!(" {:>16}", show(col[i].value, col[i].unit)));
        }
        if ratio {
            let r = match (cols[0][i].value, cols[1][i].value) {
                (Some(p), Some(g)) if p != 0.0 && row.unit != "s+" => format!("{:.2}", g / p),
                _ => "-".into(),
            };
            line.push_str(&format!(" {r:>14}"));
        }
        println!("{line}");
    }
    if !live {
        let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
        if let Some((loop_wall, loop_epochs)) = reference {
            println!(
                "{:<58} {:>16}",
                format!("cibadmin --create loop: all {n} in the CIB"),
                secs(loop_wall)
            );
            println!(
                "{:<58} {:>16}",
                "cibadmin --create loop: CIB transactions (epoch delta)", loop_epochs
            );
        }
    }
    for (via, run) in runs {
        let configured_ok = run
            .all_configured
            .is_some_and(|d| d <= Duration::from_secs(30));
        let memory_ok = run.peak_kib < 50 * 1024;
        println!(
            "\ngoal (via {}): all configured within 30 s: {}; controller under 50 MiB: {}",
            via.name(),
            if configured_ok { "MET" } else { "MISSED" },
            if memory_ok { "MET" } else { "MISSED" }
        );
    }
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
