//! Pacemaker Remote over X.509 (Pacemaker 3.0.0+) against a real 3.x cluster, kubemaker remoted
//! beside the generation's reference `pacemaker-remoted`. The cluster's pacemakerd gets
//! `PCMK_ca_file`/`PCMK_cert_file`/`PCMK_key_file` (a client certificate, as
//! /etc/default/pacemaker would give it); each daemon gets a server certificate of the same CA:
//! both nodes join and run a Dummy. Then each daemon is given a certificate another CA signed:
//! Pacemaker must record the same outcome for both (the connection never comes up). At the end
//! the cluster is restarted without the settings (PSK again), also when the test fails.
//!
//! Only for 3.x: `KUBEMAKER_PACEMAKER=3.0.0 cargo test --test remoted_x509_cluster` (scripts/test.sh
//! runs it for 3.0.0 and 3.0.3). Under 2.1.5, which has no X.509 for Pacemaker Remote, it returns
//! after saying so.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::certs::TestPki;
use support::{
    Cluster, Daemon, Generation, MonView, NetnsHost, RemoteHost, create_pinned_dummies, step,
};

const JOIN: Duration = Duration::from_secs(90);
/// Where the cluster node keeps its X.509 files.
const CLUSTER_PKI: &str = "/etc/pacemaker/x509";

/// Restarts the cluster without PCMK_* settings when dropped (the other tests expect PSK).
struct PskAgain;

impl Drop for PskAgain {
    fn drop(&mut self) {
        step("restarting the cluster without the X.509 settings");
        support::start_test_cluster_with("");
    }
}

/// The X.509 settings of a daemon (remote node or cluster).
fn x509_env(ca: &Path, cert: &Path, key: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("PCMK_ca_file", ca.display().to_string()),
        ("PCMK_cert_file", cert.display().to_string()),
        ("PCMK_key_file", key.display().to_string()),
    ]
}

/// A connection resource for `name` at `addr`.
fn connection_xml(name: &str, addr: &str) -> String {
    format!(
        r#"<primitive class="ocf" id="{name}" provider="pacemaker" type="remote"><instance_attributes id="{name}-ia"><nvpair id="{name}-ia-server" name="server" value="{addr}"/></instance_attributes><operations><op id="{name}-monitor" interval="5s" name="monitor" timeout="15s"/><op id="{name}-start" interval="0s" name="start" timeout="20s"/></operations></primitive>"#
    )
}

