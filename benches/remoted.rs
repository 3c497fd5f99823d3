//! kubemaker remoted side by side with the reference pacemaker-remoted of the Pacemaker generation
//! under test (Debian 12's 2.1.5, or 3.0.0/3.0.3 with `KUBEMAKER_PACEMAKER`), in one run on the
//! same real cluster: resident memory and CPU time over 60 s of recurring monitors with 10, 50 and
//! 200 Dummy resources per node, then exec-to-notify latency for a no-op agent. After the last
//! window it breaks each daemon's resident pages down per mapping (`/proc/PID/smaps`): its own
//! executable, the libraries both daemons map, the libraries only one maps, and anonymous memory.
//!
//!     sudo cargo bench --bench remoted            (BENCH_WINDOW_SECS=60, BENCH_LATENCY_OPS=300,
//!                                                  BENCH_DUMMIES=10,50,200)
//!     sudo KUBEMAKER_PACEMAKER=3.0.3 cargo bench --bench remoted

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kubemaker::remoted::client::{LrmdClient, exec_command, rsc};
use kubemaker::wire::Element;
use support::{Cluster, Daemon, NetnsHost};

struct Contender<'a> {
    label: &'a str,
    node: &'static str,
    host: NetnsHost,
    daemon: Daemon,
    /// When its connection resource was created (the join time counts from here).
    created: Instant,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One sample of a process: CPU seconds of the daemon itself and of its reaped children (the
/// agents), and memory in KiB: resident (RSS), proportional (PSS: shared library pages divided
/// among the processes that map them) and anonymous (heap, stacks: what the daemon itself holds).
struct Sample {
    cpu: f64,
    agents_cpu: f64,
    rss: u64,
    pss: u64,
    anon: u64,
}

fn sample(pid: u32) -> Sample {
    let stat = support::proc_stat(pid);
    let ticks = |i: usize| support::proc_cpu_secs(&stat, i);
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kib = |key: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Sample {
        cpu: ticks(11) + ticks(12),
        agents_cpu: ticks(13) + ticks(14),
        rss: kib("Rss:"),
        pss: kib("Pss:"),
        anon: kib("Anonymous:"),
    }
}

/// Resident KiB per mapping of a process: file mappings by file name, the executable as
/// "(executable)", anonymous ones as "[heap]", "[stack]" or "[anon]".
fn resident_by_mapping(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // "start-end perms offset dev inode [path]"
            let path = fields.nth(4).unwrap_or_default();
            current = if path.is_empty() {
                "[anon]".to_string()
            } else if Path::new(path) == exe {
                "(executable)".to_string()
            } else if path.starts_with('[') {
                path.to_string()
            } else {
                Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *out.entry(current.clone()).or_insert(0) += kib;
        }
    }
    out.retain(|_, kib| *kib > 0);
    out
}

/// Which mapping names a row of the breakdown counts.
type MappingFilter<'a> = &'a dyn Fn(&str) -> bool;

/// Where each daemon's resident pages are, side by side: its own executable, the libraries both
/// map (libc, GnuTLS and its chain, libqb and its chain: the same pages for both), the libraries
/// only one of them maps, and anonymous memory.
fn print_breakdown(contenders: &[Contender]) {
    let maps: Vec<_> = contenders
        .iter()
        .map(|c| resident_by_mapping(c.daemon.pid()))
        .collect();
    let (ours, reference) = (&maps[0], &maps[1]);
    let anon = |n: &str| n.starts_with('[');
    let group = |m: &std::collections::BTreeMap<String, u64>, f: &dyn Fn(&str) -> bool| -> u64 {
        m.iter().filter(|(n, _)| f(n)).map(|(_, k)| k).sum()
    };
    let shared = |n: &str| !anon(n) && ours.contains_key(n) && reference.contains_key(n);
    let only = |n: &str| !anon(n) && n != "(executable)" && !shared(n);
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "
| resident MiB per mapping | {} | {} |
|---|---|---|",
        contenders[0].label, contenders[1].label
    );
    let rows: [(&str, MappingFilter); 4] = [
        ("own executable", &|n: &str| n == "(executable)"),
        ("libraries both map", &shared),
        ("libraries only this daemon maps", &only),
        ("anonymous (heap, stacks)", &anon),
    ];
    for (name, f) in rows {
        println!(
            "| {name} | {:.2} | {:.2} |",
            mib(group(ours, f)),
            mib(group(reference, f))
        );
    }
    for (c, m) in contenders.iter().zip(&maps) {
        let mut top: Vec<_> = m.iter().filter(|(n, _)| only(n)).collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        let list: Vec<String> = top
            .iter()
            .take(8)
            .map(|(n, k)| format!("{n} {:.2}", mib(**k)))
            .collect();
        println!("{} only: {}", c.label, list.join(", "));
    }
    let mut both: Vec<_> = ours.iter().filter(|(n, _)| shared(n)).collect();
    both.sort_by(|a, b| b.1.cmp(a.1));
    let list: Vec<String> = both
        .iter()
        .take(8)
        .map(|(n, k)| format!("{n} {:.2}/{:.2}", mib(**k), mib(reference[n.as_str()])))
        .collect();
    println!("both (ours/reference): {}", list.join(", "));
}

