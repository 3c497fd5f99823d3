//! `kubemaker controller` end to end: a real kube-apiserver (`scripts/test-apiserver.sh`), the
//! helm chart, the controller running as the chart's ServiceAccount, the real one-node Pacemaker
//! cluster reached over its remote CIB port, and `kubemaker remoted` in network namespaces as the
//! remote (and guest) nodes: the behaviour the README's "Install on Kubernetes" section promises.
//!
//! One test with phases, because they share the cluster lock and the one authkey the controller
//! creates (changing the cluster's key costs a 61 s key-cache wait):
//!
//! a. setup: chart, credentials, PacemakerCluster → Connected, authkey Secret created (4096 bytes,
//!    never logged), installed into the cluster and the test hosts
//! b. a RemoteNode joins: CIB primitive, crm_mon online, conditions, printer columns, Event, finalizer
//! c. spec changes follow into the CIB; a no-op re-apply writes nothing; a non-default port
//! d. name clash with a resource kubemaker did not create: refused and never touched
//! e. a guest node (ocf:pacemaker:Dummy standing in for VirtualDomain) with remoted in the "guest"
//! f. deletion: resource, node entry and node state gone, finalizer released, Event Removed
//! g. kill -9 of the controller right after 20 RemoteNodes were applied: no duplicates after restart
//! h. two replicas: one leader, fail-over after kill -9 and after SIGSTOP, SIGTERM releases the Lease
//! i. auto-join of labelled Kubernetes Nodes, removal when the label goes or the Node is deleted
//! j. failures are reported: a RemoteNode of an unknown cluster, a cluster with refused credentials
//! k. kube-apiserver killed (SIGKILL, etcd kept) while 50 RemoteNodes are applied, and started
//!    again 7 s later: each configured exactly once, no orphaned CIB entry, no object stuck; the
//!    leader, unable to renew its lease, stepped down and leads again without exiting
//!
//! Skips outside CI when tools, root or the API server are missing; fails with CI=true.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use support::operator::{
    self, Api, Controller, EventInfo, TEST_LABEL, condition, condition_is, describe, has_finalizer,
    has_node_entry, has_node_state, nvpair, op_interval, primitive, primitives, str_at,
};
use support::{Cluster, MonView, RemoteHost, cib_port, poll, step};

const NS: &str = "kubemaker-e2e";
const CLUSTER: &str = "e2e";
/// A second PacemakerCluster with wrong credentials (phase j).
const BAD_CLUSTER: &str = "e2e-bad";
const CREDENTIALS: &str = "pcmk-credentials";
const AUTHKEY_SECRET: &str = "kubemaker-authkey";
const LEASE_ARGS: [&str; 4] = ["--lease-duration", "6", "--lease-renew", "2"];
const LOG_FILTER: &str = "info,kubemaker=debug";
const JOIN: Duration = Duration::from_secs(90);
const GROUP_LABEL: &str = "kubemaker-e2e/group";
/// How long phase k keeps the API server down before starting it again: longer than the lease
/// (`LEASE_ARGS`: 6 s), so the leader cannot renew it in time and must step down and come back.
const API_OUTAGE: Duration = Duration::from_secs(7);

fn state_dir() -> PathBuf {
    PathBuf::from(operator::STATE_DIR)
}

/// A guest node is up: listed online, not unclean, and its resource started.
fn guest_up(v: &MonView, node: &str, rsc: &str) -> bool {
    v.node(node).is_some_and(|n| n.online && !n.unclean)
        && v.resource(rsc)
            .is_some_and(|r| r.role == "Started" && r.active && !r.failed)
}

fn remote_node(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "RemoteNode",
        "metadata": {"name": name, "labels": {TEST_LABEL: "true"}},
        "spec": spec,
    })
}

// ---------------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------------

/// Everything the phases share. Dropping it without [`E2e::finish`] (a failed phase) kills the
/// controllers, removes the Kubernetes objects (finalizers stripped), resets the cluster while the
/// remote daemons still run, and only then drops the hosts and the cluster lock (field order).
struct E2e {
    api: Api,
    bin: PathBuf,
    kubeconfig: PathBuf,
    log_dir: PathBuf,
    /// Every controller started, in order (kept for the log checks).
    controllers: Vec<Controller>,
    timings: Vec<(String, Duration)>,
    finished: bool,
    password: String,
    key: Vec<u8>,
    key_version: String,
    hosts: Vec<RemoteHost>,
    cluster: Cluster,
}

impl Drop for E2e {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        eprintln!("[operator_e2e] cleaning up after a failure");
        for c in &mut self.controllers {
            if c.is_running() {
                eprintln!(
                    "--- last lines of controller {} ({}) ---\n{}",
                    c.identity,
                    c.log_path.display(),
                    c.log_tail(40)
                );
                c.kill9();
            }
        }
        let api = &self.api;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            api.remove_leftovers(NS, &[CLUSTER, BAD_CLUSTER]);
        }));
        let cluster = &self.cluster;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cluster.reset()));
        self.api.stop_if_started();
    }
}

impl E2e {
    fn start_controller(&mut self, identity: &str) -> usize {
        let c = Controller::spawn(
            &self.bin,
            NS,
            identity,
            &self.kubeconfig,
            &LEASE_ARGS,
            &self.log_dir,
            LOG_FILTER,
        );
        self.controllers.push(c);
        self.controllers.len() - 1
    }

    fn ctl(&self, i: usize) -> &Controller {
        &self.controllers[i]
    }

    fn ctl_mut(&mut self, i: usize) -> &mut Controller {
        &mut self.controllers[i]
    }

    /// What a failure message needs besides the last state: the running controllers' log tails.
    fn context(&self) -> String {
        let mut s = String::new();
        for c in self.controllers.iter().rev().take(2) {
            s.push_str(&format!(
                "\n--- controller {} ({}) ---\n{}",
                c.identity,
                c.log_path.display(),
                c.log_tail(25)
            ));
        }
        s
    }

    /// [`poll`] every 250 ms; on timeout panics with `what`, the last state and the context.
    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl FnMut() -> Result<T, String>,
    ) -> T {
        poll(timeout, Duration::from_millis(250), check).unwrap_or_else(|last| {
            panic!(
                "timed out after {timeout:?} waiting for {what}\nlast seen: {last}{}",
                self.context()
            )
        })
    }

    /// Waits until RemoteNode `name` exists and satisfies `pred`; returns it.
    fn wait_rn(
        &self,
        what: &str,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait(
            &format!("RemoteNode {name}: {what}"),
            timeout,
            || match self.api.try_get("remotenode", None, name)? {
                Some(o) if pred(&o) => Ok(o),
                Some(o) => Err(describe(&o)),
                None => Err("no such RemoteNode".into()),
            },
        )
    }

    /// Waits until RemoteNode `name` no longer exists.
    fn wait_rn_gone(&self, name: &str, timeout: Duration) {
        self.wait(
            &format!("RemoteNode {name} to be gone"),
            timeout,
            || match self.api.try_get("remotenode", None, name)? {
                Some(o) => Err(describe(&o)),
                None => Ok(()),
            },
        );
    }

    /// Waits until the Events about the object with `uid` include `reason` (of `type_` if given).
    fn wait_event(&self, name: &str, uid: &str, reason: &str, type_: Option<&str>) -> EventInfo {
        self.wait(
            &format!("Event {reason} on {name}"),
            Duration::from_secs(20),
            || {
                let events = self.api.events("default", name);
                let mine: Vec<&EventInfo> = events.iter().filter(|e| e.uid == uid).collect();
                match mine
                    .iter()
                    .find(|e| e.reason == reason && type_.is_none_or(|t| e.type_ == t))
                {
                    Some(e) => Ok((*e).clone()),
                    None => Err(format!(
                        "events: {:?}",
                        mine.iter()
                            .map(|e| format!("{}/{}", e.type_, e.reason))
                            .collect::<Vec<_>>()
                    )),
                }
            },
        )
    }

    /// Waits until the CIB satisfies `pred` (checked every 250 ms); returns the root.
    fn wait_cib(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&kubemaker::wire::Element) -> Result<(), String>,
    ) -> kubemaker::wire::Element {
        self.wait(&format!("CIB: {what}"), timeout, || {
            let root = operator::cib_root();
            pred(&root).map(|_| root)
        })
    }

    fn wait_mon(&self, what: &str, timeout: Duration, pred: impl Fn(&MonView) -> bool) -> MonView {
        self.cluster.wait_until(what, timeout, pred)
    }

    /// Panics (with its log) if controller `i` has exited: no point waiting for it.
    fn assert_alive(&self, i: usize) {
        let c = self.ctl(i);
        if c.has_exited() {
            panic!(
                "controller {} exited unexpectedly; last lines of {}:\n{}",
                c.identity,
                c.log_path.display(),
                c.log_tail(40)
            );
        }
    }

    fn metrics(&self, i: usize) -> operator::Metrics {
        self.ctl(i)
            .metrics()
            .unwrap_or_else(|e| panic!("controller {}: {e}", self.ctl(i).identity))
    }

    fn wait_leader(&self, i: usize, want: f64, timeout: Duration) {
        let id = self.ctl(i).identity.clone();
        self.wait(
            &format!("controller {id}: kubemaker_leader {want}"),
            timeout,
            || {
                self.assert_alive(i);
                match self.ctl(i).metrics()?.get("kubemaker_leader", &[]) {
                    Some(v) if v == want => Ok(()),
                    other => Err(format!("kubemaker_leader = {other:?}")),
                }
            },
        );
    }

    fn wait_ready(&self, i: usize) {
        let id = self.ctl(i).identity.clone();
        self.wait(
            &format!("controller {id}: /healthz and /readyz 200"),
            Duration::from_secs(60),
            || {
                self.assert_alive(i);
                let h = self.ctl(i).get("/healthz")?;
                let r = self.ctl(i).get("/readyz")?;
                if h.0 == 200 && h.1.trim() == "ok" && r.0 == 200 {
                    Ok(())
                } else {
                    Err(format!(
                        "/healthz {} {:?}, /readyz {}",
                        h.0,
                        h.1.trim(),
                        r.0
                    ))
                }
            },
        );
    }

    fn lease_holder(&self) -> Option<String> {
        let lease = self
            .api
            .get_json_ns("lease.coordination.k8s.io", NS, operator::LEASE)?;
        Some(str_at(&lease, "/spec/holderIdentity"))
    }

    fn time(&mut self, phase: &str, started: Instant) {
        let d = started.elapsed();
        step(&format!("   {phase} done in {:.1} s", d.as_secs_f64()));
        self.timings.push((phase.to_string(), d));
    }

    fn uid(&self, kind: &str, name: &str) -> String {
        let o = self
            .api
            .get_json(kind, name)
            .unwrap_or_else(|| panic!("{kind} {name} does not exist"));
        str_at(&o, "/metadata/uid")
    }
}

