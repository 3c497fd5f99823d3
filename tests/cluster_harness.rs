//! Proves the test harness (tests/support) against the real thing: the reference
//! `pacemaker-remoted` of the generation under test (2.1.5, or the 3.0.x of KUBEMAKER_PACEMAKER,
//! chrooted in its root) in a network namespace joins the one-node test cluster as a remote node
//! and runs an `ocf:pacemaker:Dummy` resource. The tests of kubemaker's own daemon
//! (`tests/remoted_cluster.rs`, `tests/remoted_tools.rs`) take the same steps through
//! `support::RemoteHost`, which starts `kubemaker remoted` instead.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Cluster, Daemon, Generation, NetnsHost};

const CLUSTER_TOOLS: &[&str] = &[
    "corosync",
    "pacemakerd",
    "crm_mon",
    "cibadmin",
    "crm_attribute",
    "crm_node",
    "crm_resource",
    "ip",
    "ss",
];

#[test]
fn reference_remoted_joins_cluster_and_runs_dummy() {
    let remoted = support::reference_remoted();
    if !support::require_root()
        || !support::require_tools(CLUSTER_TOOLS)
        || !support::require_tools(&[remoted.to_str().expect("utf-8 path")])
    {
        return;
    }
    let t0 = Instant::now();
    let cluster = Cluster::acquire();
    let t_cluster = t0.elapsed();

    let host = NetnsHost::create("harness");
    let addr = host.addr();

    // One key for both sides: the cluster reads /etc/pacemaker/authkey, the daemon the file named
    // by PCMK_authkey_location.
    let key = support::test_authkey();
    assert_eq!(key.len(), 4096);
    support::install_cluster_authkey(&key);
    let dir = Path::new(support::TEST_STATE_DIR).join("cluster_harness");
    fs::create_dir_all(&dir).expect("create test dir");
    let key_file = dir.join("authkey");
    support::write_key_file(&key_file, &key);
    let pcmk_log = dir.join("pacemaker-remoted.log");
    let out_log = dir.join("pacemaker-remoted.out");
    for f in [&pcmk_log, &out_log] {
        let _ = fs::remove_file(f);
    }

    // In a 3.x root the daemon sees `dir` (key and log) at the same path.
    let mut cmd = Generation::current().reference_remoted_command(&host, &[&dir]);
    cmd.env("PCMK_logfile", &pcmk_log)
        .env("PCMK_authkey_location", &key_file)
        .env("PCMK_remote_address", &addr);
    let mut daemon = Daemon::spawn(cmd, &out_log).expect("start the reference pacemaker-remoted");

    // The harness promises that the pid is the daemon's own, not that of an `ip` wrapper.
    let listening = Instant::now();
    loop {
        let out = support::run_with_timeout(
            host.command("ss").args(["-Hltnp", "sport = :3121"]),
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains(&format!("pid={},", daemon.pid())) {
            break;
        }
        assert!(
            daemon.is_running(),
            "pacemaker-remoted exited early; log:\n{}",
            support::tail(&fs::read_to_string(&pcmk_log).unwrap_or_default(), 40)
        );
        assert!(
            listening.elapsed() < Duration::from_secs(20),
            "pacemaker-remoted (pid {}) not listening on {addr}:3121 after 20 s: {text}",
            daemon.pid()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let exe = fs::read_link(format!("/proc/{}/exe", daemon.pid())).expect("read /proc/<pid>/exe");
    assert_eq!(exe, remoted, "Daemon::pid() must be the daemon's pid");

    let t_join = Instant::now();
    cluster.create_resource_xml(&format!(
        r#"<primitive class="ocf" id="rn-harness" provider="pacemaker" type="remote">
             <instance_attributes id="rn-harness-ia">
               <nvpair id="rn-harness-server" name="server" value="{addr}"/>
             </instance_attributes>
             <operations>
               <op id="rn-harness-monitor" name="monitor" interval="10s" timeout="15s"/>
             </operations>
           </primitive>"#
    ));
    let view = cluster.wait_until(
        "remote node rn-harness up (online, connection Started)",
        Duration::from_secs(90),
        |v| v.remote_node_up("rn-harness"),
    );
    let node = view.node("rn-harness").expect("node listed");
    assert_eq!(node.node_type, "remote");
    let conn = view.resource("rn-harness").expect("connection resource");
    assert_eq!(conn.nodes, vec![cluster.node1().to_string()]);
    let t_join = t_join.elapsed();

    // A Dummy pinned to the remote node. The cluster node shares this machine's /run/resource-agents
    // (where Dummy keeps its state file), so it must never probe the Dummy: a probe there would see
    // the remote instance's state file and report the resource active on both nodes.
    let t_dummy = Instant::now();
    cluster.create_resource_xml(
        r#"<primitive class="ocf" id="harness-dummy" provider="pacemaker" type="Dummy">
             <operations>
               <op id="harness-dummy-monitor" name="monitor" interval="10s" timeout="20s"/>
             </operations>
           </primitive>"#,
    );
    cluster.create_constraint_xml(
        r#"<rsc_location id="harness-dummy-on-remote" rsc="harness-dummy" node="rn-harness" score="INFINITY"/>"#,
    );
    cluster.create_constraint_xml(&format!(
        r#"<rsc_location id="harness-dummy-not-node1" rsc="harness-dummy" node="{}" score="-INFINITY" resource-discovery="never"/>"#,
        cluster.node1()
    ));
    let view = cluster.wait_until(
        "harness-dummy Started on rn-harness",
        Duration::from_secs(60),
        |v| {
            v.resource("harness-dummy")
                .is_some_and(|r| r.role == "Started" && r.active && r.nodes == ["rn-harness"])
        },
    );
    assert!(
        view.failures().is_empty(),
        "failures: {:?}",
        view.failures()
    );
    assert!(!view.resource("harness-dummy").expect("listed").failed);
    assert_eq!(
        view.node("rn-harness").map(|n| n.resources_running),
        Some(1)
    );
    let t_dummy = t_dummy.elapsed();

    // The reference daemon's own log shows it ran the agent.
    let pcmk_log_text = fs::read_to_string(&pcmk_log).unwrap_or_default();
    assert!(
        pcmk_log_text.contains("harness-dummy"),
        "pacemaker-remoted log does not mention harness-dummy:\n{}",
        support::tail(&pcmk_log_text, 40)
    );

    // Clean up while the daemon still runs, so the cluster stops the Dummy and the connection
    // normally; then stop the daemon (2.1.5 exits at once on SIGTERM with no cluster connected).
    let t_reset = Instant::now();
    cluster.reset();
    let t_reset = t_reset.elapsed();
    daemon.terminate();
    let status = daemon.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some(),
        "pacemaker-remoted did not exit on SIGTERM"
    );
    drop(daemon);
    drop(host);
    let _ = fs::remove_file(&key_file);

    eprintln!(
        "timings: cluster acquire {:.1} s, remote node online {:.1} s, Dummy started {:.1} s, \
         reset {:.1} s, total {:.1} s",
        t_cluster.as_secs_f64(),
        t_join.as_secs_f64(),
        t_dummy.as_secs_f64(),
        t_reset.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
