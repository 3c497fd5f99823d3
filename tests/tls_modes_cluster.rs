//! Pacemaker 3.x's TLS modes on a real 3.x cluster.
//!
//! - Pacemaker Remote over X.509 (3.0.0+), kubemaker remoted beside the generation's reference
//!   `pacemaker-remoted`: the cluster's pacemakerd gets `PCMK_ca_file`/`PCMK_cert_file`/
//!   `PCMK_key_file` (as /etc/default/pacemaker would give it), each daemon a server certificate
//!   of the same CA: both nodes join and run a Dummy. Given a certificate another CA signed, both
//!   are refused, and Pacemaker must record the same outcome for both.
//! - The remote CIB port with the same settings (X.509, 3.0.0+): kubemaker's CIB client logs in
//!   with a certificate of the CA; an anonymous client is refused.
//! - The remote CIB port with PSK (3.0.2+, `/etc/pacemaker/cib-credentials` with `user:hexkey`):
//!   the client logs in with the user's key; a wrong key and an anonymous client are refused.
//! - `kubemaker controller` (the chart's ServiceAccount, the test API server) with
//!   `tlsMode: x509` and, on 3.0.2+, `tlsMode: psk`: the PacemakerCluster connects, a RemoteNode
//!   joins through it and is removed again, no credential in the controller's log.
//!
//! At the end (also when the test fails) the cluster is restarted as the other tests expect it:
//! no PCMK_* settings, no cib-credentials (PSK for Pacemaker Remote, anonymous remote CIB TLS).
//!
//! Only for 3.x: `KUBEMAKER_PACEMAKER=3.0.3 cargo test --test tls_modes_cluster` (scripts/test.sh
//! runs it for 3.0.0 and 3.0.3). Under 2.1.5, which has none of these modes, it returns after
//! saying so.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kubemaker::cib::{CibClient, CibError, ClientConfig, TlsAuth, Transport};
use serde_json::{Value, json};
use support::certs::{TestPki, x509_env};
use support::cib_port::{self, RemoteCib};
use support::operator::{self, Api, Controller, TEST_LABEL, condition_is, describe, str_at};
use support::{
    Cluster, Daemon, Generation, MonView, NetnsHost, RemoteHost, create_pinned_dummies, step,
    wait_for,
};

const JOIN: Duration = Duration::from_secs(90);
/// pacemaker-based's PSK table for the remote CIB port (3.0.2+).
const CIB_CREDENTIALS: &str = "/etc/pacemaker/cib-credentials";

/// The operator tests' namespace: the same API server is shared, and one namespace keeps a
/// controller of this test from looking foreign to `operator_e2e` (see `Api::foreign_activity`).
const NS: &str = "kubemaker-e2e";
/// The PacemakerClusters this test creates.
const CLUSTERS: [&str; 2] = ["tls-x509", "tls-psk"];

/// When dropped, restarts the cluster as the other tests expect it: no PCMK_* settings, no
/// cib-credentials.
struct AsBefore;

impl Drop for AsBefore {
    fn drop(&mut self) {
        step("restarting the cluster without the X.509 settings and cib-credentials");
        let _ = std::fs::remove_file(Generation::current().cluster_path(CIB_CREDENTIALS));
        support::cluster::restart_test_cluster();
    }
}

/// The uid of `user` in the cluster node.
fn node_uid(user: &str) -> u32 {
    let passwd = std::fs::read_to_string(Generation::current().cluster_path("/etc/passwd"))
        .expect("the node's /etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user)).then(|| f.get(2)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {user} in the node's /etc/passwd"))
}

/// Logs in to the remote CIB port with `auth` and reads the CIB's epoch.
fn cib_epoch(remote: &RemoteCib, auth: TlsAuth) -> Result<u64, CibError> {
    let mut cfg: ClientConfig = remote.config(Transport::Tls).with_tls_auth(auth);
    cfg.retry.connect_rounds = 1;
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.login_timeout = Duration::from_secs(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let client = CibClient::connect(cfg).await?;
        let v = client.version().await?;
        client.close().await;
        Ok(v.epoch)
    })
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

/// `kubemaker controller` run as the chart's ServiceAccount against this cluster's remote CIB port
/// in one TLS mode at a time. Dropping it removes what it created on the API server.
struct ControllerCheck {
    api: Api,
    kubeconfig: PathBuf,
    log_dir: PathBuf,
    key: Vec<u8>,
}