/// Three lines of a CIB primitive for failure messages.
fn show_primitive(root: &kubemaker::wire::Element, id: &str) -> String {
    primitive(root, id)
        .map(|p| p.to_xml())
        .unwrap_or_else(|| format!("(no primitive {id})"))
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn operator_end_to_end() {
    if !support::require_tools(&[
        "crm_mon",
        "cibadmin",
        "crm_resource",
        "crm_node",
        "crm_attribute",
        "ip",
        "corosync",
        "pacemakerd",
        "chpasswd",
    ]) || !support::require_root()
    {
        return;
    }
    let Some(api) = Api::ensure_or_skip("operator_end_to_end") else {
        return;
    };

    let mut e2e = phase_a_setup(api);
    phase_b_join(&mut e2e);
    phase_c_changes(&mut e2e);
    phase_c2_ownership(&mut e2e);
    phase_d_name_clash(&mut e2e);
    phase_e_guest(&mut e2e);
    phase_f_delete(&mut e2e);
    phase_g_kill_mid_reconcile(&mut e2e);
    phase_h_replicas(&mut e2e);
    phase_i_auto_join(&mut e2e);
    phase_j_failures(&mut e2e);
    phase_k_apiserver_restart(&mut e2e);
    finish(&mut e2e);
}

/// Index of each host in `E2e::hosts`.
const HOST_A: usize = 0; // rn-a, remoted on 3121
const HOST_B: usize = 1; // rn-b, remoted on 3122
const HOST_C: usize = 2; // guest1, remoted on 3121
const HOST_D: usize = 3; // worker-a (auto-join), remoted on 3121
const HOST_E: usize = 4; // nothing listens: clash1, the 20 of phase g, worker-b/c, the 50 of k

fn phase_a_setup(api: Api) -> E2e {
    step("a. setup: cluster, remote CIB port, chart, credentials, PacemakerCluster, controller");
    let t0 = Instant::now();
    let cluster = Cluster::acquire();
    let remote = cib_port::enable_remote_cib(&cluster);
    // The API server is shared: never run beside another kubemaker controller or delete others'
    // objects. (Anyone using the Pacemaker cluster holds the cluster lock taken above, too.)
    api.wait_until_unshared(NS, &[CLUSTER, BAD_CLUSTER], Duration::from_secs(600));
    api.remove_leftovers(NS, &[CLUSTER, BAD_CLUSTER]);
    let dir = state_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    api.install_chart(NS);
    let kubeconfig = dir.join("controller.kubeconfig");
    api.sa_kubeconfig(NS, operator::CONTROLLER_SA, &kubeconfig);
    api.create_credentials_secret(NS, CREDENTIALS, remote.password.expose());
    // The ServiceAccount really is limited to the chart's RBAC (not admin).
    let sa = format!(
        "--as=system:serviceaccount:{NS}:{}",
        operator::CONTROLLER_SA
    );
    let o = api.kubectl(&["auth", "can-i", &sa, "list", "secrets", "-n", NS]);
    assert!(
        !o.status.success(),
        "the controller SA must not list Secrets"
    );

    api.apply(&json!({
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "PacemakerCluster",
        "metadata": {"name": CLUSTER, "labels": {TEST_LABEL: "true"}},
        "spec": {
            "endpoints": [{"host": support::Generation::current().node_addr(), "port": cib_port::TLS_PORT}],
            "tlsMode": "anonymous",
            "credentialsSecretRef": {"name": CREDENTIALS},
        },
    }));

    let mut e2e = E2e {
        api,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_kubemaker")),
        kubeconfig,
        log_dir: dir.join("logs"),
        controllers: Vec::new(),
        timings: Vec::new(),
        finished: false,
        password: remote.password.expose().to_string(),
        key: Vec::new(),
        key_version: String::new(),
        hosts: Vec::new(),
        cluster,
    };
    let a = e2e.start_controller("ctl-a");
    e2e.wait_ready(a);
    e2e.wait_leader(a, 1.0, Duration::from_secs(30));
    assert!(
        e2e.ctl(a).log().contains("became leader"),
        "contract: log line `became leader`"
    );

    let pc = e2e.wait(
        "PacemakerCluster status.connection=Connected",
        Duration::from_secs(60),
        || match e2e.api.try_get("pacemakercluster", None, CLUSTER)? {
            Some(o) if str_at(&o, "/status/connection") == "Connected" => Ok(o),
            Some(o) => Err(describe(&o)),
            None => Err("no PacemakerCluster".into()),
        },
    );
    assert!(
        condition_is(&pc, "Connected", "True", "Connected")
            && condition_is(&pc, "Ready", "True", "Quorate"),
        "PacemakerCluster conditions: {}",
        describe(&pc)
    );
    let node1 = e2e.cluster.node1().to_string();
    assert_eq!(
        str_at(&pc, "/status/dc"),
        node1,
        "status.dc: {}",
        describe(&pc)
    );
    assert!(
        pc["status"]["quorum"].is_boolean(),
        "status.quorum: {}",
        describe(&pc)
    );
    assert!(
        !str_at(&pc, "/status/cibVersion").is_empty(),
        "status.cibVersion: {}",
        describe(&pc)
    );
    let m = e2e.metrics(a);
    assert_eq!(
        m.get("kubemaker_cib_connected", &[("cluster", CLUSTER)]),
        Some(1.0),
        "kubemaker_cib_connected{{cluster=\"{CLUSTER}\"}}"
    );

    // The authkey Secret: created by the controller, 4096 random bytes, labelled.
    let (key, version) = e2e.wait("the authkey Secret", Duration::from_secs(30), || match e2e
        .api
        .secret_bytes(NS, AUTHKEY_SECRET, "authkey")
    {
        Some(k) => Ok(k),
        None => Err("no Secret yet".into()),
    });
    assert_eq!(key.len(), 4096, "the authkey has 4096 bytes");
    assert!(
        key.iter().collect::<BTreeSet<_>>().len() > 200,
        "the authkey looks random (many distinct byte values)"
    );
    let secret = e2e
        .api
        .get_json_ns("secret", NS, AUTHKEY_SECRET)
        .expect("authkey Secret");
    assert_eq!(
        str_at(&secret, "/metadata/labels/app.kubernetes.io~1managed-by"),
        "kubemaker",
        "label app.kubernetes.io/managed-by=kubemaker on the authkey Secret"
    );
    let pc_uid = e2e.uid("pacemakercluster", CLUSTER);
    e2e.wait_event(CLUSTER, &pc_uid, "AuthkeyCreated", None);
    e2e.wait_event(CLUSTER, &pc_uid, "CibConnected", None);
    support::assert_key_not_logged(&e2e.ctl(a).log(), &key, "the controller log");
    e2e.key = key;
    e2e.key_version = version;

    step("   installing the controller's authkey into the cluster and four test hosts");
    support::install_cluster_authkey(&e2e.key);
    let key = e2e.key.clone();
    e2e.hosts.push(RemoteHost::start_in_netns("e2e-a", &key));
    e2e.hosts.push(
        RemoteHost::in_netns("e2e-b")
            .with_key(&key)
            .with_port(3122)
            .started(),
    );
    e2e.hosts.push(RemoteHost::start_in_netns("e2e-c", &key));
    e2e.hosts.push(RemoteHost::start_in_netns("e2e-d", &key));
    // A host where nothing listens: connections to it are refused.
    e2e.hosts.push(RemoteHost::in_netns("e2e-e"));
    // Remote connections are made by the controller from here on, not by the harness.
    support::mark_remote_key_in_use();
    e2e.time("a. setup", t0);
    e2e
}

fn rn_a_spec(addr: &str, reconnect: &str, monitor: &str, cluster_ref: bool) -> Value {
    let mut spec = json!({
        "address": addr,
        "reconnectInterval": reconnect,
        "monitor": {"interval": monitor, "timeout": "20s"},
    });
    if cluster_ref {
        spec["clusterRef"] = json!({"name": CLUSTER});
    }
    spec
}

fn phase_b_join(e2e: &mut E2e) {
    step("b. RemoteNode rn-a joins");
    let t0 = Instant::now();
    let addr = e2e.hosts[HOST_A].addr();
    let node1 = e2e.cluster.node1().to_string();
    e2e.api
        .apply(&remote_node("rn-a", rn_a_spec(&addr, "30s", "10s", true)));

    e2e.wait_cib(
        "primitive rn-a ocf:pacemaker:remote server=A",
        Duration::from_secs(30),
        |root| {
            let p = primitive(root, "rn-a").ok_or("no primitive rn-a")?;
            let agent = operator::agent_of(p);
            let server = nvpair(p, "instance_attributes", "server");
            if agent == "ocf:pacemaker:remote" && server.as_deref() == Some(addr.as_str()) {
                Ok(())
            } else {
                Err(p.to_xml())
            }
        },
    );
    let joined = Instant::now();
    e2e.wait_mon("rn-a online in crm_mon", JOIN, |v| v.remote_node_up("rn-a"));
    step(&format!(
        "   rn-a online {:.1} s after its primitive appeared",
        joined.elapsed().as_secs_f64()
    ));

    let rn = e2e.wait_rn(
        "Configured/Connected/Ready True, state online",
        "rn-a",
        Duration::from_secs(60),
        |o| {
            condition_is(o, "Configured", "True", "Configured")
                && condition_is(o, "Connected", "True", "Connected")
                && condition_is(o, "Ready", "True", "Online")
                && str_at(o, "/status/pacemakerState") == "online"
                && str_at(o, "/status/observedGeneration") == str_at(o, "/metadata/generation")
        },
    );
    assert_eq!(str_at(&rn, "/status/nodeName"), "rn-a", "{}", describe(&rn));
    assert_eq!(str_at(&rn, "/status/address"), addr, "{}", describe(&rn));
    assert_eq!(str_at(&rn, "/status/host"), node1, "{}", describe(&rn));
    assert_eq!(
        str_at(&rn, "/status/connectionResource"),
        "rn-a",
        "{}",
        describe(&rn)
    );
    assert!(
        has_finalizer(&rn, operator::FINALIZER),
        "finalizer {} on rn-a: {}",
        operator::FINALIZER,
        describe(&rn)
    );

    // What `kubectl get remotenodes` shows.
    let table = e2e.api.kubectl_ok(&["get", "remotenodes"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "NODE",
            "TYPE",
            "ADDRESS",
            "STATE",
            "HOST",
            "RESOURCES",
            "KUBELET",
            "AGE"
        ],
        "kubectl get remotenodes header:\n{table}"
    );
    let row: Vec<&str> = lines
        .find(|l| l.split_whitespace().next() == Some("rn-a"))
        .unwrap_or_else(|| panic!("no rn-a row:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..6],
        [
            "rn-a",
            "rn-a",
            "remote",
            addr.as_str(),
            "online",
            node1.as_str()
        ],
        "rn-a row:\n{table}"
    );
    // KUBELET stays empty: rn-a is bound to no Kubernetes Node.
    assert!(
        row.get(6).is_some_and(|r| r.parse::<u32>().is_ok()),
        "RESOURCES column is a number:\n{table}"
    );

    let uid = str_at(&rn, "/metadata/uid");
    let ev = e2e.wait_event("rn-a", &uid, "Configured", Some("Normal"));
    assert!(
        !ev.message.is_empty(),
        "the Configured Event notes the CIB changes"
    );
    e2e.wait_event("rn-a", &uid, "Online", Some("Normal"));

    let m = e2e.metrics(0);
    assert!(
        m.get("kubemaker_remote_nodes", &[("state", "online")])
            .is_some_and(|v| v >= 1.0),
        "kubemaker_remote_nodes{{state=\"online\"}} >= 1: {:?}",
        m.series
            .iter()
            .filter(|s| s.0 == "kubemaker_remote_nodes")
            .collect::<Vec<_>>()
    );
    assert!(
        m.get("kubemaker_reconcile_total", &[("result", "ok")])
            .is_some_and(|v| v >= 1.0)
    );
    assert!(m.sum("kubemaker_reconcile_duration_seconds_count") >= 1.0);
    assert!(m.sum("kubemaker_cib_transactions_total") >= 1.0);
    for name in [
        "kubemaker_leader",
        "kubemaker_reconcile_total",
        "kubemaker_reconcile_duration_seconds_sum",
        "kubemaker_reconcile_duration_seconds_count",
        "kubemaker_cib_transactions_total",
        "kubemaker_cib_conflicts_total",
        "kubemaker_remote_nodes",
        "kubemaker_cib_connected",
    ] {
        assert!(
            m.series.iter().any(|s| s.0 == name),
            "contract metric {name} missing from /metrics"
        );
    }
    e2e.time("b. join", t0);
}

fn phase_c_changes(e2e: &mut E2e) {
    step("c. spec changes reach the CIB; a no-op re-apply writes nothing; port 3122");
    let t0 = Instant::now();
    let addr = e2e.hosts[HOST_A].addr();
    let changed = remote_node("rn-a", rn_a_spec(&addr, "45s", "20s", true));
    e2e.api.apply(&changed);
    e2e.wait_cib(
        "rn-a reconnect_interval=45s, monitor interval 20s",
        Duration::from_secs(30),
        |root| {
            let p = primitive(root, "rn-a").ok_or("no primitive rn-a")?;
            if nvpair(p, "instance_attributes", "reconnect_interval").as_deref() == Some("45s")
                && op_interval(p, "monitor").as_deref() == Some("20s")
                && nvpair(p, "instance_attributes", "server").as_deref() == Some(addr.as_str())
            {
                Ok(())
            } else {
                Err(p.to_xml())
            }
        },
    );
    let generation_caught_up = |o: &Value| {
        str_at(o, "/status/observedGeneration") == str_at(o, "/metadata/generation")
            && condition_is(o, "Configured", "True", "Configured")
    };
    e2e.wait_rn(
        "observedGeneration caught up",
        "rn-a",
        Duration::from_secs(30),
        generation_caught_up,
    );
    e2e.wait_mon("rn-a online after the change", JOIN, |v| {
        v.remote_node_up("rn-a")
    });

    // Settle: no configuration change for 3 s, then the baseline.
    let settle_start = Instant::now();
    let mut last = operator::cib_version();
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_secs(3) {
        assert!(
            settle_start.elapsed() < Duration::from_secs(60),
            "the CIB configuration kept changing for 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
        let now = operator::cib_version();
        if (now.0, now.1) != (last.0, last.1) {
            stable_since = Instant::now();
        }
        last = now;
    }
    let before_xml = operator::cib_root();
    let v0 = operator::cib_version();
    let m0 = e2e.metrics(0);
    let tx0 = m0.sum("kubemaker_cib_transactions_total");
    let window = Instant::now();

    let out = e2e.api.apply(&changed);
    assert!(
        out.contains("unchanged"),
        "re-applying the same manifest: {out}"
    );
    e2e.api.kubectl_ok(&[
        "annotate",
        "remotenode",
        "rn-a",
        "kubemaker-e2e/poke=1",
        "--overwrite",
    ]);
    // A spec change that plans to nothing: clusterRef left out while only one cluster exists.
    e2e.api
        .apply(&remote_node("rn-a", rn_a_spec(&addr, "45s", "20s", false)));
    e2e.wait_rn(
        "reconciled without clusterRef",
        "rn-a",
        Duration::from_secs(30),
        |o| o["spec"].get("clusterRef").is_none() && generation_caught_up(o),
    );
    e2e.api.apply(&changed);
    e2e.wait_rn(
        "reconciled with clusterRef again",
        "rn-a",
        Duration::from_secs(30),
        |o| o["spec"].get("clusterRef").is_some() && generation_caught_up(o),
    );
    if let Some(rest) = Duration::from_secs(5).checked_sub(window.elapsed()) {
        std::thread::sleep(rest);
    }
    let v1 = operator::cib_version();
    let tx1 = e2e.metrics(0).sum("kubemaker_cib_transactions_total");
    assert!(
        (v1.0, v1.1) == (v0.0, v0.1),
        "no-op reconciles changed the CIB configuration: version {v0:?} -> {v1:?}\nbefore: {}\nafter: {}",
        show_primitive(&before_xml, "rn-a"),
        show_primitive(&operator::cib_root(), "rn-a"),
    );
    assert_eq!(
        tx1, tx0,
        "kubemaker_cib_transactions_total grew during no-op reconciles"
    );
    step(&format!(
        "   no-op window: CIB {}.{} unchanged, {tx0} transactions before and after",
        v0.0, v0.1
    ));

    // A non-default port: remoted in host B listens on 3122.
    let b = e2e.hosts[HOST_B].addr();
    e2e.api.apply(&remote_node(
        "rn-b",
        json!({
            "clusterRef": {"name": CLUSTER},
            "address": b,
            "port": 3122,
            "reconnectInterval": "5s",
            "monitor": {"interval": "10s", "timeout": "20s"},
        }),
    ));
    e2e.wait_cib("rn-b port=3122", Duration::from_secs(30), |root| {
        let p = primitive(root, "rn-b").ok_or("no primitive rn-b")?;
        if nvpair(p, "instance_attributes", "port").as_deref() == Some("3122")
            && nvpair(p, "instance_attributes", "server").as_deref() == Some(b.as_str())
        {
            Ok(())
        } else {
            Err(p.to_xml())
        }
    });
    e2e.wait_mon("rn-b online on port 3122", JOIN, |v| {
        v.remote_node_up("rn-b")
    });
    e2e.wait_rn("rn-b Ready", "rn-b", Duration::from_secs(60), |o| {
        condition_is(o, "Ready", "True", "Online")
            && str_at(o, "/status/pacemakerState") == "online"
    });
    e2e.time("c. changes", t0);
}

/// Who owns what in the CIB (cib::plan's rules), with Pacemaker's own tools on the real cluster:
/// an administrator's `target-role` (what `pcs resource disable` sets), another meta attribute,
/// an extra operation and a location constraint survive reconciles; an edit of the server
/// parameter kubemaker owns is put back with a Reverted Event; a primitive deleted by hand is
/// recreated with a Recreated Event.
fn phase_c2_ownership(e2e: &mut E2e) {
    step("c2. CIB ownership: an administrator's edits survive, kubemaker's fields are put back");
    let t0 = Instant::now();
    let addr = e2e.hosts[HOST_A].addr();
    let uid = e2e.uid("remotenode", "rn-a");
    let meta = |name: &str, value: &str| {
        e2e.cluster.run_ok(
            "crm_resource",
            &[
                "--resource",
                "rn-a",
                "--meta",
                "--set-parameter",
                name,
                "--parameter-value",
                value,
            ],
        );
    };
    meta("target-role", "Stopped");
    meta("resource-stickiness", "50");
    // An extra operation: the primitive replaced with one more op, as `crm configure edit` does.
    let mut prim = primitive(&operator::cib_root(), "rn-a")
        .expect("rn-a in the CIB")
        .clone();
    let ops = prim
        .children
        .iter_mut()
        .find(|c| c.name == "operations")
        .expect("rn-a has operations");
    ops.children.push(
        kubemaker::wire::Element::new("op")
            .with_attr("id", "rn-a-notify-interval-0s")
            .with_attr("name", "notify")
            .with_attr("interval", "0s")
            .with_attr("timeout", "30s"),
    );
    e2e.cluster.run_ok(
        "cibadmin",
        &[
            "--replace",
            "--scope",
            "resources",
            "--xml-text",
            &prim.to_xml(),
        ],
    );
    e2e.cluster.run_ok(
        "cibadmin",
        &[
            "--create",
            "--scope",
            "constraints",
            "--xml-text",
            r#"<rsc_location id="admin-rn-a-avoids" rsc="rn-a" node="no-such-node" score="-100"/>"#,
        ],
    );
    // An edit of a field kubemaker owns: put back, and said so.
    e2e.cluster.run_ok(
        "crm_resource",
        &[
            "--resource",
            "rn-a",
            "--set-parameter",
            "server",
            "--parameter-value",
            "192.0.2.99",
        ],
    );
    let reverted = e2e.wait_event("rn-a", &uid, "Reverted", Some("Warning"));
    assert!(
        reverted.message.contains("server"),
        "the Reverted Event does not name what it put back: {}",
        reverted.message
    );
    let root = e2e.wait_cib(
        "server put back, the administrator's edits kept",
        Duration::from_secs(30),
        |root| {
            let p = primitive(root, "rn-a").ok_or("no primitive rn-a")?;
            if nvpair(p, "instance_attributes", "server").as_deref() != Some(addr.as_str()) {
                return Err(format!("server not put back: {}", p.to_xml()));
            }
            Ok(())
        },
    );
    let p = primitive(&root, "rn-a").expect("rn-a");
    assert_eq!(
        nvpair(p, "meta_attributes", "target-role").as_deref(),
        Some("Stopped"),
        "target-role lost: {}",
        p.to_xml()
    );
    assert_eq!(
        nvpair(p, "meta_attributes", "resource-stickiness").as_deref(),
        Some("50"),
        "resource-stickiness lost: {}",
        p.to_xml()
    );
    assert_eq!(
        op_interval(p, "notify").as_deref(),
        Some("0s"),
        "the extra operation was lost: {}",
        p.to_xml()
    );
    assert!(
        root.to_xml().contains(r#"id="admin-rn-a-avoids""#),
        "the location constraint was lost"
    );
    let events = e2e.api.event_reasons("rn-a", &uid);
    assert_eq!(
        events.iter().filter(|r| *r == "Reverted").count(),
        1,
        "the administrator's own edits were reported as reverted too: {events:?}"
    );

    // Undo the administrator's edits (theirs to undo), then delete the primitive by hand.
    for name in ["target-role", "resource-stickiness"] {
        e2e.cluster.run_ok(
            "crm_resource",
            &["--resource", "rn-a", "--meta", "--delete-parameter", name],
        );
    }
    e2e.cluster.run_ok(
        "cibadmin",
        &[
            "--delete",
            "--xml-text",
            r#"<op id="rn-a-notify-interval-0s"/>"#,
        ],
    );
    e2e.cluster.run_ok(
        "cibadmin",
        &[
            "--delete",
            "--xml-text",
            r#"<rsc_location id="admin-rn-a-avoids"/>"#,
        ],
    );
    e2e.wait_mon("rn-a online again", JOIN, |v| v.remote_node_up("rn-a"));
    e2e.cluster.run_ok(
        "cibadmin",
        &[
            "--delete",
            "--scope",
            "resources",
            "--xml-text",
            r#"<primitive id="rn-a"/>"#,
        ],
    );
    e2e.wait_event("rn-a", &uid, "Recreated", Some("Warning"));
    e2e.wait_cib("rn-a recreated", Duration::from_secs(30), |root| {
        primitive(root, "rn-a")
            .map(|_| ())
            .ok_or("no primitive rn-a".into())
    });
    e2e.wait_mon("rn-a online after it was recreated", JOIN, |v| {
        v.remote_node_up("rn-a")
    });
    e2e.time("c2. ownership", t0);
}

fn phase_d_name_clash(e2e: &mut E2e) {
    step("d. a RemoteNode whose name is taken by a resource kubemaker did not create");
    let t0 = Instant::now();
    e2e.cluster.create_resource_xml(
        r#"<primitive class="ocf" id="clash1" provider="pacemaker" type="Dummy"><operations><op id="clash1-monitor-interval-10s" interval="10s" name="monitor" timeout="20s"/></operations></primitive>"#,
    );
    e2e.wait_mon("Dummy clash1 started", JOIN, |v| {
        v.resource("clash1").is_some_and(|r| r.role == "Started")
    });
    let dummy_xml = primitive(&operator::cib_root(), "clash1")
        .expect("clash1")
        .to_xml();
    let clash_addr = operator::add_host_addresses(e2e.hosts[HOST_E].netns(), 5, 1).remove(0);
    e2e.api.apply(&remote_node(
        "clash1",
        json!({"clusterRef": {"name": CLUSTER}, "address": clash_addr}),
    ));
    let rn = e2e.wait_rn(
        "Configured False NameClash",
        "clash1",
        Duration::from_secs(30),
        |o| condition_is(o, "Configured", "False", "NameClash"),
    );
    assert_eq!(
        condition(&rn, "Connected").map(|c| c.0),
        Some("False".to_string()),
        "Connected on a clashing node: {}",
        describe(&rn)
    );
    let uid = str_at(&rn, "/metadata/uid");
    e2e.wait_event("clash1", &uid, "NameClash", Some("Warning"));
    // Give a misbehaving controller time to touch it anyway.
    std::thread::sleep(Duration::from_secs(3));
    let check_untouched = |when: &str| {
        let root = operator::cib_root();
        let now = primitive(&root, "clash1")
            .unwrap_or_else(|| panic!("{when}: the Dummy clash1 is gone"))
            .to_xml();
        assert_eq!(now, dummy_xml, "{when}: the Dummy clash1 was modified");
        let connections: Vec<String> = primitives(&root)
            .iter()
            .filter(|p| {
                nvpair(p, "instance_attributes", "server").as_deref() == Some(clash_addr.as_str())
                    || nvpair(p, "meta_attributes", "remote-node").as_deref() == Some("clash1")
            })
            .map(|p| p.to_xml())
            .collect();
        assert!(
            connections.is_empty(),
            "{when}: a connection for clash1: {connections:?}"
        );
        assert!(
            !has_node_entry(&root, "clash1"),
            "{when}: a <node> clash1 was added"
        );
        assert!(
            e2e.cluster
                .mon()
                .resource("clash1")
                .is_some_and(|r| r.role == "Started"),
            "{when}: the Dummy clash1 no longer runs"
        );
    };
    check_untouched("while the RemoteNode exists");

    e2e.api
        .kubectl_ok(&["delete", "remotenode", "clash1", "--wait=false"]);
    e2e.wait_rn_gone("clash1", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    check_untouched("after the RemoteNode was deleted");

    // Our own Dummy: stop and remove it.
    let o = e2e.cluster.run(
        "crm_resource",
        &[
            "--resource",
            "clash1",
            "--meta",
            "--set-parameter",
            "target-role",
            "--parameter-value",
            "Stopped",
        ],
    );
    assert!(
        o.status.success(),
        "crm_resource: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    e2e.wait_mon("Dummy clash1 stopped", JOIN, |v| {
        v.resource("clash1").is_none_or(|r| !r.active)
    });
    e2e.cluster.run_ok(
        "cibadmin",
        &[
            "--delete",
            "-o",
            "resources",
            "--xml-text",
            r#"<primitive id="clash1"/>"#,
        ],
    );
    e2e.time("d. name clash", t0);
}

fn phase_e_guest(e2e: &mut E2e) {
    step("e. guest node guest1 (ocf:pacemaker:Dummy as its VM, remoted in host C)");
    let t0 = Instant::now();
    let c = e2e.hosts[HOST_C].addr();
    e2e.api.apply(&remote_node(
        "guest1",
        json!({
            "clusterRef": {"name": CLUSTER},
            "type": "guest",
            "address": c,
            "guest": {"agent": "ocf:pacemaker:Dummy", "resourceId": "vm-guest1", "parameters": {}},
        }),
    ));
    e2e.wait_cib(
        "primitive vm-guest1 with remote-node/remote-addr",
        Duration::from_secs(30),
        |root| {
            let p = primitive(root, "vm-guest1").ok_or("no primitive vm-guest1")?;
            if operator::agent_of(p) == "ocf:pacemaker:Dummy"
                && nvpair(p, "meta_attributes", "remote-node").as_deref() == Some("guest1")
                && nvpair(p, "meta_attributes", "remote-addr").as_deref() == Some(c.as_str())
            {
                Ok(())
            } else {
                Err(p.to_xml())
            }
        },
    );
    e2e.wait_rn("Configured True", "guest1", Duration::from_secs(30), |o| {
        condition_is(o, "Configured", "True", "Configured")
    });
    e2e.wait_mon("guest1 online with vm-guest1 started", JOIN, |v| {
        guest_up(v, "guest1", "vm-guest1")
    });
    let rn = e2e.wait_rn(
        "Connected and Ready True",
        "guest1",
        Duration::from_secs(60),
        |o| {
            condition_is(o, "Connected", "True", "Connected")
                && condition_is(o, "Ready", "True", "Online")
                && str_at(o, "/status/pacemakerState") == "online"
        },
    );
    assert_eq!(str_at(&rn, "/status/address"), c, "{}", describe(&rn));
    e2e.time("e. guest", t0);
}

fn phase_f_delete(e2e: &mut E2e) {
    step(
        "f. rn-b's daemon dies and comes back (status from CIB notifications); deleting rn-b removes it from the CIB",
    );
    let t0 = Instant::now();
    let uid = e2e.uid("remotenode", "rn-b");
    let events_before = e2e
        .api
        .events("default", "rn-b")
        .iter()
        .filter(|e| e.uid == uid && e.reason == "Online")
        .count();
    let killed = Instant::now();
    e2e.hosts[HOST_B].daemon_mut().kill9();
    let rn = e2e.wait_rn(
        "Ready False (Offline or Unclean) after kill -9 of its remoted",
        "rn-b",
        Duration::from_secs(15),
        |o| {
            condition(o, "Ready")
                .is_some_and(|(st, r)| st == "False" && (r == "Offline" || r == "Unclean"))
        },
    );
    step(&format!(
        "   rn-b reported {:?} {:.1} s after its daemon was killed",
        condition(&rn, "Ready"),
        killed.elapsed().as_secs_f64()
    ));
    assert!(
        matches!(
            str_at(&rn, "/status/pacemakerState").as_str(),
            "offline" | "unclean"
        ),
        "{}",
        describe(&rn)
    );
    assert_eq!(
        condition(&rn, "Connected").map(|c| c.0),
        Some("False".to_string()),
        "{}",
        describe(&rn)
    );
    e2e.wait_event("rn-b", &uid, "Offline", Some("Warning"));
    e2e.hosts[HOST_B].start();
    e2e.wait_mon("rn-b back online", JOIN, |v| v.remote_node_up("rn-b"));
    e2e.wait_rn("Ready True again", "rn-b", Duration::from_secs(30), |o| {
        condition_is(o, "Ready", "True", "Online")
    });
    e2e.wait(
        "a second Online Event on rn-b",
        Duration::from_secs(20),
        || {
            let n = e2e
                .api
                .events("default", "rn-b")
                .iter()
                .filter(|e| e.uid == uid && e.reason == "Online")
                .count();
            // Events.k8s.io may fold repeats into a series on one Event object.
            let series = e2e
                .api
                .list("events.events.k8s.io", &["-n", "default"])?
                .iter()
                .filter(|e| str_at(e, "/regarding/uid") == uid && str_at(e, "/reason") == "Online")
                .map(|e| e["series"]["count"].as_u64().unwrap_or(1))
                .sum::<u64>();
            if n > events_before || series >= 2 {
                Ok(())
            } else {
                Err(format!("{n} Online events, series count {series}"))
            }
        },
    );
    e2e.api
        .kubectl_ok(&["delete", "remotenode", "rn-b", "--wait=false"]);
    e2e.wait_rn_gone("rn-b", JOIN);
    e2e.cluster.clear_removed_remote_states(&["rn-b"]);
    let root = operator::cib_root();
    assert!(
        primitive(&root, "rn-b").is_none(),
        "{}",
        show_primitive(&root, "rn-b")
    );
    assert!(!has_node_entry(&root, "rn-b"), "a <node> rn-b remains");
    assert!(
        !has_node_state(&root, "rn-b"),
        "a <node_state> rn-b remains"
    );
    // On 3.x crm_mon may show the node a moment longer after crm_node --force --remove.
    e2e.wait_mon(
        "crm_mon no longer lists rn-b",
        Duration::from_secs(30),
        |v| v.node("rn-b").is_none(),
    );
    let root = operator::cib_root();
    assert!(
        !has_node_state(&root, "rn-b"),
        "a <node_state> rn-b came back"
    );
    e2e.wait_event("rn-b", &uid, "Removed", Some("Normal"));
    let reasons = e2e.api.event_reasons("rn-b", &uid);
    assert!(
        reasons.iter().any(|r| r == "Removing"),
        "Event Removing: {reasons:?}"
    );
    assert!(
        e2e.hosts[HOST_B].daemon_mut().is_running(),
        "remoted in host B keeps running"
    );
    e2e.time("f. delete", t0);
}

fn phase_g_kill_mid_reconcile(e2e: &mut E2e) {
    step("g. kill -9 of the controller 300 ms after 20 RemoteNodes were applied");
    let t0 = Instant::now();
    let addrs = operator::add_host_addresses(e2e.hosts[HOST_E].netns(), 10, 20);
    let names: Vec<String> = (0..20).map(|i| format!("rn-g{i:02}")).collect();
    let items = unreachable_group(&names, &addrs, "g");
    let a = e2e.controllers.len() - 1;
    assert!(e2e.ctl_mut(a).is_running());
    // kubectl creates the 20 one after another; the controller dies 300 ms after kubectl started.
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let mut kubectl = support::spawn_with_input(
        e2e.api.command("kubectl").args(["apply", "-f", "-"]),
        list.into_bytes(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let status = e2e.ctl_mut(a).kill9();
    let at_kill = operator::primitives_with_prefix(&operator::cib_root(), "rn-g").len();
    let applied = kubectl.wait_output(Duration::from_secs(60));
    assert!(
        applied.status.success(),
        "kubectl apply of the 20: {}",
        support::text(&applied)
    );
    let sel = format!("{GROUP_LABEL}=g");
    let with_status = e2e
        .api
        .list("remotenodes", &["-l", &sel])
        .unwrap_or_default()
        .iter()
        .filter(|o| condition(o, "Configured").is_some())
        .count();
    step(&format!(
        "   killed ({status}); {at_kill} of 20 primitives were in the CIB then, {with_status} objects had a status when kubectl finished"
    ));
    let restarted = Instant::now();
    let a2 = e2e.start_controller("ctl-a");
    e2e.wait_leader(a2, 1.0, Duration::from_secs(30));
    wait_group_configured(
        e2e,
        "all 20 RemoteNodes Configured=True after the restart",
        &sel,
        20,
        Duration::from_secs(120),
    );
    step(&format!(
        "   all 20 configured {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    ));
    let root = operator::cib_root();
    let ids: Vec<String> = primitives(&root)
        .iter()
        .filter_map(|p| p.attr("id").map(str::to_string))
        .collect();
    let mut expected: BTreeSet<String> = names.iter().cloned().collect();
    expected.insert("rn-a".into());
    expected.insert("vm-guest1".into());
    let actual: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(actual.len(), ids.len(), "duplicate primitive ids: {ids:?}");
    assert_eq!(
        actual, expected,
        "the primitives in the CIB after the restart"
    );
    operator::assert_one_connection_each(&root, &names, &addrs);

    delete_group(e2e, &sel, &names);
    e2e.time("g. kill -9 mid-reconcile", t0);
}

/// RemoteNodes `names` at `addrs` (extra addresses of host E, where nothing listens), labelled
/// `GROUP_LABEL=group`. The cluster's connection attempts are refused at once and cost little: a
/// long reconnect interval, and a 5 s start timeout (a removal waits for the start to time out
/// before the stop).
fn unreachable_group(names: &[String], addrs: &[String], group: &str) -> Vec<Value> {
    names
        .iter()
        .zip(addrs)
        .map(|(n, a)| {
            let mut o = remote_node(
                n,
                json!({
                    "clusterRef": {"name": CLUSTER},
                    "address": a,
                    "reconnectInterval": "300s",
                    "monitor": {"interval": "60s", "timeout": "20s"},
                    "startTimeout": "5s",
                }),
            );
            o["metadata"]["labels"][GROUP_LABEL] = json!(group);
            o
        })
        .collect()
}

/// Waits until exactly `n` RemoteNodes match `sel` and all are Configured=True; returns them.
fn wait_group_configured(
    e2e: &E2e,
    what: &str,
    sel: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Value> {
    e2e.wait(what, timeout, || {
        let (items, not) = e2e.api.unconfigured_remote_nodes(sel)?;
        if items.len() == n && not.is_empty() {
            Ok(items)
        } else {
            Err(format!("{} objects, not configured: {not:?}", items.len()))
        }
    })
}

/// Deletes the RemoteNodes matching `sel` (named `names`) and waits until the objects are gone
/// (their finalizers released) and nothing of them is left in the CIB.
fn delete_group(e2e: &E2e, sel: &str, names: &[String]) {
    e2e.api
        .kubectl_ok(&["delete", "remotenodes", "-l", sel, "--wait=false"]);
    e2e.wait(
        &format!("the {} RemoteNodes gone", names.len()),
        Duration::from_secs(180),
        || {
            let items = e2e.api.list("remotenodes", &["-l", sel])?;
            if items.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} left: {}",
                    items.len(),
                    items.first().map(describe).unwrap_or_default()
                ))
            }
        },
    );
    // On 3.x the DC writes back an empty node_state for a removed node that was online.
    let bare_allowed = !e2e.cluster.generation().is_host();
    e2e.wait_cib(
        "no primitives, nodes or node states of the group",
        Duration::from_secs(30),
        |root| {
            let left: Vec<&String> = names
                .iter()
                .filter(|n| {
                    primitive(root, n).is_some()
                        || has_node_entry(root, n)
                        || (has_node_state(root, n)
                            && !(bare_allowed && support::cluster::bare_remote_state(root, n)))
                })
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still in the CIB: {left:?}"))
            }
        },
    );
    let names_ref: Vec<&str> = names.iter().map(String::as_str).collect();
    e2e.cluster.clear_removed_remote_states(&names_ref);
    let root = operator::cib_root();
    let left: Vec<&String> = names.iter().filter(|n| has_node_state(&root, n)).collect();
    assert!(left.is_empty(), "a <node_state> of {left:?} remains");
}

fn phase_h_replicas(e2e: &mut E2e) {
    step("h. two replicas: one leader; fail-over after kill -9 and after SIGSTOP; SIGTERM");
    let t0 = Instant::now();
    let a = e2e.controllers.len() - 1;
    let b = e2e.start_controller("ctl-b");
    e2e.wait_ready(b);
    e2e.wait(
        "ctl-b logs `waiting for leadership`",
        Duration::from_secs(30),
        || {
            if e2e.ctl(b).log().contains("waiting for leadership") {
                Ok(())
            } else {
                Err(e2e.ctl(b).log_tail(5))
            }
        },
    );
    for _ in 0..3 {
        let la = e2e.ctl(a).leader();
        let lb = e2e.ctl(b).leader();
        assert_eq!(
            (la, lb),
            (Some(1.0), Some(0.0)),
            "exactly one leader (the first replica): kubemaker_leader of ctl-a, ctl-b{}",
            e2e.context()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(e2e.lease_holder().as_deref(), Some("ctl-a"), "Lease holder");

    let killed = Instant::now();
    e2e.ctl_mut(a).kill9();
    e2e.wait_leader(b, 1.0, Duration::from_secs(20));
    step(&format!(
        "   ctl-b leads {:.1} s after the leader was killed",
        killed.elapsed().as_secs_f64()
    ));
    assert!(e2e.ctl(b).log().contains("became leader"));
    assert_eq!(e2e.lease_holder().as_deref(), Some("ctl-b"), "Lease holder");
    let addr = e2e.hosts[HOST_A].addr();
    e2e.api
        .apply(&remote_node("rn-a", rn_a_spec(&addr, "50s", "20s", true)));
    e2e.wait_cib(
        "rn-a reconnect_interval=50s (by ctl-b)",
        Duration::from_secs(30),
        |root| {
            let p = primitive(root, "rn-a").ok_or("no primitive rn-a")?;
            match nvpair(p, "instance_attributes", "reconnect_interval").as_deref() {
                Some("50s") => Ok(()),
                _ => Err(p.to_xml()),
            }
        },
    );

    // A leader that stalls past its lease loses it; when it wakes up it must exit (code 1).
    let c = e2e.start_controller("ctl-c");
    e2e.wait_ready(c);
    e2e.wait_leader(c, 0.0, Duration::from_secs(30));
    let stopped = Instant::now();
    e2e.ctl_mut(b).signal(Signal::SIGSTOP);
    e2e.wait_leader(c, 1.0, Duration::from_secs(20));
    step(&format!(
        "   ctl-c leads {:.1} s after ctl-b was stopped",
        stopped.elapsed().as_secs_f64()
    ));
    e2e.ctl_mut(b).signal(Signal::SIGCONT);
    let status = e2e.ctl_mut(b).wait_exit(Duration::from_secs(20));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "contract: a replica that lost the lease exits with code 1; got {status:?}{}",
        e2e.context()
    );
    assert_eq!(e2e.lease_holder().as_deref(), Some("ctl-c"), "Lease holder");

    let term = Instant::now();
    e2e.ctl_mut(c).terminate();
    let status = e2e.ctl_mut(c).wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: exit 0 within 10 s; got {status:?}{}",
        e2e.context()
    );
    step(&format!(
        "   ctl-c exited {:.1} s after SIGTERM",
        term.elapsed().as_secs_f64()
    ));
    let holder = e2e.lease_holder();
    assert!(
        holder.as_deref().is_some_and(str::is_empty),
        "the Lease's holderIdentity is cleared after SIGTERM: {holder:?}"
    );
    e2e.time("h. replicas", t0);
}

fn phase_i_auto_join(e2e: &mut E2e) {
    step("i. auto-join of labelled Kubernetes Nodes");
    let t0 = Instant::now();
    let i = e2e.start_controller("ctl-i");
    e2e.wait_leader(i, 1.0, Duration::from_secs(30));
    e2e.api.kubectl_ok(&[
        "patch",
        "pacemakercluster",
        CLUSTER,
        "--type=merge",
        "-p",
        r#"{"spec":{"autoJoin":{"nodeSelector":{"kubemaker.io/remote-node":"true"}},"remoteNodeDefaults":{"startTimeout":"10s"}}}"#,
    ]);
    let spare = operator::add_host_addresses(e2e.hosts[HOST_E].netns(), 40, 2);
    let d = e2e.hosts[HOST_D].addr();
    e2e.api.create_node("worker-c", &[], &spare[1]);
    let node_a = e2e
        .api
        .create_node("worker-a", &[("kubemaker.io/remote-node", "true")], &d);
    let node_a_uid = str_at(&node_a, "/metadata/uid");

    let rn = e2e.wait_rn(
        "auto-joined and Configured",
        "worker-a",
        Duration::from_secs(60),
        |o| condition_is(o, "Configured", "True", "Configured"),
    );
    assert_eq!(
        str_at(&rn, "/metadata/labels/kubemaker.io~1auto-join"),
        CLUSTER,
        "label kubemaker.io/auto-join: {}",
        describe(&rn)
    );
    assert_eq!(str_at(&rn, "/spec/kubernetesNode"), "worker-a");
    assert_eq!(str_at(&rn, "/spec/clusterRef/name"), CLUSTER);
    e2e.wait_cib(
        "primitive worker-a server=D",
        Duration::from_secs(30),
        |root| {
            let p = primitive(root, "worker-a").ok_or("no primitive worker-a")?;
            match nvpair(p, "instance_attributes", "server") {
                Some(s) if s == d => Ok(()),
                _ => Err(p.to_xml()),
            }
        },
    );
    e2e.wait_mon("worker-a online", JOIN, |v| v.remote_node_up("worker-a"));
    let rn = e2e.wait_rn("Ready", "worker-a", Duration::from_secs(60), |o| {
        condition_is(o, "Ready", "True", "Online")
    });
    assert_eq!(str_at(&rn, "/status/address"), d, "{}", describe(&rn));
    e2e.wait_event("worker-a", &node_a_uid, "AutoJoined", None);
    e2e.wait_event("worker-a", &node_a_uid, "Configured", None);

    // A matching Node that is deleted takes its RemoteNode (and CIB entry) with it.
    e2e.api.create_node(
        "worker-b",
        &[("kubemaker.io/remote-node", "true")],
        &spare[0],
    );
    e2e.wait_rn(
        "auto-joined and Configured",
        "worker-b",
        Duration::from_secs(60),
        |o| condition_is(o, "Configured", "True", "Configured"),
    );
    // remoteNodeDefaults apply to nodes that do not set their own (auto-joined ones set none).
    e2e.wait_cib(
        "primitive worker-b with the cluster's default start timeout 10s",
        Duration::from_secs(30),
        |root| {
            let p = primitive(root, "worker-b").ok_or("no primitive worker-b")?;
            let start = p
                .child("operations")
                .and_then(|o| {
                    o.children
                        .iter()
                        .find(|op| op.attr("name") == Some("start"))
                })
                .and_then(|op| op.attr("timeout"));
            if start == Some("10s") {
                Ok(())
            } else {
                Err(p.to_xml())
            }
        },
    );
    e2e.api.kubectl_ok(&["delete", "node", "worker-b"]);
    e2e.wait_rn_gone("worker-b", JOIN);
    e2e.wait_cib("worker-b gone", Duration::from_secs(30), |root| {
        if primitive(root, "worker-b").is_some() || has_node_entry(root, "worker-b") {
            Err(show_primitive(root, "worker-b"))
        } else {
            Ok(())
        }
    });
    assert!(
        e2e.api.get_json("remotenode", "worker-c").is_none(),
        "a Node without the selector's label got a RemoteNode"
    );

    // The label goes: the RemoteNode and its CIB entries go.
    e2e.api
        .kubectl_ok(&["label", "node", "worker-a", "kubemaker.io/remote-node-"]);
    e2e.wait_rn_gone("worker-a", JOIN);
    e2e.cluster.clear_removed_remote_states(&["worker-a"]);
    let root = operator::cib_root();
    assert!(
        primitive(&root, "worker-a").is_none(),
        "{}",
        show_primitive(&root, "worker-a")
    );
    assert!(
        !has_node_entry(&root, "worker-a"),
        "a <node> worker-a remains"
    );
    assert!(
        !has_node_state(&root, "worker-a"),
        "a <node_state> worker-a remains"
    );
    e2e.wait_event("worker-a", &node_a_uid, "Removed", None);
    e2e.time("i. auto-join", t0);
}

fn phase_j_failures(e2e: &mut E2e) {
    step("j. failures are reported: unknown cluster, refused credentials");
    let t0 = Instant::now();
    e2e.api.apply(&remote_node(
        "rn-orphan",
        json!({"clusterRef": {"name": "no-such-cluster"}, "address": e2e.hosts[HOST_E].addr()}),
    ));
    e2e.wait_rn(
        "Configured False ClusterNotFound",
        "rn-orphan",
        Duration::from_secs(30),
        |o| condition_is(o, "Configured", "False", "ClusterNotFound"),
    );
    assert!(
        primitive(&operator::cib_root(), "rn-orphan").is_none(),
        "a RemoteNode of an unknown cluster reached the CIB"
    );
    e2e.api
        .kubectl_ok(&["delete", "remotenode", "rn-orphan", "--wait=false"]);
    e2e.wait_rn_gone("rn-orphan", Duration::from_secs(30));

    e2e.api
        .create_credentials_secret(NS, "bad-credentials", "not-the-password");
    e2e.api.apply(&json!({
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "PacemakerCluster",
        "metadata": {"name": BAD_CLUSTER, "labels": {TEST_LABEL: "true"}},
        "spec": {
            "endpoints": [{"host": support::Generation::current().node_addr(), "port": cib_port::TLS_PORT}],
            "tlsMode": "anonymous",
            "credentialsSecretRef": {"name": "bad-credentials"},
        },
    }));
    let pc = e2e.wait(
        "PacemakerCluster e2e-bad status.connection=Failed",
        Duration::from_secs(60),
        || match e2e.api.try_get("pacemakercluster", None, BAD_CLUSTER)? {
            Some(o) if str_at(&o, "/status/connection") == "Failed" => Ok(o),
            Some(o) => Err(describe(&o)),
            None => Err("no PacemakerCluster".into()),
        },
    );
    assert!(
        !str_at(&pc, "/status/message").is_empty(),
        "status.message explains the failure: {}",
        describe(&pc)
    );
    assert!(
        condition_is(&pc, "Connected", "False", "CibUnreachable")
            && condition_is(&pc, "Ready", "False", "CibUnreachable"),
        "PacemakerCluster conditions after a refused login: {}",
        describe(&pc)
    );
    let uid = str_at(&pc, "/metadata/uid");
    e2e.wait_event(BAD_CLUSTER, &uid, "CibUnreachable", Some("Warning"));
    let i = e2e.controllers.len() - 1;
    let connected = e2e
        .metrics(i)
        .get("kubemaker_cib_connected", &[("cluster", BAD_CLUSTER)]);
    assert_ne!(
        connected,
        Some(1.0),
        "kubemaker_cib_connected{{cluster=\"{BAD_CLUSTER}\"}}"
    );
    // The good cluster is unaffected.
    let good = e2e.api.get_json("pacemakercluster", CLUSTER).expect("e2e");
    assert_eq!(
        str_at(&good, "/status/connection"),
        "Connected",
        "{}",
        describe(&good)
    );
    e2e.api
        .kubectl_ok(&["delete", "pacemakercluster", BAD_CLUSTER, "--wait=false"]);
    e2e.wait(
        "PacemakerCluster e2e-bad gone",
        Duration::from_secs(30),
        || match e2e.api.try_get("pacemakercluster", None, BAD_CLUSTER)? {
            Some(o) => Err(describe(&o)),
            None => Ok(()),
        },
    );
    e2e.time("j. failures", t0);
}

/// The Pacemaker node a primitive defines: its id for a remote node's connection resource, its
/// `remote-node` meta attribute for a guest's resource; None for any other primitive.
fn node_of(p: &kubemaker::wire::Element) -> Option<String> {
    if operator::agent_of(p) == "ocf:pacemaker:remote" {
        p.attr("id").map(str::to_string)
    } else {
        nvpair(p, "meta_attributes", "remote-node")
    }
}

fn phase_k_apiserver_restart(e2e: &mut E2e) {
    const N: usize = 50;
    step("k. kube-apiserver killed (SIGKILL) and restarted while 50 RemoteNodes are applied");
    let t0 = Instant::now();
    let addrs = operator::add_host_addresses(e2e.hosts[HOST_E].netns(), 60, N as u32);
    let names: Vec<String> = (0..N).map(|i| format!("rn-k{i:02}")).collect();
    let sel = format!("{GROUP_LABEL}=k");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": unreachable_group(&names, &addrs, "k")});
    let i = e2e.controllers.len() - 1;
    e2e.assert_alive(i);
    e2e.wait_leader(i, 1.0, Duration::from_secs(30));
    // Killing the API server is only fair when no other test uses it.
    let exclusive = e2e
        .api
        .exclusive_use(Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("phase k kills the test API server: {e}"));
    let m0 = e2e.metrics(i);
    let epoch0 = operator::cib_version().1;
    let log0 = e2e.ctl(i).log().len();
    let count = || operator::primitives_with_prefix(&operator::cib_root(), "rn-k").len();

    // One `kubectl apply` of the List; the API server dies as soon as the controller has written
    // the first of them into the CIB.
    let mut kubectl = support::spawn_with_input(
        e2e.api.command("kubectl").args(["apply", "-f", "-"]),
        list.to_string().into_bytes(),
    );
    let applying = Instant::now();
    let before_kill =
        support::poll(
            Duration::from_secs(60),
            Duration::from_millis(20),
            || match count() {
                0 => Err("no rn-k primitive in the CIB yet".to_string()),
                n => Ok(n),
            },
        )
        .unwrap_or_else(|last| {
            panic!(
                "no rn-k primitive reached the CIB in 60 s: {last}{}",
                e2e.context()
            )
        });
    exclusive.kill_apiserver().unwrap_or_else(|e| panic!("{e}"));
    let killed = Instant::now();
    let at_kill = count();
    step(&format!(
        "   kube-apiserver killed {:.2} s after kubectl started: {before_kill} of {N} primitives in the CIB just before the kill, {at_kill} just after",
        killed.duration_since(applying).as_secs_f64()
    ));
    // Down for longer than the lease, then started again, before anything may fail (so a failure
    // here leaves a working API server).
    std::thread::sleep(API_OUTAGE.saturating_sub(killed.elapsed()));
    exclusive
        .start_apiserver()
        .unwrap_or_else(|e| panic!("restarting the API server: {e}"));
    let back = Instant::now();
    let api_down = back.duration_since(killed);
    drop(exclusive);
    assert!(
        before_kill < N,
        "the kill came too late: all {N} primitives were in the CIB already (not mid-way)"
    );
    step(&format!(
        "   kube-apiserver ready again {:.1} s after the kill (kept down {} s, then started in {:.1} s)",
        api_down.as_secs_f64(),
        API_OUTAGE.as_secs(),
        api_down.saturating_sub(API_OUTAGE).as_secs_f64()
    ));
    let applied = kubectl.wait_output(Duration::from_secs(120));
    if !applied.status.success() {
        // The kill cut kubectl off: a client retries, as here.
        let existing = e2e
            .api
            .list("remotenodes", &["-l", &sel])
            .map_or(0, |v| v.len());
        step(&format!(
            "   kubectl apply failed with the API server gone ({existing} of {N} objects exist; {}); applying the List again",
            support::tail(&support::text(&applied), 1).trim()
        ));
        e2e.api.apply(&list);
    }

    let items = wait_group_configured(
        e2e,
        "all 50 RemoteNodes Configured=True after the API server restart",
        &sel,
        N,
        Duration::from_secs(180),
    );
    let configured_after = back.elapsed();
    e2e.assert_alive(i);
    e2e.wait_leader(i, 1.0, Duration::from_secs(30));

    // Exactly once in the CIB, each at its own address.
    let root = operator::cib_root();
    let ids: Vec<String> = operator::primitives_with_prefix(&root, "rn-k")
        .iter()
        .filter_map(|p| p.attr("id").map(str::to_string))
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate primitive ids: {ids:?}");
    let expected: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(unique, expected, "the rn-k primitives in the CIB");
    operator::assert_one_connection_each(&root, &names, &addrs);
    // No orphan: every node a primitive defines has its RemoteNode, and no rn-k node entry is
    // left beside the 50.
    let all = e2e
        .api
        .list("remotenodes", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let known: BTreeSet<String> = all
        .iter()
        .map(|o| str_at(o, "/status/nodeName").to_ascii_lowercase())
        .collect();
    let orphans: Vec<String> = primitives(&root)
        .iter()
        .filter(|p| node_of(p).is_none_or(|n| !known.contains(&n.to_ascii_lowercase())))
        .map(|p| p.to_xml())
        .collect();
    assert!(
        orphans.is_empty(),
        "primitives without a RemoteNode: {orphans:?}"
    );
    let stray_entries: Vec<String> = root
        .child("configuration")
        .and_then(|c| c.child("nodes"))
        .map(|nodes| {
            nodes
                .children
                .iter()
                .filter_map(|n| n.attr("uname").or(n.attr("id")))
                .filter(|n| n.starts_with("rn-k") && !expected.contains(*n))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        stray_entries.is_empty(),
        "node entries without a RemoteNode: {stray_entries:?}"
    );
    // No object stuck: finalizer on, not deleting, status of the current generation.
    for o in &items {
        let name = str_at(o, "/metadata/name");
        assert!(
            has_finalizer(o, operator::FINALIZER),
            "{name} lacks the finalizer: {}",
            describe(o)
        );
        assert!(
            o["metadata"]["deletionTimestamp"].is_null(),
            "{name} is being deleted: {}",
            describe(o)
        );
        let generation = &o["metadata"]["generation"];
        assert!(generation.is_i64(), "{name}: no metadata.generation");
        assert_eq!(
            &o["status"]["observedGeneration"],
            generation,
            "{name}: status.observedGeneration: {}",
            describe(o)
        );
        let configured = o["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Configured"))
            .unwrap_or_else(|| panic!("{name}: no Configured condition"));
        assert_eq!(
            &configured["observedGeneration"],
            generation,
            "{name}: the Configured condition's observedGeneration: {}",
            describe(o)
        );
    }
    let m1 = e2e.metrics(i);
    let transactions =
        m1.sum("kubemaker_cib_transactions_total") - m0.sum("kubemaker_cib_transactions_total");
    let conflicts =
        m1.sum("kubemaker_cib_conflicts_total") - m0.sum("kubemaker_cib_conflicts_total");
    let epochs = operator::cib_version().1 - epoch0;
    // Unable to renew the lease for longer than it lasts, the leader stepped down (it may not go
    // on reconciling), and took the lease again without exiting.
    let log = e2e.ctl(i).log();
    let since_kill = log.get(log0..).unwrap_or_default();
    assert!(
        since_kill.contains("stopped reconciling"),
        "the leader did not step down while it could not renew the lease{}",
        e2e.context()
    );
    let terms = since_kill.matches("became leader").count();
    assert!(
        terms >= 1,
        "the controller did not take the lease again{}",
        e2e.context()
    );
    step(&format!(
        "   kube-apiserver ready {:.1} s after the kill; all {N} Configured {:.1} s after it was ready; \
         {transactions} CIB transactions ({conflicts} conflicts, epoch +{epochs}); \
         controller {} alive, leadership taken again {terms} time(s)",
        api_down.as_secs_f64(),
        configured_after.as_secs_f64(),
        e2e.ctl(i).identity,
    ));

    delete_group(e2e, &sel, &names);
    e2e.assert_alive(i);
    e2e.time("k. API server restart", t0);
}

fn finish(e2e: &mut E2e) {
    step("finally: the authkey was never replaced; delete everything; no secrets in any log");
    let t0 = Instant::now();
    let (key, version) = e2e
        .api
        .secret_bytes(NS, AUTHKEY_SECRET, "authkey")
        .expect("the authkey Secret still exists");
    assert!(key == e2e.key, "the authkey Secret was overwritten");
    assert_eq!(version, e2e.key_version, "the authkey Secret was updated");

    e2e.api
        .kubectl_ok(&["delete", "remotenodes", "rn-a", "guest1", "--wait=false"]);
    e2e.wait_rn_gone("rn-a", Duration::from_secs(120));
    e2e.wait_rn_gone("guest1", Duration::from_secs(120));
    e2e.wait_cib("no primitives left", Duration::from_secs(30), |root| {
        let left: Vec<String> = primitives(root).iter().map(|p| p.to_xml()).collect();
        if left.is_empty() && !has_node_entry(root, "rn-a") && !has_node_entry(root, "guest1") {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    support::mark_remote_key_idle();
    e2e.api
        .kubectl_ok(&["delete", "pacemakercluster", CLUSTER, "--wait=false"]);
    e2e.wait(
        "the PacemakerCluster gone",
        Duration::from_secs(30),
        || match e2e.api.try_get("pacemakercluster", None, CLUSTER)? {
            Some(o) => Err(describe(&o)),
            None => Ok(()),
        },
    );
    let last = e2e.controllers.len() - 1;
    e2e.ctl_mut(last).terminate();
    let status = e2e.ctl_mut(last).wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "SIGTERM: {status:?}");

    for c in &e2e.controllers {
        let log = c.log();
        support::assert_key_not_logged(&log, &e2e.key, &format!("log of {}", c.identity));
        assert!(
            !log.contains(&e2e.password),
            "the log of {} contains the hacluster password (not shown)",
            c.identity
        );
    }

    let sel = format!("{TEST_LABEL}=true");
    e2e.api
        .kubectl_ok(&["delete", "nodes", "-l", &sel, "--wait=false"]);
    e2e.api.delete_namespace(NS);
    e2e.cluster.reset();
    e2e.api.stop_if_started();
    e2e.finished = true;
    e2e.time("finally: cleanup", t0);

    eprintln!("\n[operator_e2e] phase timings");
    let mut total = Duration::ZERO;
    for (phase, d) in &e2e.timings {
        eprintln!("  {phase:<28} {:>7.1} s", d.as_secs_f64());
        total += *d;
    }
    eprintln!("  {:<28} {:>7.1} s", "total", total.as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// The harness's own parsers
// ---------------------------------------------------------------------------------------------

#[test]
fn harness_parses_rfc3339() {
    assert_eq!(operator::parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        operator::parse_rfc3339("2000-03-01T00:00:01.5Z"),
        Some(951868801)
    );
}

#[test]
fn harness_base64_round_trip() {
    for n in 0..10 {
        let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
        assert_eq!(
            support::base64_decode(&support::base64_encode(&data)).unwrap(),
            data
        );
    }
    assert_eq!(support::base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(support::base64_encode(b"fo"), "Zm8=");
}

#[test]
fn harness_parses_prometheus_text() {
    let m = operator::Metrics::parse(
        "# HELP x\nkubemaker_leader 1\nkubemaker_reconcile_total{result=\"ok\"} 5\nkubemaker_reconcile_total{result=\"error\"} 2\nkubemaker_cib_connected{cluster=\"e2e\"} 1\n",
    );
    assert_eq!(m.get("kubemaker_leader", &[]), Some(1.0));
    assert_eq!(
        m.get("kubemaker_reconcile_total", &[("result", "ok")]),
        Some(5.0)
    );
    assert_eq!(m.sum("kubemaker_reconcile_total"), 7.0);
    assert_eq!(
        m.get("kubemaker_cib_connected", &[("cluster", "e2e")]),
        Some(1.0)
    );
}
