//! Adding many remote nodes to a real cluster: kubemaker's batched, versioned `cib_apply_diff`
//! over the remote CIB port, side by side with a `cibadmin --create` loop, in one run on the same
//! test cluster. Counts CIB transactions (epoch increments) and wall time.
//!
//!     sudo cargo bench --bench cib_bulk            (BENCH_NODES=500, BENCH_BATCH=250)
//!
//! The nodes are created with target-role=Stopped on unreachable 10.250.x addresses, so the
//! cluster never tries to connect; the cluster is reset between runs and at the end.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kubemaker::cib::client::{CibClient, Transport};
use kubemaker::cib::model::{Cib, CibVersion};
use kubemaker::cib::plan::plan;
use kubemaker::cib::spec::RemoteNodeSpec;
use kubemaker::cib::{ApplyOptions, CibService, DesiredNode, InvalidNodes};
use kubemaker::wire::Element;
use support::{Cluster, cib_port};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn desired(prefix: &str, n: usize) -> Vec<DesiredNode> {
    (0..n)
        .map(|i| {
            let spec = RemoteNodeSpec {
                address: Some(format!("10.250.{}.{}", 100 + i / 250, 2 + i % 250)),
                ..Default::default()
            };
            let mut d =
                DesiredNode::from_spec(&format!("{prefix}{i}"), &spec).expect("valid bench spec");
            d.primitive.meta_attributes.push("target-role", "Stopped");
            d
        })
        .collect()
}

fn version_now() -> CibVersion {
    let out = support::run_ok("cibadmin", &["--query", "--no-children"]);
    let text = String::from_utf8_lossy(&out.stdout);
    CibVersion::from_element(&Element::parse(&text).expect("cibadmin -Q --no-children XML"))
}

fn count_nodes(prefix: &str) -> usize {
    let xml =
        String::from_utf8_lossy(&support::run_ok("cibadmin", &["-Q", "-o", "resources"]).stdout)
            .into_owned();
    let root = Element::parse(&xml).expect("resources XML");
    root.children
        .iter()
        .filter(|c| c.name == "primitive" && c.attr("id").is_some_and(|id| id.starts_with(prefix)))
        .count()
}

struct Row {
    method: String,
    nodes: usize,
    transactions: usize,
    retries: usize,
    wall: Duration,
}

fn main() {
    // `cargo test --all-targets` runs bench targets too; the benchmark needs the real cluster for
    // a few minutes, so it only runs under `cargo bench` (which passes --bench).
    if !std::env::args().any(|a| a == "--bench") {
        println!("CIB bulk benchmark: run it with `cargo bench --bench cib_bulk`");
        return;
    }
    if !support::require_tools(&["cibadmin", "crm_mon", "chpasswd"]) || !support::require_root() {
        std::process::exit(1);
    }
    let n = env_num("BENCH_NODES", 500);
    let batch = env_num("BENCH_BATCH", 250).max(1);
    let cluster = Cluster::acquire();
    let remote = cib_port::enable_remote_cib(&cluster);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();

    // kubemaker: validate + plan + one apply_diff per batch.
    let nodes = desired("bk-", n);
    let live = rt.block_on(async {
        let c = CibClient::connect(remote.config(Transport::Tls))
            .await
            .expect("connect");
        c.query_cib().await.expect("query")
    });
    let t_plan = Instant::now();
    let p = plan(&nodes, &live);
    let plan_time = t_plan.elapsed();
    eprintln!(
        "[cib_bulk] pure planning of {n} nodes against the live CIB: {:.1} ms ({} changes)",
        plan_time.as_secs_f64() * 1000.0,
        p.change_count()
    );
    let before = Cib::new(&live).version();
    let t0 = Instant::now();
    let report = rt.block_on(async {
        let c = CibClient::connect(remote.config(Transport::Tls))
            .await
            .expect("connect");
        let r = CibService::new(&c)
            .apply_nodes(
                &nodes,
                &ApplyOptions {
                    batch_size: batch,
                    dry_run: false,
                },
                InvalidNodes::RefuseAll,
            )
            .await
            .expect("apply");
        c.close().await;
        r
    });
    let wall = t0.elapsed();
    let after = version_now();
    assert_eq!(count_nodes("bk-"), n, "kubemaker did not create all nodes");
    assert_eq!(
        report.transactions as u64,
        after.epoch - before.epoch,
        "one epoch per transaction"
    );
    rows.push(Row {
        method: format!("kubemaker apply_nodes (batch {batch}, TLS)"),
        nodes: n,
        transactions: report.transactions,
        retries: report.conflicts,
        wall,
    });
    cluster.reset();

    // The same primitives, one `cibadmin --create` each (what a shell script or pcs loop does).
    let nodes = desired("bc-", n);
    let before = version_now();
    let t0 = Instant::now();
    for d in &nodes {
        let xml = d.primitive.to_element().to_xml();
        support::run_ok(
            "cibadmin",
            &["--create", "-o", "resources", "--xml-text", &xml],
        );
    }
    let wall = t0.elapsed();
    let after = version_now();
    assert_eq!(
        count_nodes("bc-"),
        n,
        "cibadmin loop did not create all nodes"
    );
    rows.push(Row {
        method: "cibadmin --create loop (local IPC)".into(),
        nodes: n,
        transactions: (after.epoch - before.epoch) as usize,
        retries: 0,
        wall,
    });
    cluster.reset();

    println!();
    println!(
        "{:<42} {:>6} {:>13} {:>8} {:>11} {:>12}",
        "method", "nodes", "transactions", "retries", "wall time", "per node"
    );
    for r in &rows {
        println!(
            "{:<42} {:>6} {:>13} {:>8} {:>10.2}s {:>10.2}ms",
            r.method,
            r.nodes,
            r.transactions,
            r.retries,
            r.wall.as_secs_f64(),
            r.wall.as_secs_f64() * 1000.0 / r.nodes as f64
        );
    }
    let speedup = rows[1].wall.as_secs_f64() / rows[0].wall.as_secs_f64().max(1e-9);
    println!(
        "\nkubemaker is {speedup:.1}x faster with {}x fewer transactions",
        rows[1].transactions / rows[0].transactions.max(1)
    );
}
