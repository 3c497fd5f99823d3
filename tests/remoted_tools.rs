//! Pacemaker's own command-line tools, run on a kubemaker remote node (inside its network
//! namespace; under KUBEMAKER_PACEMAKER=3.0.x the tools of that generation, from its root:
//! tests/support/generation.rs), reach the cluster through the daemon's IPC proxy: crm_mon, crm_attribute,
//! attrd_updater, crm_resource, cibadmin, and crm_master inside a promotable Stateful clone.
//! Also: maintenance mode makes SIGTERM exit at once, and bad local clients harm nothing.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use kubemaker::ipc::IpcClient;
use kubemaker::wire::Element;
use kubemaker::wire::ipc::{IpcLayout, flags};
use support::{Cluster, Generation, MonView, NetnsHost, RemoteHost, step};

const JOIN: Duration = Duration::from_secs(90);
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The generation's tool `args[0]` on the remote node (its network namespace).
fn on_node(host: &RemoteHost, args: &[&str]) -> Output {
    let mut cmd = Generation::current().host_command(host.netns(), args[0], &[]);
    cmd.args(&args[1..]);
    support::run_with_timeout(&mut cmd, TOOL_TIMEOUT)
}

/// The generation's tool `args[0]` against the cluster (on its node).
fn on_cluster(cluster: &Cluster, args: &[&str]) -> Output {
    cluster.run(args[0], &args[1..])
}

/// Sets the cluster property `maintenance-mode=true`, or deletes it.
fn set_maintenance_mode(cluster: &Cluster, on: bool) {
    let change: &[&str] = if on { &["-v", "true"] } else { &["-D"] };
    let args = [
        &[
            "crm_attribute",
            "-t",
            "crm_config",
            "-n",
            "maintenance-mode",
        ][..],
        change,
    ]
    .concat();
    ok(&on_cluster(cluster, &args), "maintenance-mode");
}

