//! kubemaker remoted against a real Debian Pacemaker cluster (2.1.5, or the 3.0.x that
//! KUBEMAKER_PACEMAKER names: tests/support/generation.rs): the node joins, runs
//! resources, reports failures, stops cleanly, refuses a wrong key, survives kill -9, and works
//! with both the documented 4096-byte key and pcs's 256-byte key.
//!
//! Ground truth is `crm_mon --output-as=xml`. The phases run in one test because the cluster's
//! controller caches the key file for 60 s: switching key sizes back and forth between tests would
//! make each wait for that cache.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Cluster, MonView, RemoteHost, step};

const JOIN: Duration = Duration::from_secs(90);

fn connection_xml(id: &str, addr: &str, reconnect: Option<&str>) -> String {
    let reconnect = reconnect
        .map(|r| format!(r#"<nvpair id="{id}-instance_attributes-reconnect_interval" name="reconnect_interval" value="{r}"/>"#))
        .unwrap_or_default();
    format!(
        r#"<primitive class="ocf" id="{id}" provider="pacemaker" type="remote"><instance_attributes id="{id}-instance_attributes"><nvpair id="{id}-instance_attributes-server" name="server" value="{addr}"/>{reconnect}</instance_attributes><operations><op id="{id}-monitor-interval-5s" interval="5s" name="monitor" timeout="15s"/></operations></primitive>"#
    )
}

/// Connected for real (crm_mon alone says online while the connection is still starting).
fn online(v: &MonView, node: &str) -> bool {
    v.remote_node_up(node)
}

#[test]
fn remote_node_with_real_pacemaker() {
    if !support::require_tools(&[
        "crm_mon",
        "cibadmin",
        "crm_resource",
        "ip",
        "corosync",
        "pacemakerd",
    ]) {
        return;
    }
    let cluster = Cluster::acquire();
    let key4096 = support::test_authkey();
    support::install_cluster_authkey(&key4096);

    step("1. the node joins: online in crm_mon");
    let mut main = RemoteHost::start_in_netns("rc-main", &key4096);
    let t0 = Instant::now();
    cluster.create_resource_xml(&connection_xml("rn-main", &main.addr(), Some("5s")));
    cluster.wait_until("rn-main online", JOIN, |v| online(v, "rn-main"));
    step(&format!("   online after {:?}", t0.elapsed()));
    let node = cluster.wait_until("rn-main is a remote node", JOIN, |v| {
        v.node("rn-main").is_some_and(|n| n.node_type == "remote")
    });
    assert!(node.node("rn-main").is_some_and(|n| !n.unclean));

    step("2. ten ocf:pacemaker:Dummy resources start there");
    let t0 = Instant::now();
    let dummies = support::create_pinned_dummies(&cluster, "dm", 0..10, "rn-main", "3s");
    cluster.wait_until("10 Dummies started on rn-main", JOIN, |v| {
        support::all_started_on(v, &dummies, "rn-main")
    });
    step(&format!("   all started after {:?}", t0.elapsed()));

    step("3. a monitor failure (state file removed) is detected and recovered");
    std::fs::remove_file(support::dummy_state_file("dm3"))
        .expect("dm3's state file exists on the host");
    cluster.wait_until("dm3 monitor failure recorded", JOIN, |v| {
        v.failures()
            .iter()
            .any(|(op, n)| op.starts_with("dm3_monitor") && n == "rn-main")
    });
    cluster.wait_until("dm3 recovered on rn-main", JOIN, |v| {
        support::all_started_on(v, &dummies[3..4], "rn-main")
    });
    assert!(
        Path::new(&support::dummy_state_file("dm3")).exists(),
        "restarted by the cluster through our daemon"
    );
    cluster.run_ok("crm_resource", &["--cleanup", "--resource", "dm3"]);

    step("4. disabling the connection stops everything cleanly");
    cluster.set_target_role("rn-main", "Stopped");
    let main_stopped = |v: &MonView| {
        !online(v, "rn-main")
            && dummies
                .iter()
                .all(|id| v.resource(id).is_some_and(|r| !r.active))
    };
    let v = cluster.wait_until("rn-main offline, Dummies stopped", JOIN, main_stopped);
    assert!(
        v.failures().is_empty(),
        "clean stop, no failed actions: {:?}",
        v.failures()
    );
    for id in &dummies {
        assert!(
            !Path::new(&support::dummy_state_file(id)).exists(),
            "{id} really stopped"
        );
    }
    assert!(
        main.daemon_mut().is_running(),
        "the daemon keeps running when the cluster disconnects"
    );
    cluster.set_target_role("rn-main", "Started");
    cluster.wait_until("rn-main back with its Dummies", JOIN, |v| {
        online(v, "rn-main") && support::all_started_on(v, &dummies, "rn-main")
    });

    step("5. a wrong key is refused and the daemon keeps serving");
    let wrong: Vec<u8> = key4096.iter().map(|b| b ^ 0xa5).collect();
    let mut bad = RemoteHost::start_in_netns("rc-bad", &wrong);
    cluster.create_resource_xml(&connection_xml("rn-bad", &bad.addr(), None));
    cluster.wait_until("rn-bad connection start fails", JOIN, |v| {
        v.failures()
            .iter()
            .any(|(op, _)| op.starts_with("rn-bad_start"))
    });
    assert!(!cluster.mon().remote_node_up("rn-bad"));
    bad.daemon()
        .wait_log("TLS handshake failed", Duration::from_secs(10));
    assert!(bad.daemon_mut().is_running());
    assert!(main.daemon_mut().is_running());
    cluster.wait_until("rn-main unaffected", Duration::from_secs(10), |v| {
        online(v, "rn-main") && support::all_started_on(v, &dummies, "rn-main")
    });
    // Fix the key: the same daemon picks it up and the node joins after a cleanup.
    bad.set_key(&key4096);
    std::thread::sleep(kubemaker::remoted::authkey::CACHE_FOR);
    cluster.run_ok("crm_resource", &["--cleanup", "--resource", "rn-bad"]);
    cluster.wait_until("rn-bad online with the right key", JOIN, |v| {
        online(v, "rn-bad")
    });
    cluster.set_target_role("rn-bad", "Stopped");
    cluster.wait_until("rn-bad stopped", JOIN, |v| !online(v, "rn-bad"));

    step("6. kill -9 takes the node offline; a restarted daemon rejoins with its resources");
    let t0 = Instant::now();
    main.daemon_mut().kill9();
    cluster.wait_until("rn-main offline after kill -9", JOIN, |v| {
        !online(v, "rn-main")
    });
    step(&format!("   offline after {:?}", t0.elapsed()));
    main.start();
    let t0 = Instant::now();
    cluster.wait_until(
        "rn-main back with all Dummies started",
        Duration::from_secs(180),
        |v| online(v, "rn-main") && support::all_started_on(v, &dummies, "rn-main"),
    );
    step(&format!(
        "   rejoined with resources after {:?}",
        t0.elapsed()
    ));

    step(
        "7. SIGTERM: the cluster stops the node's resources and disconnects before the daemon exits",
    );
    let t0 = Instant::now();
    main.daemon_mut().terminate();
    let v = cluster.wait_until(
        "Dummies stopped and rn-main disconnected after SIGTERM",
        JOIN,
        main_stopped,
    );
    assert!(
        v.failures().is_empty(),
        "no failed actions during a graceful stop: {:?}",
        v.failures()
    );
    let status = main
        .daemon_mut()
        .wait_exit(Duration::from_secs(30))
        .expect("daemon exits once the cluster disconnected");
    assert!(status.success(), "{status:?}");
    step(&format!(
        "   resources stopped and daemon exited after {:?}",
        t0.elapsed()
    ));
    let log = main.daemon().log();
    let ack = log
        .find("acknowledged the shutdown request")
        .expect("the cluster acknowledged");
    let ended = log
        .rfind("Remote connection ended")
        .expect("the cluster disconnected");
    let exit = log.rfind("Exiting").expect("exit logged");
    assert!(ack < ended && ended < exit, "order: ack, disconnect, exit");
    for id in &dummies {
        assert!(
            !Path::new(&support::dummy_state_file(id)).exists(),
            "{id} stopped"
        );
    }

    step("8. a 256-byte key (what pcs makes) works too");
    cluster.set_target_role("rn-main", "Stopped");
    // Changing the cluster's key costs one 60 s key-cache expiry (install_cluster_authkey waits);
    // the next test binary that needs the suite key pays it again.
    let key256: Vec<u8> = key4096
        .iter()
        .take(256)
        .map(|b| b.wrapping_add(1))
        .collect();
    support::install_cluster_authkey(&key256);
    let mut small = RemoteHost::start_in_netns("rc-256", &key256);
    cluster.create_resource_xml(&connection_xml("rn-256", &small.addr(), Some("5s")));
    // The controller may still hold the old key for up to 60 s; reconnect_interval retries.
    cluster.wait_until(
        "rn-256 online with a 256-byte key",
        Duration::from_secs(150),
        |v| online(v, "rn-256"),
    );
    let d = support::create_pinned_dummies(&cluster, "ds", 0..2, "rn-256", "3s");
    cluster.wait_until("Dummies on rn-256", JOIN, |v| {
        support::all_started_on(v, &d, "rn-256")
    });
    assert!(small.daemon_mut().is_running());
    // Leave the shared cluster as found: nothing of this test stays configured.
    cluster.reset();
    step("done");
}
