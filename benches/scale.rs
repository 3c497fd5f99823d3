//! Many remote nodes on one real cluster: N network-namespace hosts, each running a daemon with
//! one pinned Dummy, all added with one `apply_nodes` (what `kubemaker cib apply` runs) over the
//! remote CIB port. Once with `kubemaker-remoted` on every host, once with the generation's
//! reference `pacemaker-remoted`, in one run; for each size it prints the time from the apply until
//! every node is online and every Dummy started, the cluster daemons' CPU while the nodes join
//! (and which daemon used most), their CPU and memory at steady state
//! and the daemons' total and per-node RSS, side by side with ratios.
//!
//!     sudo cargo bench --bench scale                      (BENCH_SIZES=50,100,200)
//!     sudo KUBEMAKER_PACEMAKER=3.0.3 cargo bench --bench scale
//!     sudo BENCH_NODE_ACTION_LIMIT=16 cargo bench --bench scale
//!     sudo BENCH_SIZES=400 BENCH_REFERENCE=0 cargo bench --bench scale   (kubemaker-remoted only)
//!
//! Every connection start runs on the cluster node, and pacemaker-controld runs at most
//! `node-action-limit` jobs per node at once (default twice the cores; one when the machine's load
//! makes it throttle), so time-to-online grows linearly with N. `BENCH_NODE_ACTION_LIMIT` sets
//! that cluster property for the run (and deletes it afterwards) to show what raising it buys.
//!
//! The hosts are /24s of `10.250.0.0/15` (tests/support/netns.rs), so one run holds up to 500 nodes
//! (fewer when other tests hold hosts).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kubemaker::cib::client::{CibClient, Transport};
use kubemaker::cib::spec::RemoteNodeSpec;
use kubemaker::cib::{ApplyOptions, CibService, DesiredNode, InvalidNodes};
use support::{Cluster, Daemon, MonView, NetnsHost, cib_port};

/// The cluster daemons whose cost grows with the node count (`comm` is cut at 15 characters).
const CLUSTER_DAEMONS: [&str; 4] = [
    "pacemaker-based",
    "pacemaker-contr",
    "pacemaker-sched",
    "pacemaker-attrd",
];
const STEADY_WINDOW: Duration = Duration::from_secs(30);