/// The cluster's `crm_attribute --query` of rn-tools' attribute `name` (`lifetime` reboot or
/// forever), value only.
fn query_node_attr(cluster: &Cluster, name: &str, lifetime: &str) -> Output {
    let args = ["-N", "rn-tools", "-n", name, "-l", lifetime, "-G", "-q"];
    cluster.run("crm_attribute", &args)
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn pacemaker_tools_work_on_the_remote_node() {
    if !support::require_tools(&[
        "crm_mon",
        "cibadmin",
        "crm_attribute",
        "attrd_updater",
        "crm_resource",
        "crm_node",
        "ip",
    ]) {
        return;
    }
    let cluster = Cluster::acquire();
    let key = support::test_authkey();
    support::install_cluster_authkey(&key);
    let mut host = RemoteHost::start_in_netns("tools", &key);

    step("before the cluster connects, local tools get a clear refusal");
    let out = on_node(&host, &["cibadmin", "-Q"]);
    assert!(
        !out.status.success(),
        "cibadmin must fail without a cluster connection"
    );

    cluster.create_resource_xml(&format!(
        r#"<primitive class="ocf" id="rn-tools" provider="pacemaker" type="remote"><instance_attributes id="rn-tools-instance_attributes"><nvpair id="rn-tools-instance_attributes-server" name="server" value="{}"/></instance_attributes><operations><op id="rn-tools-monitor-interval-5s" interval="5s" name="monitor" timeout="15s"/></operations></primitive>"#,
        host.addr()
    ));
    cluster.wait_until("rn-tools up", JOIN, |v| v.remote_node_up("rn-tools"));
    cluster.create_resource_xml(r#"<primitive class="ocf" id="tool-d1" provider="pacemaker" type="Dummy"><instance_attributes id="tool-d1-ia"><nvpair id="tool-d1-ia-state" name="state" value="/run/resource-agents/km-tools-d1.state"/></instance_attributes><operations><op id="tool-d1-monitor" interval="5s" name="monitor" timeout="20s"/></operations></primitive>"#);
    cluster.create_constraint_xml(r#"<rsc_location id="tool-d1-on" rsc="tool-d1" node="rn-tools" score="INFINITY" resource-discovery="exclusive"/>"#);
    cluster.wait_until("tool-d1 on rn-tools", JOIN, |v| {
        v.resource("tool-d1").is_some_and(|r| r.role == "Started")
    });

    step("crm_mon -1 and --output-as=xml on the node");
    let text = ok(&on_node(&host, &["crm_mon", "-1"]), "crm_mon -1");
    assert!(text.contains("RemoteOnline: [ rn-tools ]"), "{text}");
    let xml = ok(
        &on_node(&host, &["crm_mon", "-1", "--output-as=xml"]),
        "crm_mon xml",
    );
    let view = MonView::parse(&xml);
    assert!(view.remote_node_up("rn-tools"), "{xml}");
    assert!(view.dc_present());

    step("crm_node -n knows its own name through the controller");
    let name = ok(&on_node(&host, &["crm_node", "-n"]), "crm_node -n");
    assert_eq!(name.trim(), "rn-tools");

    step("transient and permanent node attributes from the node");
    ok(
        &on_node(
            &host,
            &[
                "crm_attribute",
                "-l",
                "reboot",
                "-n",
                "km-transient",
                "-v",
                "v1",
            ],
        ),
        "crm_attribute -l reboot",
    );
    ok(
        &on_node(
            &host,
            &[
                "crm_attribute",
                "-l",
                "forever",
                "-n",
                "km-permanent",
                "-v",
                "v2",
            ],
        ),
        "crm_attribute -l forever",
    );
    let transient = wait_for(
        "transient attribute on the cluster",
        Duration::from_secs(20),
        || {
            let out = query_node_attr(&cluster, "km-transient", "reboot");
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .filter(|v| v == "v1")
        },
    );
    assert_eq!(transient, "v1");
    let permanent = ok(
        &query_node_attr(&cluster, "km-permanent", "forever"),
        "read permanent",
    );
    assert_eq!(permanent.trim(), "v2");
    // And back: the node reads what it wrote.
    let back = ok(
        &on_node(
            &host,
            &[
                "crm_attribute",
                "-l",
                "forever",
                "-n",
                "km-permanent",
                "-G",
                "-q",
            ],
        ),
        "read on node",
    );
    assert_eq!(back.trim(), "v2");

    step("attrd_updater from the node");
    ok(
        &on_node(&host, &["attrd_updater", "-n", "km-attrd", "-U", "v3"]),
        "attrd_updater -U",
    );
    wait_for(
        "attrd value on the cluster",
        Duration::from_secs(20),
        || {
            let out = on_cluster(
                &cluster,
                &["attrd_updater", "-n", "km-attrd", "-Q", "-N", "rn-tools"],
            );
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && s.contains("value=\"v3\"")).then_some(s)
        },
    );

    step("crm_resource --locate and cibadmin -Q on the node");
    let located = ok(
        &on_node(&host, &["crm_resource", "--locate", "-r", "tool-d1"]),
        "crm_resource --locate",
    );
    assert!(located.contains("rn-tools"), "{located}");
    let cib = ok(&on_node(&host, &["cibadmin", "-Q"]), "cibadmin -Q");
    assert!(
        cib.contains("<cib ") && cib.contains("id=\"tool-d1\""),
        "cibadmin -Q returned the CIB"
    );

    step(
        "a CIB over 256 KiB reaches cibadmin -Q on the node (over libqb's 128 KiB buffer: compressed for 2.1.x/3.0.0 tools, in parts for 3.0.1+)",
    );
    // Stopped primitives with long descriptions: the CIB grows, the scheduler has nothing to do.
    // Each creation stays under the kernel's 128 KiB limit for one argument.
    let pad = "kubemaker-pads-the-cib ".repeat(4000);
    let pads: Vec<String> = (0..4).map(|i| format!("pad-{i}")).collect();
    for id in &pads {
        cluster.create_resource_xml(&format!(
            r#"<primitive class="ocf" id="{id}" provider="pacemaker" type="Dummy" description="{pad}"><meta_attributes id="{id}-meta"><nvpair id="{id}-meta-target-role" name="target-role" value="Stopped"/></meta_attributes></primitive>"#
        ));
    }
    let big = ok(
        &on_node(&host, &["cibadmin", "-Q"]),
        "cibadmin -Q (big CIB)",
    );
    assert!(
        big.len() > 4 * pad.len() && pads.iter().all(|id| big.contains(&format!("id=\"{id}\""))),
        "cibadmin -Q on the node returned {} bytes, not the whole CIB",
        big.len()
    );
    for id in &pads {
        ok(
            &on_cluster(
                &cluster,
                &[
                    "cibadmin",
                    "--delete",
                    "-o",
                    "resources",
                    "-X",
                    &format!(r#"<primitive id="{id}"/>"#),
                ],
            ),
            "delete a pad",
        );
    }

    step(
        "a promotable ocf:pacemaker:Stateful clone is promoted on the node (crm_master through the proxy)",
    );
    cluster.create_resource_xml(r#"<clone id="st-clone"><meta_attributes id="st-clone-meta_attributes"><nvpair id="st-clone-meta_attributes-promotable" name="promotable" value="true"/><nvpair id="st-clone-meta_attributes-clone-max" name="clone-max" value="1"/><nvpair id="st-clone-meta_attributes-promoted-max" name="promoted-max" value="1"/></meta_attributes><primitive class="ocf" id="st" provider="pacemaker" type="Stateful"><instance_attributes id="st-ia"><nvpair id="st-ia-state" name="state" value="/run/resource-agents/km-tools-st.state"/></instance_attributes><operations><op id="st-monitor-promoted" interval="5s" name="monitor" role="Promoted" timeout="20s"/><op id="st-monitor-unpromoted" interval="6s" name="monitor" role="Unpromoted" timeout="20s"/></operations></primitive></clone>"#);
    cluster.create_constraint_xml(r#"<rsc_location id="st-clone-on" rsc="st-clone" node="rn-tools" score="INFINITY" resource-discovery="exclusive"/>"#);
    let v = cluster.wait_until("st promoted on rn-tools", JOIN, |v| {
        v.resources().iter().any(|r| {
            r.id.starts_with("st")
                && r.role == "Promoted"
                && r.nodes.iter().any(|n| n == "rn-tools")
        })
    });
    assert!(v.failures().is_empty(), "{:?}", v.failures());
    let score = ok(
        &query_node_attr(&cluster, "master-st", "reboot"),
        "promotion score",
    );
    assert!(
        !score.trim().is_empty(),
        "the promotion score was set from the node"
    );

    step("bad local clients harm neither the daemon nor the cluster connection");
    abuse_local_ipc(host.netns());
    assert!(
        host.daemon().log_contains("unreadable message"),
        "bad IPC input was logged"
    );
    assert!(host.daemon_mut().is_running());
    ok(&on_node(&host, &["crm_mon", "-1"]), "crm_mon after abuse");
    assert!(cluster.mon().remote_node_up("rn-tools"));

    step("maintenance mode: SIGTERM exits at once (the cluster refuses the shutdown)");
    set_maintenance_mode(&cluster, true);
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    host.daemon_mut().terminate();
    let status = host
        .daemon_mut()
        .wait_exit(Duration::from_secs(10))
        .expect("exit at once in maintenance mode");
    assert!(status.success());
    step(&format!("   exited {:?} after SIGTERM", t0.elapsed()));
    assert!(
        host.daemon().log_contains("refused the shutdown request"),
        "{}",
        support::tail(&host.daemon().log(), 20)
    );
    set_maintenance_mode(&cluster, false);
    // Leave the shared cluster as found: nothing of this test stays configured.
    cluster.reset();
    step("done");
}

/// Local clients that send garbage, speak another header layout, vanish mid-request, or flood
/// requests without reading answers. Runs in a thread that joined the node's network namespace
/// (libqb's abstract sockets are per namespace).
fn abuse_local_ipc(host: &NetnsHost) {
    let encode = |id, f, xml: &Element, max| {
        kubemaker::wire::ipc::encode(IpcLayout::Compressing, id, f, xml, max).remove(0)
    };
    let ns = std::fs::File::open(format!("/run/netns/{}", host.name())).expect("netns handle");
    std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let query = Element::new("cib_command")
            .with_attr("t", "cib")
            .with_attr("cib_op", "cib_query")
            .with_attr("cib_callopt", 0x1020);

        // Garbage with a valid libqb size field but no Pacemaker header.
        let mut c = IpcClient::connect("cib_ro", 128 * 1024).expect("connect cib_ro");
        let mut junk = vec![0x5au8; 64];
        junk[8..12].copy_from_slice(&64i32.to_ne_bytes());
        let _ = c.send(&junk);
        assert!(
            c.recv(3000).is_err(),
            "the daemon drops a client sending garbage"
        );

        // A header of no Pacemaker layout (version byte 2).
        let mut c = IpcClient::connect("cib_ro", 128 * 1024).expect("connect cib_ro");
        let mut msg = encode(1, flags::CLIENT_RESPONSE, &query, 128 * 1024);
        msg[36] = 2;
        let _ = c.send(&msg);
        assert!(c.recv(3000).is_err());

        // Gone before the answer arrives.
        let mut c = IpcClient::connect("cib_ro", 128 * 1024).expect("connect cib_ro");
        let _ = c.send(&encode(7, flags::CLIENT_RESPONSE, &query, 128 * 1024));
        drop(c);

        // A flood of requests nobody reads the answers to.
        let mut c = IpcClient::connect("cib_ro", 128 * 1024).expect("connect cib_ro");
        let mut sent = 0;
        for id in 1..=500u32 {
            if c.send(&encode(id, flags::CLIENT_RESPONSE, &query, 128 * 1024))
                .is_err()
            {
                break;
            }
            sent += 1;
        }
        assert!(sent > 0);
        drop(c);

        // A well-behaved client still gets its answer.
        let mut c = IpcClient::connect("cib_ro", 128 * 1024).expect("connect cib_ro");
        let reply = c
            .request(
                &encode(9, flags::CLIENT_RESPONSE, &query, 128 * 1024),
                10_000,
            )
            .expect("answer after the abuse");
        let reply = kubemaker::wire::ipc::decode(&reply).expect("decodable answer");
        assert_eq!(reply.id, 9);
    })
    .join()
    .expect("local IPC abuse thread");
}