impl ControllerCheck {
    /// The chart in [`NS`], a ServiceAccount kubeconfig, and the authkey Secret holding the
    /// cluster's key (so the controller adopts it rather than making a new one). None when the
    /// test API server cannot run outside CI (said on stderr).
    fn set_up(key: &[u8]) -> Option<ControllerCheck> {
        let api = Api::ensure_or_skip("the controller steps")?;
        api.wait_until_unshared(NS, &CLUSTERS, Duration::from_secs(600));
        api.remove_leftovers(NS, &CLUSTERS);
        let dir = Path::new(support::TEST_STATE_DIR).join("tls-modes-controller");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the controller's directory");
        api.install_chart(NS);
        let kubeconfig = dir.join("controller.kubeconfig");
        api.sa_kubeconfig(NS, operator::CONTROLLER_SA, &kubeconfig);
        api.apply(&operator::secret(
            NS,
            "kubemaker-authkey",
            "Opaque",
            &[("authkey", key)],
        ));
        Some(ControllerCheck {
            api,
            kubeconfig,
            log_dir: dir.join("logs"),
            key: key.to_vec(),
        })
    }

    /// PacemakerCluster `name` with `tls` (its tlsMode and what that mode needs) and
    /// `secrets`: Connected; then a RemoteNode for `host` joins through the controller, is
    /// Ready, and is removed again (finalizer released, nothing left in the CIB). Neither the
    /// authkey nor any of `secret_texts` appears in the controller's log.
    fn run(
        &self,
        cluster: &Cluster,
        name: &str,
        tls: Value,
        secrets: &[Value],
        secret_texts: &[&str],
        host: &RemoteHost,
    ) {
        for s in secrets {
            self.api.apply(s);
        }
        let mut spec = json!({
            "endpoints": [{"host": Generation::current().node_addr(), "port": cib_port::TLS_PORT}],
        });
        for (k, v) in tls.as_object().expect("tls fields") {
            spec[k] = v.clone();
        }
        self.api.apply(&json!({
            "apiVersion": "kubemaker.io/v1alpha1",
            "kind": "PacemakerCluster",
            "metadata": {"name": name, "labels": {TEST_LABEL: "true"}},
            "spec": spec,
        }));
        let mut ctl = Controller::spawn(
            Path::new(env!("CARGO_BIN_EXE_kubemaker")),
            NS,
            &format!("ctl-{name}"),
            &self.kubeconfig,
            &[],
            &self.log_dir,
            "info,kubemaker=debug",
        );
        let get = |kind: &str, obj: &str| self.api.try_get(kind, None, obj);
        let with_log = |state: String, ctl: &Controller| {
            format!("{state}\n--- controller log ---\n{}", ctl.log_tail(20))
        };
        wait_for(
            &format!("PacemakerCluster {name} Connected"),
            Duration::from_secs(60),
            || match get("pacemakercluster", name)? {
                Some(o) if str_at(&o, "/status/connection") == "Connected" => Ok(()),
                Some(o) => Err(with_log(describe(&o), &ctl)),
                None => Err("no PacemakerCluster".into()),
            },
        );

        let rn = format!("rn-{name}");
        self.api.apply(&json!({
            "apiVersion": "kubemaker.io/v1alpha1",
            "kind": "RemoteNode",
            "metadata": {"name": rn, "labels": {TEST_LABEL: "true"}},
            "spec": {"clusterRef": {"name": name}, "address": host.addr()},
        }));
        cluster.wait_until(&format!("{rn} online"), JOIN, |v| v.remote_node_up(&rn));
        wait_for(
            &format!("RemoteNode {rn} Ready"),
            Duration::from_secs(60),
            || match get("remotenode", &rn)? {
                Some(o) if condition_is(&o, "Ready", "True", "Online") => Ok(()),
                Some(o) => Err(with_log(describe(&o), &ctl)),
                None => Err("no RemoteNode".into()),
            },
        );
        self.api
            .kubectl_ok(&["delete", "remotenode", &rn, "--wait=false"]);
        wait_for(
            &format!("RemoteNode {rn} removed from the cluster and deleted"),
            Duration::from_secs(180),
            || match get("remotenode", &rn)? {
                Some(o) => Err(with_log(describe(&o), &ctl)),
                None => Ok(()),
            },
        );
        let root = operator::cib_root();
        assert!(
            operator::primitive(&root, &rn).is_none(),
            "{rn} is still in the CIB after its RemoteNode was deleted"
        );
        self.api
            .kubectl_ok(&["delete", "pacemakercluster", name, "--wait=true"]);
        ctl.terminate();
        let log = ctl.log();
        support::assert_key_not_logged(&log, &self.key, "the controller log");
        for text in secret_texts {
            assert!(
                !log.contains(text),
                "a credential of PacemakerCluster {name} is in the controller log"
            );
        }
    }
}