fn sizes() -> Vec<usize> {
    std::env::var("BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![50, 100, 200])
}

/// (utime + stime in seconds, RSS in KiB) of a process.
fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = support::proc_stat(pid);
    (
        support::proc_cpu_secs(&stat, 11) + support::proc_cpu_secs(&stat, 12),
        support::rss_kib(pid),
    )
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Pids of the test cluster's own daemons: the children of its pacemakerd, whose pid the cluster
/// script records (other clusters may run on the machine, e.g. another test's in namespaces).
fn cluster_daemon_pids(cluster: &Cluster) -> Vec<u32> {
    let pidfile = cluster.generation().state_dir().join("pacemakerd.pid");
    let pacemakerd = support::recorded_pid(&pidfile)
        .unwrap_or_else(|| panic!("no live pacemakerd pid in {}", pidfile.display()));
    let ppid = |pid: u32| -> u32 {
        support::proc_stat(pid)
            .get(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    };
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect();
    pids.iter()
        .copied()
        .filter(|p| CLUSTER_DAEMONS.contains(&comm(*p).as_str()) && ppid(*p) == pacemakerd)
        .collect()
}

struct Run {
    online: Duration,
    started: Duration,
    transactions: usize,
    /// The cluster daemons' CPU seconds from the apply until every Dummy started, in total and
    /// the daemon that used most (the bottleneck while nodes join).
    join_cpu: f64,
    join_top: (String, f64),
    cluster_cpu: f64,
    cluster_rss_kib: u64,
    /// The machine's 1-minute load average when every Dummy had started: pacemaker-controld
    /// throttles its jobs when the load per core passes `load-threshold`.
    load: f64,
    daemons_rss_kib: u64,
}

fn counts(v: &MonView, names: &[String]) -> (usize, usize) {
    let online = names.iter().filter(|n| v.remote_node_up(n)).count();
    let started = names
        .iter()
        .filter(|n| {
            v.resource(&format!("{n}-dummy"))
                .is_some_and(|r| r.role == "Started" && r.nodes.iter().any(|x| x == *n))
        })
        .count();
    (online, started)
}

/// What every run shares: the cluster, its remote CIB port, and the hosts' key and log folder.
struct Bench {
    cluster: Cluster,
    remote: cib_port::RemoteCib,
    rt: tokio::runtime::Runtime,
    key_env: String,
    dir: PathBuf,
}

fn run_once(bench: &Bench, label: &str, reference: bool, n: usize) -> Run {
    let Bench {
        cluster,
        remote,
        rt,
        key_env,
        dir,
    } = bench;
    let (key_env, dir) = (key_env.as_str(), dir.as_path());
    let generation = cluster.generation();
    eprintln!("[scale] {label}, {n} nodes: creating the hosts and starting the daemons");
    let mut hosts = Vec::with_capacity(n);
    let mut daemons: Vec<Daemon> = Vec::with_capacity(n);
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_kubemaker-remoted"));
    for i in 0..n {
        let host = NetnsHost::create(&format!("sc{i}"));
        let log = dir.join(format!("sc{i}.log"));
        let mut cmd = if reference {
            generation.reference_remoted_command(&host, &[dir])
        } else {
            host.command(&ours)
        };
        cmd.env("PCMK_authkey_location", key_env)
            .env("PCMK_logfile", &log);
        daemons.push(Daemon::spawn(cmd, &log).unwrap_or_else(|e| panic!("start {label}: {e}")));
        hosts.push(host);
    }
    let names: Vec<String> = (0..n).map(|i| format!("sn{i}")).collect();
    // One Dummy per node, allowed only there: it starts when its node comes online.
    let dummies: Vec<String> = names.iter().map(|n| format!("{n}-dummy")).collect();
    let placed: Vec<(&str, &str)> = dummies
        .iter()
        .zip(&names)
        .map(|(d, n)| (d.as_str(), n.as_str()))
        .collect();
    support::create_dummies_on(cluster, &placed, "10s");
    let desired: Vec<DesiredNode> = names
        .iter()
        .zip(&hosts)
        .map(|(name, host)| {
            let spec = RemoteNodeSpec {
                address: Some(host.addr()),
                ..Default::default()
            };
            DesiredNode::from_spec(name, &spec).expect("valid spec")
        })
        .collect();
    let join_pids = cluster_daemon_pids(cluster);
    let join_before: Vec<f64> = join_pids.iter().map(|p| cpu_and_rss(*p).0).collect();
    let t0 = Instant::now();
    let report = rt.block_on(async {
        let c = CibClient::connect(remote.config(Transport::Tls))
            .await
            .expect("connect to the remote CIB port");
        let r = CibService::new(&c)
            .apply_nodes(
                &desired,
                &ApplyOptions {
                    batch_size: 250,
                    dry_run: false,
                },
                InvalidNodes::RefuseAll,
            )
            .await
            .expect("apply");
        c.close().await;
        r
    });
    let (mut online, mut started) = (None, None);
    let mut last_print = Instant::now();
    let limit = Duration::from_secs(120 + 6 * n as u64);
    while started.is_none() {
        assert!(
            t0.elapsed() < limit,
            "{label}: not all {n} nodes online and Dummies started within {limit:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
        let (on, st) = counts(&cluster.mon(), &names);
        if on == n && online.is_none() {
            online = Some(t0.elapsed());
        }
        if st == n {
            started = Some(t0.elapsed());
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "[scale] {label}: {on}/{n} online, {st}/{n} Dummies started after {:.0} s",
                t0.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
    }
    let online = online.unwrap_or_else(|| started.unwrap_or_default());
    let started = started.unwrap_or_default();
    let join_per_daemon: Vec<(String, f64)> = join_pids
        .iter()
        .zip(&join_before)
        .map(|(p, b)| (comm(*p), cpu_and_rss(*p).0 - b))
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN);
    let join_cpu = join_per_daemon.iter().map(|d| d.1).sum();
    let join_top = join_per_daemon
        .iter()
        .cloned()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_default();
    eprintln!("[scale] {label}: cluster daemons' CPU s while joining: {join_per_daemon:?}");
    eprintln!(
        "[scale] {label}: all {n} online after {:.1} s, Dummies started after {:.1} s; steady state for {} s",
        online.as_secs_f64(),
        started.as_secs_f64(),
        STEADY_WINDOW.as_secs()
    );
    let pids = cluster_daemon_pids(cluster);
    let before: Vec<(f64, u64)> = pids.iter().map(|p| cpu_and_rss(*p)).collect();
    std::thread::sleep(STEADY_WINDOW);
    let after: Vec<(f64, u64)> = pids.iter().map(|p| cpu_and_rss(*p)).collect();
    let cluster_cpu = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).sum();
    let cluster_rss_kib = after.iter().map(|a| a.1).sum();
    let daemons_rss_kib = daemons.iter().map(|d| cpu_and_rss(d.pid()).1).sum();
    eprintln!("[scale] {label}: taking the {n} nodes down");
    cluster.reset();
    drop(daemons);
    drop(hosts);
    Run {
        online,
        started,
        transactions: report.transactions,
        join_cpu,
        join_top,
        cluster_cpu,
        cluster_rss_kib,
        load,
        daemons_rss_kib,
    }
}

fn main() {
    // `cargo test --all-targets` builds and runs bench targets too; this one needs the real
    // cluster for many minutes, so it only runs under `cargo bench` (which passes --bench).
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale benchmark: run it with `cargo bench --bench scale`");
        return;
    }
    if !support::require_tools(&["crm_mon", "cibadmin", "ip", "corosync", "pacemakerd"])
        || !support::require_root()
    {
        std::process::exit(1);
    }
    let cluster = Cluster::acquire();
    let key = support::test_authkey();
    support::install_cluster_authkey(&key);
    let remote = cib_port::enable_remote_cib(&cluster);
    cluster.reset();
    let dir = std::env::temp_dir().join("km-bench-scale");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let key_path = dir.join("authkey");
    std::fs::write(&key_path, &key).expect("write key");
    let key_env = key_path.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bench = Bench {
        cluster,
        remote,
        rt,
        key_env,
        dir,
    };
    let cluster = &bench.cluster;
    let action_limit = std::env::var("BENCH_NODE_ACTION_LIMIT").ok();
    if let Some(limit) = &action_limit {
        let out = cluster.set_property("node-action-limit", Some(limit));
        assert!(out.status.success(), "set node-action-limit={limit}");
    }
    let reference_label = format!("pacemaker-remoted {}", cluster.generation().version());
    println!(
        "\n# N remote nodes, one Dummy each, on a Pacemaker {} cluster ({} cores, node-action-limit {}): kubemaker-remoted vs {reference_label}\n",
        cluster.generation().version(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        action_limit.as_deref().unwrap_or("default")
    );
    println!(
        "| nodes | daemon | all online s | all Dummies started s | CIB transactions | cluster daemons CPU s while joining (most: daemon) | cluster daemons CPU s / {}s steady | cluster daemons RSS MiB | daemons' RSS MiB total / per node | load avg |",
        STEADY_WINDOW.as_secs()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    // BENCH_REFERENCE=0: kubemaker-remoted only (the largest sizes, where a run takes long).
    let with_reference = std::env::var("BENCH_REFERENCE").map_or(true, |v| v != "0");
    for n in sizes() {
        let ours = run_once(&bench, "kubemaker-remoted", false, n);
        let theirs = with_reference.then(|| run_once(&bench, &reference_label, true, n));
        let mut rows = vec![("kubemaker-remoted", &ours)];
        rows.extend(theirs.as_ref().map(|t| (reference_label.as_str(), t)));
        for (label, r) in rows {
            println!(
                "| {n} | {label} | {:.1} | {:.1} | {} | {:.1} ({:.1}: {}) | {:.2} | {:.1} | {:.1} / {:.2} | {:.1} |",
                r.online.as_secs_f64(),
                r.started.as_secs_f64(),
                r.transactions,
                r.join_cpu,
                r.join_top.1,
                r.join_top.0,
                r.cluster_cpu,
                r.cluster_rss_kib as f64 / 1024.0,
                r.daemons_rss_kib as f64 / 1024.0,
                r.daemons_rss_kib as f64 / 1024.0 / n as f64,
                r.load,
            );
        }
        let Some(theirs) = theirs else { continue };
        let ratio = |a: f64, b: f64| a / b.max(1e-9);
        ratios.push(format!(
            "ratio kubemaker/reference at {n} nodes: online {:.2}, started {:.2}, cluster CPU while joining {:.2}, steady cluster CPU {:.2}, daemons' RSS {:.2}",
            ratio(ours.online.as_secs_f64(), theirs.online.as_secs_f64()),
            ratio(ours.started.as_secs_f64(), theirs.started.as_secs_f64()),
            ratio(ours.join_cpu, theirs.join_cpu),
            ratio(ours.cluster_cpu, theirs.cluster_cpu),
            ratio(ours.daemons_rss_kib as f64, theirs.daemons_rss_kib as f64),
        ));
    }
    println!();
    for r in ratios {
        println!("{r}");
    }
    if action_limit.is_some() {
        cluster.set_property("node-action-limit", None);
    }
    drop(bench);
}
