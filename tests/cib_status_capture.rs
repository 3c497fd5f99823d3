//! Captures the status fixtures of `tests/golden/cib/status/` (Pacemaker 2.1.5) or
//! `status-<version>/` (`KUBEMAKER_PACEMAKER=3.0.3`, ...) from that generation's real test
//! cluster: a remote node (a `kubemaker remoted` in a network namespace) and a guest node driven
//! through each state, with `cibadmin -Q` saved at each step. Not part of the normal run (it
//! rewrites committed files):
//!
//! ```sh
//! cargo test --test cib_status_capture -- --ignored --nocapture
//! UPDATE_GOLDEN=1 cargo test --test cib_golden     # then refresh the expected JSON
//! ```

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kubemaker::cib::DesiredNode;
use kubemaker::cib::client::{CibClient, Transport};
use kubemaker::cib::spec::{GuestSpec, MonitorSpec, NodeType, RemoteNodeSpec};
use kubemaker::cib::{ApplyOptions, CibService, InvalidNodes};
use support::{Cluster, NetnsHost, RemoteHost, cib_port};

fn out_dir() -> PathBuf {
    let generation = support::Generation::current();
    let dir = if generation.is_host() {
        "status".to_string()
    } else {
        format!("status-{}", generation.version())
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/cib")
        .join(dir)
}

fn save(cluster: &Cluster, state: &str) {
    let xml = cluster.cib_xml();
    std::fs::write(out_dir().join(format!("{state}.cib.xml")), xml).unwrap();
    eprintln!("[capture] saved {state}\n{}", cluster.crm_mon_text());
}

/// Turns fencing on or off (`stonith-enabled`, a name every generation still reads).
fn set_fencing(cluster: &Cluster, on: bool) {
    let value = if on { "true" } else { "false" };
    crm(
        cluster,
        &[
            "crm_attribute",
            "--type",
            "crm_config",
            "--name",
            "stonith-enabled",
            "--update",
            value,
        ],
    );
}

fn crm(cluster: &Cluster, args: &[&str]) {
    cluster.run_ok(args[0], &args[1..]);
}

#[test]
#[ignore = "rewrites tests/golden/cib/status from the live test cluster; run by hand: sudo cargo test --test cib_status_capture -- --ignored"]
fn capture_status_fixtures() {
    assert!(support::require_tools(&[
        "crm_mon",
        "cibadmin",
        "crm_resource",
        "crm_attribute",
        "ip"
    ]));
    let cluster = Cluster::acquire();
    let remote = cib_port::enable_remote_cib(&cluster);
    let key = support::current_cluster_authkey();
    std::fs::create_dir_all(out_dir()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(CibClient::connect(remote.config(Transport::Tls)))
        .unwrap();
    let apply = |d: &DesiredNode| {
        rt.block_on(CibService::new(&client).apply_nodes(
            std::slice::from_ref(d),
            &ApplyOptions::default(),
            InvalidNodes::RefuseAll,
        ))
        .unwrap();
    };
    // CAPTURE_ONLY=pending re-captures just that state.
    if std::env::var("CAPTURE_ONLY").is_ok_and(|v| v == "pending") {
        capture_pending(&cluster, &apply);
        cluster.reset();
        return;
    }
    let mut rhost = RemoteHost::start_in_netns("cap-r", &key);
    let ghost = RemoteHost::start_in_netns("cap-g", &key);
    let mut spec = RemoteNodeSpec {
        address: Some(rhost.addr()),
        monitor: Some(MonitorSpec {
            interval: Some("5s".into()),
            timeout: Some("15s".into()),
        }),
        attributes: [("rack".to_string(), "r1".to_string())].into(),
        ..Default::default()
    };
    let rn = |s: &RemoteNodeSpec| DesiredNode::from_spec("cap-rn", s).unwrap();
    apply(&rn(&spec));
    let _ = cluster.cibadmin(&["--query", "--xpath", "//nvpair[@name='remote-node']"]);
    // A guest whose "VM" is a Dummy on node1 and whose pacemaker-remoted runs in another namespace.
    let guest = RemoteNodeSpec {
        node_type: NodeType::Guest,
        address: Some(ghost.addr()),
        guest: Some(GuestSpec {
            resource_id: Some("cap-vm".into()),
            agent: Some("ocf:pacemaker:Dummy".into()),
            parameters: [(
                "state".to_string(),
                "/run/resource-agents/km-cap-vm.state".to_string(),
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    apply(&DesiredNode::from_spec("cap-guest", &guest).unwrap());
    // One Dummy on each node, and an agent that is not installed on the remote node.
    let dummy = |id: &str, node: &str| {
        cluster.create_resource_xml(&format!(
            r#"<primitive id="{id}" class="ocf" provider="pacemaker" type="Dummy"><instance_attributes id="{id}-ia"><nvpair id="{id}-ia-state" name="state" value="/run/resource-agents/km-{id}.state"/></instance_attributes><operations><op id="{id}-mon" name="monitor" interval="5s" timeout="20s"/></operations></primitive>"#
        ));
        cluster.create_constraint_xml(&format!(
            r#"<rsc_location id="{id}-on" rsc="{id}" node="{node}" score="INFINITY" resource-discovery="exclusive"/>"#
        ));
    };
    dummy("cap-d-rn", "cap-rn");
    dummy("cap-d-guest", "cap-guest");
    cluster.wait_until(
        "both nodes online with their dummies",
        Duration::from_secs(120),
        |v| {
            v.remote_node_up("cap-rn")
                && v.remote_node_up("cap-guest")
                && v.resource("cap-d-rn").is_some_and(|r| r.role == "Started")
                && v.resource("cap-d-guest")
                    .is_some_and(|r| r.role == "Started")
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    save(&cluster, "online");

    // A start that times out (the agent sleeps 5 s, the start may take 2 s).
    cluster.create_resource_xml(r#"<primitive id="cap-fail" class="ocf" provider="pacemaker" type="Dummy"><instance_attributes id="cap-fail-ia"><nvpair id="cap-fail-ia-state" name="state" value="/run/resource-agents/km-cap-fail.state"/><nvpair id="cap-fail-ia-sleep" name="op_sleep" value="5"/></instance_attributes><operations><op id="cap-fail-start" name="start" interval="0s" timeout="2s"/></operations></primitive>"#);
    cluster.create_constraint_xml(r#"<rsc_location id="cap-fail-on" rsc="cap-fail" node="cap-rn" score="INFINITY" resource-discovery="exclusive"/>"#);
    cluster.wait_until("a failed action on cap-rn", Duration::from_secs(90), |v| {
        v.failures()
            .iter()
            .any(|(op, node)| op.contains("cap-fail") && node == "cap-rn")
            && v.resource("cap-fail").is_some_and(|r| !r.active)
    });
    std::thread::sleep(Duration::from_secs(2));
    save(&cluster, "failed-action");
    cluster.set_target_role("cap-fail", "Stopped");

    spec.standby = true;
    apply(&rn(&spec));
    cluster.wait_until(
        "cap-rn standby, its dummy stopped",
        Duration::from_secs(60),
        |v| {
            v.node("cap-rn").is_some_and(|n| n.standby)
                && v.resource("cap-d-rn").is_some_and(|r| !r.active)
        },
    );
    save(&cluster, "standby");
    spec.standby = false;
    spec.maintenance = true;
    apply(&rn(&spec));
    cluster.wait_until("cap-rn in maintenance", Duration::from_secs(60), |v| {
        v.node("cap-rn").is_some_and(|n| n.maintenance)
    });
    std::thread::sleep(Duration::from_secs(2));
    save(&cluster, "maintenance");
    spec.maintenance = false;
    apply(&rn(&spec));

    cluster.set_target_role("cap-rn", "Stopped");
    cluster.wait_until("cap-rn offline", Duration::from_secs(60), |v| {
        v.node("cap-rn").is_some_and(|n| !n.online)
    });
    std::thread::sleep(Duration::from_secs(2));
    save(&cluster, "offline");

    capture_pending(&cluster, &apply);
    cluster.set_target_role("cap-slowvm", "Stopped");
    crm(
        &cluster,
        &[
            "crm_resource",
            "--resource",
            "cap-rn",
            "--meta",
            "--delete-parameter",
            "target-role",
        ],
    );
    cluster.wait_until("cap-rn online again", Duration::from_secs(120), |v| {
        v.remote_node_up("cap-rn")
    });

    // Unclean: fencing on (no device), then the remote daemon dies.
    set_fencing(&cluster, true);
    rhost.daemon_mut().kill9();
    cluster.wait_until("cap-rn unclean", Duration::from_secs(60), |v| {
        v.node("cap-rn").is_some_and(|n| n.unclean)
    });
    std::thread::sleep(Duration::from_secs(2));
    save(&cluster, "unclean");
    set_fencing(&cluster, false);

    rt.block_on(client.close());
    cluster.reset();
}

/// A guest whose "VM" takes 20 s to start: the start is recorded as pending meanwhile.
fn capture_pending(cluster: &Cluster, apply: &dyn Fn(&DesiredNode)) {
    // Its address is a namespace of ours with nothing listening, should it ever get that far.
    let nowhere = NetnsHost::create("cap-p");
    let slow = RemoteNodeSpec {
        node_type: NodeType::Guest,
        address: Some(nowhere.addr().to_string()),
        // Every action of the agent sleeps 20 s.
        start_timeout: Some("60s".into()),
        stop_timeout: Some("60s".into()),
        monitor: Some(MonitorSpec {
            interval: Some("60s".into()),
            timeout: Some("60s".into()),
        }),
        guest: Some(GuestSpec {
            resource_id: Some("cap-slowvm".into()),
            agent: Some("ocf:pacemaker:Dummy".into()),
            parameters: [
                (
                    "state".to_string(),
                    "/run/resource-agents/km-cap-slowvm.state".to_string(),
                ),
                ("op_sleep".to_string(), "20".to_string()),
            ]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    apply(&DesiredNode::from_spec("cap-pend", &slow).unwrap());
    // Its probe sleeps 20 s too; capture in the middle of the start that follows.
    std::thread::sleep(Duration::from_secs(30));
    save(cluster, "pending");
}