impl Drop for ControllerCheck {
    fn drop(&mut self) {
        self.api.remove_leftovers(NS, &CLUSTERS);
        self.api.stop_if_started();
    }
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
fn tls_modes_of_a_3x_cluster() {
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
    let key = support::test_authkey();
    support::install_cluster_authkey(&key);
    let _as_before = AsBefore;
    // The remote CIB ports in the CIB and a password for hacluster (pacemaker-based opens the
    // ports at start-up, and the restart below is one).
    let remote_cib = cib_port::enable_remote_cib(&cluster);
    let password = remote_cib.password.expose().to_string();
    let controller = ControllerCheck::set_up(&key);

    step(
        "the cluster's client certificate in /etc/pacemaker/x509; pacemakerd restarted with PCMK_*_file",
    );
    pki.start_cluster_in_x509_mode("client");
    cib_port::wait_for_ports(&remote_cib.host);
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

    step(
        "the remote CIB port in X.509 mode: a certificate of the CA logs in, anonymous TLS is refused",
    );
    let x509 = TlsAuth::x509(
        std::fs::read(pki.ca()).unwrap(),
        std::fs::read(pki.leaf("client").cert).unwrap(),
        std::fs::read(pki.leaf("client").key).unwrap(),
        None,
    )
    .expect("the client's X.509 material");
    let epoch = cib_epoch(&remote_cib, x509).unwrap_or_else(|e| panic!("X.509 login: {e}"));
    assert!(epoch > 0);
    let anonymous = cib_epoch(&remote_cib, TlsAuth::Anonymous);
    assert!(
        anonymous.is_err(),
        "an anonymous client logged in to an X.509 CIB port"
    );

    if let Some(ctl) = &controller {
        step(
            "the controller with tlsMode x509 (kubernetes.io/tls Secret with ca.crt): Connected, a RemoteNode joins and is removed",
        );
        let tls_secret = pki.tls_secret(NS, "controller-tls", "client");
        let credentials = operator::secret(
            NS,
            "tls-x509-credentials",
            "Opaque",
            &[
                ("username", b"hacluster"),
                ("password", password.as_bytes()),
            ],
        );
        let host = RemoteHost::in_netns("x509-ctl")
            .with_key(&key)
            .with_env(&good_ref)
            .started();
        ctl.run(
            &cluster,
            "tls-x509",
            json!({
                "tlsMode": "x509",
                "x509SecretName": "controller-tls",
                "credentialsSecretRef": {"name": "tls-x509-credentials"},
            }),
            &[tls_secret, credentials],
            &[&password],
            &host,
        );
        drop(host);
        cluster.reset();
    }

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

    if generation.at_least("3.0.2") {
        step("the remote CIB port with PSK (cib-credentials, owned by hacluster, mode 0600)");
        let psk = support::hex(&support::random_bytes(32));
        let path = generation.cluster_path(CIB_CREDENTIALS);
        std::fs::write(&path, format!("hacluster:{psk}\n")).expect("write cib-credentials");
        let uid = nix::unistd::Uid::from_raw(node_uid("hacluster"));
        nix::unistd::chown(&path, Some(uid), None).expect("chown cib-credentials");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod cib-credentials");
        // Without the X.509 settings: pacemaker-based then takes PSK from the file.
        support::start_test_cluster_with("");
        cib_port::wait_for_ports(&remote_cib.host);
        let epoch = cib_epoch(&remote_cib, TlsAuth::psk_hex(&psk).unwrap())
            .unwrap_or_else(|e| panic!("PSK login: {e}"));
        assert!(epoch > 0);
        let wrong = cib_epoch(
            &remote_cib,
            TlsAuth::psk_hex(&support::hex(&support::random_bytes(32))).unwrap(),
        );
        assert!(wrong.is_err(), "a wrong PSK logged in");
        let text = wrong.unwrap_err().to_string();
        assert!(!text.contains(&psk), "key material in an error: {text}");
        assert!(
            cib_epoch(&remote_cib, TlsAuth::Anonymous).is_err(),
            "an anonymous client logged in to a PSK CIB port"
        );
        if let Some(ctl) = &controller {
            step("the controller with tlsMode psk: Connected, a RemoteNode joins and is removed");
            let credentials = operator::secret(
                NS,
                "tls-psk-credentials",
                "Opaque",
                &[
                    ("username", b"hacluster"),
                    ("password", password.as_bytes()),
                    ("psk", psk.as_bytes()),
                ],
            );
            let host = RemoteHost::start_in_netns("psk-ctl", &key);
            ctl.run(
                &cluster,
                "tls-psk",
                json!({
                    "tlsMode": "psk",
                    "credentialsSecretRef": {"name": "tls-psk-credentials"},
                }),
                &[credentials],
                &[&password, &psk],
                &host,
            );
            drop(host);
            cluster.reset();
        }
    }
    step("done");
}