/// The generation's reference daemon in its own network namespace with `env`; the PKI and the
/// log directory are bound into its root.
fn start_reference(
    tag: &str,
    pki: &TestPki,
    env: &[(&'static str, String)],
) -> (NetnsHost, Daemon, PathBuf) {
    let host = NetnsHost::create(tag);
    let dir = Path::new(support::TEST_STATE_DIR).join(format!("x509-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the reference's directory");
    let log = dir.join("pacemaker-remoted.log");
    let mut cmd = Generation::current().reference_remoted_command(&host, &[&dir, &pki.dir]);
    cmd.env("PCMK_logfile", &log)
        .env("PCMK_remote_address", host.addr())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let daemon =
        Daemon::spawn(cmd, &dir.join("pacemaker-remoted.out")).expect("start the reference daemon");
    (host, daemon, log)
}

/// Pacemaker's record of a connection that never came up: not online, and a failed start (or
/// a stopped connection with a failure) in the history.
fn never_joined(v: &MonView, name: &str) -> bool {
    !v.remote_node_up(name)
        && v.failures()
            .iter()
            .any(|(op, _)| op.starts_with(&format!("{name}_start")))
}

#[test]
fn x509_remote_nodes_join_a_3x_cluster_like_the_reference() {
    let generation = Generation::current();
    if !generation.at_least("3.0.0") {
        eprintln!(
            "not applicable: Pacemaker {} has no X.509 for Pacemaker Remote (3.0.0+); run KUBEMAKER_PACEMAKER=3.0.0 cargo test --test remoted_x509_cluster",
            generation.version()
        );
        return;
    }
    if !support::require_root() || !support::require_tools(&["certtool", "ip", "nsenter"]) {
        return;
    }
    let Some(pki) = TestPki::generate("x509-cluster") else {
        panic!("certtool is present but made no PKI");
    };
    let cluster = Cluster::acquire();
    // Remote nodes that fall back to PSK must not find a key they could use by accident.
    let key = support::test_authkey();
    support::install_cluster_authkey(&key);

    step(
        "the cluster's client certificate in /etc/pacemaker/x509; pacemakerd restarted with PCMK_*_file",
    );
    for (file, source) in [
        ("ca.pem", pki.ca()),
        ("client.pem", pki.leaf("client").cert),
        ("client.key", pki.leaf("client").key),
    ] {
        let data = std::fs::read(&source).expect("read the test PKI");
        support::install_cluster_file(&format!("{CLUSTER_PKI}/{file}"), &data);
    }
    let settings = x509_env(
        Path::new(&format!("{CLUSTER_PKI}/ca.pem")),
        Path::new(&format!("{CLUSTER_PKI}/client.pem")),
        Path::new(&format!("{CLUSTER_PKI}/client.key")),
    )
    .iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect::<Vec<_>>()
    .join(" ");
    let _psk_again = PskAgain;
    support::start_test_cluster_with(&settings);
    cluster.reset();

    let server = pki.leaf("server");
    let good = x509_env(&pki.ca(), &server.cert, &server.key);
    let good_ref: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();

    step("kubemaker remoted and the reference, each with a server certificate of the cluster's CA");
    let ours = RemoteHost::in_netns("x509-km")
        .with_key(&key)
        .with_env(&good_ref)
        .started();
    assert!(
        ours.daemon().log_contains("X.509"),
        "kubemaker remoted did not say it serves X.509:\n{}",
        support::tail(&ours.daemon().log(), 20)
    );
    let (ref_host, mut reference, ref_log) = start_reference("x509-ref", &pki, &good);
    cluster.create_resource_xml(&connection_xml("rn-x509-km", &ours.addr()));
    cluster.create_resource_xml(&connection_xml("rn-x509-ref", &ref_host.addr()));
    let ids_km = create_pinned_dummies(&cluster, "x509-km-d", 0..1, "rn-x509-km", "10s");
    let ids_ref = create_pinned_dummies(&cluster, "x509-ref-d", 0..1, "rn-x509-ref", "10s");
    let v = cluster.wait_until(
        "both X.509 nodes online with their Dummy started",
        JOIN,
        |v| {
            v.remote_node_up("rn-x509-km")
                && v.remote_node_up("rn-x509-ref")
                && support::all_started_on(v, &ids_km, "rn-x509-km")
                && support::all_started_on(v, &ids_ref, "rn-x509-ref")
        },
    );
    assert!(v.failures().is_empty(), "{:?}", v.failures());
    assert!(
        reference.is_running(),
        "the reference daemon exited:\n{}",
        support::tail(&std::fs::read_to_string(&ref_log).unwrap_or_default(), 30)
    );
    drop(ours);
    reference.terminate();
    drop(ref_host);
    cluster.reset();

    step("each daemon with a certificate of another CA: the cluster refuses both alike");
    let foreign = pki.leaf("foreign");
    let bad = x509_env(&pki.ca(), &foreign.cert, &foreign.key);
    let bad_ref: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ours = RemoteHost::in_netns("x509-km")
        .with_key(&key)
        .with_env(&bad_ref)
        .started();
    let (ref_host, mut reference, _) = start_reference("x509-ref", &pki, &bad);
    cluster.create_resource_xml(&connection_xml("rn-x509-km", &ours.addr()));
    cluster.create_resource_xml(&connection_xml("rn-x509-ref", &ref_host.addr()));
    let v = cluster.wait_until(
        "both foreign-certificate nodes recorded as failed starts",
        JOIN,
        |v| never_joined(v, "rn-x509-km") && never_joined(v, "rn-x509-ref"),
    );
    let outcome = |name: &str| {
        let mut ops: Vec<String> = v
            .failures()
            .into_iter()
            .filter(|(op, _)| op.starts_with(name))
            .map(|(op, node)| format!("{} on {node}", op.replacen(name, "<conn>", 1)))
            .collect();
        ops.sort();
        ops
    };
    assert_eq!(
        outcome("rn-x509-km"),
        outcome("rn-x509-ref"),
        "Pacemaker recorded different outcomes for kubemaker remoted and the reference"
    );
    assert!(
        ours.daemon().log_contains("handshake"),
        "kubemaker remoted did not log the refused handshake:\n{}",
        support::tail(&ours.daemon().log(), 20)
    );
    drop(ours);
    reference.terminate();
    drop(ref_host);
    cluster.reset();
    step("done");
}