fn connection_xml(id: &str, addr: &str) -> String {
    format!(
        r#"<primitive class="ocf" id="{id}" provider="pacemaker" type="remote"><instance_attributes id="{id}-instance_attributes"><nvpair id="{id}-instance_attributes-server" name="server" value="{addr}"/></instance_attributes><operations><op id="{id}-monitor-interval-10s" interval="10s" name="monitor" timeout="30s"/></operations></primitive>"#
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo test --all-targets` builds and runs bench targets too; the benchmark itself takes
    // minutes of a real cluster, so it only runs under `cargo bench` (which passes --bench).
    if !std::env::args().any(|a| a == "--bench") {
        println!("remoted benchmark: run it with `cargo bench --bench remoted`");
        return;
    }
    if !support::require_tools(&["crm_mon", "cibadmin", "ip", "corosync", "pacemakerd"]) {
        std::process::exit(1);
    }
    let reference = support::reference_remoted();
    assert!(
        reference.exists(),
        "{} missing: run scripts/install-test-deps.sh",
        reference.display()
    );
    let window = Duration::from_secs(env_num("BENCH_WINDOW_SECS", 60));
    let ops = env_num("BENCH_LATENCY_OPS", 300) as usize;
    // BENCH_DUMMIES=10 for a quick run (e.g. only the latency of another generation).
    let counts: Vec<usize> = std::env::var("BENCH_DUMMIES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![10, 50, 200]);

    let cluster = Cluster::acquire();
    let key = support::test_authkey();
    support::install_cluster_authkey(&key);
    let dir = std::env::temp_dir().join("km-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = dir.join("authkey");
    std::fs::write(&key_path, &key).unwrap();
    let key_env = key_path.display().to_string();

    let ours = PathBuf::from(env!("CARGO_BIN_EXE_kubemaker-remoted"));
    let generation = support::Generation::current();
    let reference_label = format!("pacemaker-remoted {}", generation.version());
    let mut contenders = Vec::new();
    for (label, node, is_reference) in [
        ("kubemaker-remoted", "bench-km", false),
        (reference_label.as_str(), "bench-ref", true),
    ] {
        let host = NetnsHost::create(node);
        let log = dir.join(format!("{node}.log"));
        // The reference of a 3.x generation runs chrooted in its root, which sees `dir` bound.
        let mut cmd = if is_reference {
            generation.reference_remoted_command(&host, &[&dir])
        } else {
            host.command(&ours)
        };
        cmd.env("PCMK_authkey_location", &key_env)
            .env("PCMK_logfile", &log);
        let mut daemon =
            Daemon::spawn(cmd, &log).unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            daemon.is_running(),
            "{label} did not start; see {}",
            log.display()
        );
        cluster.create_resource_xml(&connection_xml(node, &host.addr()));
        contenders.push(Contender {
            label,
            node,
            host,
            daemon,
            created: Instant::now(),
        });
    }
    // Join time: from the connection resource's creation until crm_mon shows the node online
    // (crm_mon polled every 0.5 s).
    let joined: Vec<std::cell::Cell<Option<Duration>>> =
        contenders.iter().map(|_| Default::default()).collect();
    cluster.wait_until("both nodes online", Duration::from_secs(120), |v| {
        for (c, seen) in contenders.iter().zip(&joined) {
            if seen.get().is_none() && v.remote_node_up(c.node) {
                seen.set(Some(c.created.elapsed()));
            }
        }
        joined.iter().all(|s| s.get().is_some())
    });
    println!("\n# kubemaker remoted vs {reference_label} (same cluster, same run)\n");
    for (c, seen) in contenders.iter().zip(&joined) {
        println!(
            "{} online {:.1} s after its connection resource was created",
            c.label,
            seen.get().unwrap_or_default().as_secs_f64()
        );
    }
    println!();
    println!(
        "| Dummies/node | daemon | RSS MiB | PSS MiB | anon MiB | CPU s (daemon) / {}s | CPU s (agents) |",
        window.as_secs()
    );
    println!("|---|---|---|---|---|---|---|");
    let mut have = 0;
    let mut ratios = Vec::new();
    for n in counts {
        let t0 = Instant::now();
        for c in &contenders {
            support::create_pinned_dummies(
                &cluster,
                &format!("{}-d", c.node),
                have..n,
                c.node,
                "10s",
            );
        }
        for c in &contenders {
            let all: Vec<String> = (0..n).map(|i| format!("{}-d{i}", c.node)).collect();
            cluster.wait_until(
                &format!("{n} Dummies started on {}", c.node),
                Duration::from_secs(600),
                |v| support::all_started_on(v, &all, c.node),
            );
        }
        let started = t0.elapsed();
        have = n;
        std::thread::sleep(Duration::from_secs(5));
        let before: Vec<_> = contenders.iter().map(|c| sample(c.daemon.pid())).collect();
        std::thread::sleep(window);
        let after: Vec<_> = contenders.iter().map(|c| sample(c.daemon.pid())).collect();
        let mut row = Vec::new();
        for (i, c) in contenders.iter().enumerate() {
            let (b, a) = (&before[i], &after[i]);
            let mib = |k: u64| k as f64 / 1024.0;
            let (cpu, agents) = (a.cpu - b.cpu, a.agents_cpu - b.agents_cpu);
            println!(
                "| {n} | {} | {:.1} | {:.1} | {:.1} | {cpu:.2} | {agents:.2} |",
                c.label,
                mib(a.rss),
                mib(a.pss),
                mib(a.anon)
            );
            row.push([a.rss as f64, a.pss as f64, a.anon as f64, cpu]);
        }
        println!(
            "(all {n} per node started {:.1} s after creation)\n",
            started.as_secs_f64()
        );
        let r = |i: usize| row[0][i] / row[1][i].max(1e-9);
        ratios.push((n, r(0), r(1), r(2), r(3)));
    }
    print_breakdown(&contenders);
    println!();
    for (n, rss, pss, anon, cpu) in &ratios {
        println!(
            "ratio kubemaker/reference at {n} Dummies: RSS {rss:.2}, PSS {pss:.2}, anon {anon:.2}, daemon CPU {cpu:.2}"
        );
    }

    // Latency needs a client of our own; a second client would make the cluster drop its
    // connection (lrmd_rsc_new_client), so detach the cluster first.
    // Through the cluster's own tools: a 3.x cluster runs in its root, where the host's 2.1.5
    // crm_resource cannot go.
    for c in &contenders {
        cluster.set_target_role(c.node, "Stopped");
    }
    for c in &contenders {
        cluster.wait_until(
            &format!("{} disconnected", c.node),
            Duration::from_secs(300),
            |v| !v.remote_node_up(c.node),
        );
    }
    // The no-op agent where each daemon looks: ours on the host, a 3.x reference in the root it
    // runs chrooted in (removed again below).
    let noop_dirs: Vec<PathBuf> = {
        let host = PathBuf::from("/usr/lib/ocf/resource.d/kubemaker-bench");
        match generation.root() {
            None => vec![host],
            Some(root) => {
                let reference = root.join(host.strip_prefix("/").unwrap_or(&host));
                vec![host, reference]
            }
        }
    };
    let mut installed_noop = Vec::new();
    for dir in &noop_dirs {
        if !dir.exists() {
            installed_noop.push(dir.clone());
        }
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agents/ocf/kubemaker-test/noop"),
            dir.join("noop"),
        )
        .unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("\n| exec→notify, no-op agent, {ops} ops | p50 ms | p99 ms |\n|---|---|---|");
    let mut p50s = Vec::new();
    for c in &contenders {
        let addr = format!("{}:3121", c.host.addr());
        let lat = rt.block_on(latency(&addr, &key, ops));
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        println!("| {} | {p50:.2} | {p99:.2} |", c.label);
        p50s.push(p50);
    }
    println!(
        "\nratio kubemaker/reference latency p50: {:.2}",
        p50s[0] / p50s[1]
    );
    for dir in installed_noop {
        let _ = std::fs::remove_dir_all(dir);
    }
    drop(contenders);
    drop(cluster);
}

async fn latency(addr: &str, key: &[u8], ops: usize) -> Vec<f64> {
    let mut c = LrmdClient::connect(addr, key, "bench", false)
        .await
        .expect("connect for latency");
    let reg = rsc("lat")
        .with_attr("lrmd_class", "ocf")
        .with_attr("lrmd_provider", "kubemaker-bench")
        .with_attr("lrmd_type", "noop");
    let reply = c
        .request(
            LrmdClient::command("lrmd_rsc_register", Some(reg)),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.attr("lrmd_rc"), Some("0"));
    let mut out = Vec::with_capacity(ops);
    for _ in 0..ops {
        let t0 = Instant::now();
        let reply = c
            .request(
                exec_command("lat", "monitor", 0, 20_000, Element::new("attributes")),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        let call = reply.attr_i64("lrmd_rc").unwrap_or(-1);
        assert!(call > 0, "exec refused: {reply:?}");
        let n = c
            .wait_notify(Duration::from_secs(20), |m| {
                m.attr("lrmd_op") == Some("lrmd_rsc_exec")
                    && m.attr_i64("lrmd_callid") == Some(call)
            })
            .await
            .unwrap();
        assert_eq!(
            n.attr("lrmd_exec_rc"),
            Some("0"),
            "no-op monitor failed: {n:?}"
        );
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        c.drain_pending();
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}
