//! The chart's real pods on real kubelet nodes, joined to the real Pacemaker test cluster.
//!
//! `scripts/build-image.sh` builds the kubemaker and pause images (no Docker, no registry) and
//! `scripts/local-k8s.sh up` starts a control plane and two workers (containerd + runc + kubelet +
//! kube-proxy, each in its own network, mount and UTS namespaces); the chart is installed unchanged
//! by `helm install` with only the image tag set. Then, against Pacemaker 2.1.5 on the host:
//! the controller pod Ready through its own probes and serving /metrics on its pod IP; a remoted pod
//! per labelled worker (host network, the authkey Secret mounted 0400); both workers online in
//! `crm_mon` as remote nodes; Dummies started there with their state files on that worker's own
//! host path; `kubectl exec` runs `crm_mon -1` and `crm_attribute -l reboot` in a remoted pod; a
//! deleted remoted pod leaves its node cleanly (resources stopped, no failed action, no unclean node)
//! and its replacement, once Pacemaker reconnects (a `crm_resource --refresh` of the connection, see
//! below), brings the resources back; no pod logs the key.
//!
//! Run alone: `sudo cargo test --test k8s_nodes -- --nocapture` (builds the image on first use).

mod support;

#[path = "support/operator.rs"]
mod operator;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use operator::{base64_encode, text, wait_for};
use support::{Cluster, MonView};

const NS: &str = "km-nodes-e2e";
const RELEASE: &str = "kubemaker";
const NODES: [(&str, &str); 2] = [("km-worker1", "10.232.0.11"), ("km-worker2", "10.232.0.12")];
const K8S_BIN: &str = "/var/tmp/kubemaker-cache/k8s/bin";
const NODE_STATE: &str = "/var/tmp/kubemaker-test/k8s-local/nodes";

fn step(msg: &str) {
    eprintln!("[k8s_nodes] {msg}");
}

fn script(name: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(support::repo_root().join("scripts").join(name));
    c
}

fn local_k8s(args: &[&str], timeout: Duration) -> Output {
    support::run_with_timeout(script("local-k8s.sh").args(args), timeout)
}

fn kubectl(args: &[&str]) -> Output {
    local_k8s(&[&["kubectl"], args].concat(), Duration::from_secs(60))
}

fn kubectl_ok(args: &[&str]) -> String {
    let o = kubectl(args);
    assert!(
        o.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kubectl exec POD -- args...` in the release namespace.
fn exec_in(pod: &str, args: &[&str]) -> Output {
    kubectl(&[&["-n", NS, "exec", pod, "--"], args].concat())
}

/// Pods of the release as (name, component, node, ready, pod IP, phase).
fn pods() -> Vec<(String, String, String, bool, String, String)> {
    let out = kubectl_ok(&[
        "-n",
        NS,
        "get",
        "pods",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}{"\t"}{.metadata.labels.app\.kubernetes\.io/component}{"\t"}{.spec.nodeName}{"\t"}{.status.conditions[?(@.type=="Ready")].status}{"\t"}{.status.podIP}{"\t"}{.status.phase}{"\t"}{.metadata.deletionTimestamp}{"\n"}{end}"#,
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            // pods being deleted are not counted
            (f.len() >= 7 && f[6].is_empty()).then(|| {
                (
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3] == "True",
                    f[4].to_string(),
                    f[5].to_string(),
                )
            })
        })
        .collect()
}

fn remoted_pod_on(node: &str) -> Result<String, String> {
    pods()
        .into_iter()
        .find(|p| p.1 == "remoted" && p.2 == node && p.3)
        .map(|p| p.0)
        .ok_or_else(|| format!("no Ready remoted pod on {node}: {:?}", pods()))
}

/// The images' archives, built (or taken from the cache) by scripts/build-image.sh.
fn build_images() -> (String, PathBuf, PathBuf) {
    let o = support::run_with_timeout(&mut script("build-image.sh"), Duration::from_secs(1800));
    assert!(o.status.success(), "scripts/build-image.sh: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let field = |prefix: &str| -> (String, PathBuf) {
        let line = out
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("build-image.sh printed no `{prefix}` line: {out}"));
        let mut it = line[prefix.len()..].split_whitespace();
        let name = it.next().unwrap_or_default().to_string();
        let file = PathBuf::from(it.next().unwrap_or_default());
        assert!(file.is_file(), "{line}: no such file");
        (name, file)
    };
    let (image, image_file) = field("image: ");
    let (_, pause_file) = field("pause: ");
    let tag = image
        .rsplit_once(':')
        .map(|(_, t)| t.to_string())
        .unwrap_or_else(|| panic!("image name without tag: {image}"));
    (tag, image_file, pause_file)
}

fn crm_failures_or_unclean(v: &MonView) -> Vec<String> {
    let mut bad: Vec<String> = v
        .failures()
        .into_iter()
        .map(|(rsc, op)| format!("failed {op} of {rsc}"))
        .collect();
    bad.extend(
        v.nodes()
            .iter()
            .filter(|n| n.unclean)
            .map(|n| format!("{} unclean", n.name)),
    );
    bad
}

/// Stops the local nodes when the test ends, however it ends.
struct NodesDown;
impl Drop for NodesDown {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", NS, "--wait=false"]);
        let o = local_k8s(&["down"], Duration::from_secs(300));
        if !o.status.success() {
            eprintln!("[k8s_nodes] local-k8s.sh down failed: {}", text(&o));
        }
    }
}

#[test]
fn chart_pods_on_real_nodes_join_the_cluster() {
    if !support::require_root()
        || !support::require_tools(&[
            "containerd",
            "runc",
            "mmdebstrap",
            "crm_mon",
            "/var/tmp/kubemaker-cache/k8s/bin/kubelet",
            "/var/tmp/kubemaker-cache/k8s/bin/helm",
        ])
    {
        return;
    }
    let t0 = Instant::now();
    let cluster = Cluster::acquire();
    let key = support::test_authkey();
    support::install_cluster_authkey(&key);

    step("building the images (scripts/build-image.sh; cached by its inputs)");
    let (tag, image_file, pause_file) = build_images();
    step(&format!(
        "image tag {tag}, {:.0} s",
        t0.elapsed().as_secs_f64()
    ));

    step("starting the local nodes (scripts/local-k8s.sh up)");
    let _down = NodesDown;
    let up_start = Instant::now();
    let o = local_k8s(
        &[
            "up",
            "--fresh",
            "--image",
            pause_file.to_str().expect("utf-8"),
            "--image",
            image_file.to_str().expect("utf-8"),
        ],
        Duration::from_secs(900),
    );
    assert!(o.status.success(), "local-k8s.sh up: {}", text(&o));
    step(&format!(
        "nodes Ready, images imported: {:.1} s",
        up_start.elapsed().as_secs_f64()
    ));

    // A namespace of our own, allowing privileged pods (what the README asks of users).
    let _ = kubectl(&["delete", "namespace", NS, "--timeout=120s"]);
    kubectl_ok(&["create", "namespace", NS]);
    kubectl_ok(&[
        "label",
        "namespace",
        NS,
        "pod-security.kubernetes.io/enforce=privileged",
    ]);
    let enforce = kubectl_ok(&[
        "get",
        "namespace",
        NS,
        "-o",
        r#"jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}"#,
    ]);
    assert_eq!(enforce, "privileged");
    for (node, _) in NODES {
        kubectl_ok(&[
            "label",
            "node",
            node,
            "kubemaker.io/remote-node=true",
            "--overwrite",
        ]);
    }
    // The key the cluster has, adopted as the Secret (created before the chart, as the README says).
    let key_file = std::env::temp_dir().join("km-nodes-e2e-authkey");
    support::write_key_file(&key_file, &key);
    let o = kubectl(&[
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "kubemaker-authkey",
        &format!("--from-file=authkey={}", key_file.display()),
    ]);
    let _ = std::fs::remove_file(&key_file);
    assert!(o.status.success(), "create secret: {}", text(&o));

    step("helm install (the chart unchanged, only the image tag set)");
    let chart = support::repo_root().join("charts/kubemaker");
    let helm_start = Instant::now();
    let o = support::run_with_timeout(
        Command::new(format!("{K8S_BIN}/helm"))
            .env(
                "KUBECONFIG",
                "/var/tmp/kubemaker-test/k8s-local/control-plane/admin.kubeconfig",
            )
            .env(
                "HELM_CACHE_HOME",
                "/var/tmp/kubemaker-test/k8s-local/helm/cache",
            )
            .env(
                "HELM_CONFIG_HOME",
                "/var/tmp/kubemaker-test/k8s-local/helm/config",
            )
            .env(
                "HELM_DATA_HOME",
                "/var/tmp/kubemaker-test/k8s-local/helm/data",
            )
            .args(["install", RELEASE])
            .arg(&chart)
            .args(["-n", NS, "--set", &format!("image.tag={tag}")]),
        Duration::from_secs(180),
    );
    assert!(o.status.success(), "helm install: {}", text(&o));

    let all = wait_for(
        "the controller and a remoted pod per worker Ready",
        Duration::from_secs(180),
        || {
            let p = pods();
            let controller = p.iter().filter(|p| p.1 == "controller" && p.3).count();
            let on: Vec<&str> = p
                .iter()
                .filter(|p| p.1 == "remoted" && p.3)
                .map(|p| p.2.as_str())
                .collect();
            if controller == 1 && NODES.iter().all(|(n, _)| on.contains(n)) {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    step(&format!(
        "pods Ready {:.1} s after helm install",
        helm_start.elapsed().as_secs_f64()
    ));
    // remoted uses the host network: its pod IP is the node's address
    for (node, ip) in NODES {
        let pod = all
            .iter()
            .find(|p| p.1 == "remoted" && p.2 == node)
            .expect("remoted pod");
        assert_eq!(
            pod.4, ip,
            "remoted pod on {node} has not the node's address"
        );
    }
    let controller = all
        .iter()
        .find(|p| p.1 == "controller")
        .expect("controller");
    assert!(
        controller.4.starts_with("10.233."),
        "the controller pod has no CNI address: {controller:?}"
    );
    // /metrics on the pod IP (routed to the node's pod range)
    let metrics = support::run_with_timeout(
        Command::new("curl").args([
            "-fsS",
            "--max-time",
            "5",
            &format!("http://{}:8080/metrics", controller.4),
        ]),
        Duration::from_secs(10),
    );
    assert!(
        metrics.status.success(),
        "curl /metrics: {}",
        text(&metrics)
    );
    assert!(
        String::from_utf8_lossy(&metrics.stdout).contains("kubemaker_leader"),
        "/metrics lacks kubemaker_leader"
    );
    // the Secret is mounted read-only with mode 0400
    let pod1 = remoted_pod_on(NODES[0].0).expect("remoted pod");
    let mode = exec_in(&pod1, &["stat", "-L", "-c", "%a", "/etc/pacemaker/authkey"]);
    assert!(mode.status.success(), "stat in the pod: {}", text(&mode));
    let mode = String::from_utf8_lossy(&mode.stdout).into_owned();
    assert_eq!(mode.trim(), "400", "authkey mode in the remoted pod");

    // Ready came from the readiness file (listening with a key), and probing never opened a
    // connection: no failed-handshake warning in any remoted log after several probe periods.
    std::thread::sleep(Duration::from_secs(12));
    for (node, _) in NODES {
        let pod = remoted_pod_on(node).expect("remoted pod");
        let f = exec_in(&pod, &["test", "-e", "/run/kubemaker/remoted.ready"]);
        assert!(
            f.status.success(),
            "{pod}: Ready without the readiness file"
        );
        let logs = kubectl_ok(&["-n", NS, "logs", &pod]);
        assert!(
            !logs.contains("TLS handshake failed"),
            "{pod}: the readiness probe caused handshake failures:\n{logs}"
        );
    }

    step("connection resources for both workers");
    for (node, ip) in NODES {
        cluster.create_resource_xml(&format!(
            r#"<primitive class="ocf" id="{node}" provider="pacemaker" type="remote"><instance_attributes id="{node}-ia"><nvpair id="{node}-server" name="server" value="{ip}"/></instance_attributes><operations><op id="{node}-monitor" name="monitor" interval="10s" timeout="15s"/></operations></primitive>"#
        ));
    }
    let join_start = Instant::now();
    cluster.wait_until("both workers online", Duration::from_secs(120), |v| {
        NODES.iter().all(|(n, _)| v.remote_node_up(n))
    });
    step(&format!(
        "both workers online in crm_mon after {:.1} s",
        join_start.elapsed().as_secs_f64()
    ));

    let mut ids = Vec::new();
    for (i, (node, _)) in NODES.iter().enumerate() {
        let set =
            support::create_pinned_dummies(&cluster, &format!("kn{}-", i + 1), 0..2, node, "10s");
        ids.push(set);
    }
    cluster.wait_until(
        "Dummies started on their workers",
        Duration::from_secs(90),
        |v| {
            NODES
                .iter()
                .zip(&ids)
                .all(|((node, _), set)| support::all_started_on(v, set, node))
        },
    );
    // state files on the worker's own host path, not the host's
    for ((node, _), set) in NODES.iter().zip(&ids) {
        for id in set {
            let state = support::dummy_state_file(id);
            let on_node = Path::new(NODE_STATE).join(node).join(format!("fs{state}"));
            assert!(
                on_node.is_file(),
                "{id}: no state file at {}",
                on_node.display()
            );
            assert!(
                !Path::new(&state).exists(),
                "{id}: state file on the host's {state}"
            );
        }
    }

    step("Pacemaker's tools in a remoted pod (kubectl exec)");
    let mon = exec_in(&pod1, &["crm_mon", "-1"]);
    assert!(
        mon.status.success(),
        "crm_mon -1 in the pod: {}",
        text(&mon)
    );
    assert!(
        String::from_utf8_lossy(&mon.stdout).contains("kn1-0"),
        "crm_mon -1 in the pod: {}",
        text(&mon)
    );
    let set = exec_in(
        &pod1,
        &["crm_attribute", "-l", "reboot", "-n", "km-e2e", "-v", "42"],
    );
    assert!(
        set.status.success(),
        "crm_attribute -l reboot -v: {}",
        text(&set)
    );
    wait_for(
        "the transient attribute readable in the pod",
        Duration::from_secs(30),
        || {
            let get = exec_in(
                &pod1,
                &["crm_attribute", "-l", "reboot", "-n", "km-e2e", "-G", "-q"],
            );
            let out = String::from_utf8_lossy(&get.stdout).trim().to_string();
            if get.status.success() && out == "42" {
                Ok(())
            } else {
                Err(text(&get))
            }
        },
    );

    step("deleting the remoted pod on km-worker2 (as node maintenance does)");
    let (node2, _) = NODES[1];
    let pod2 = remoted_pod_on(node2).expect("remoted pod");
    let del_start = Instant::now();
    let o = kubectl(&[
        "-n",
        NS,
        "delete",
        "pod",
        &pod2,
        "--wait=true",
        "--timeout=300s",
    ]);
    assert!(o.status.success(), "kubectl delete pod: {}", text(&o));
    let gone_after = del_start.elapsed();
    step(&format!(
        "pod {pod2} gone after {:.1} s (grace period 600 s)",
        gone_after.as_secs_f64()
    ));
    assert!(
        gone_after < Duration::from_secs(300),
        "the pod took {gone_after:?} to end"
    );
    let v = MonView::parse(&cluster.crm_mon_xml());
    let bad = crm_failures_or_unclean(&v);
    assert!(
        bad.is_empty(),
        "after the pod deletion: {bad:?}\n{}",
        cluster.crm_mon_text()
    );
    wait_for(
        "a replacement remoted pod Ready on km-worker2",
        Duration::from_secs(120),
        || {
            remoted_pod_on(node2).and_then(|p| {
                if p != pod2 {
                    Ok(p)
                } else {
                    Err("old pod".into())
                }
            })
        },
    );
    // Pacemaker 2.1.5 stops the connection of a node that shut down gracefully and starts it again
    // only at its next transition (cluster-recheck-interval, 15 min by default, or any CIB change).
    // What an admin runs to have it reconnect now (a refresh of the connection makes a transition; a
    // cleanup does not when nothing failed); the controller does not do it for them yet.
    let o = support::run_with_timeout(
        Command::new("crm_resource").args(["--refresh", "--resource", node2]),
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "crm_resource --refresh: {}", text(&o));
    let rejoin = Instant::now();
    cluster.wait_until(
        "km-worker2 online with its Dummies started again",
        Duration::from_secs(60),
        |v| v.remote_node_up(node2) && support::all_started_on(v, &ids[1], node2),
    );
    step(&format!(
        "km-worker2 back with its Dummies {:.1} s after the refresh",
        rejoin.elapsed().as_secs_f64()
    ));
    let v = MonView::parse(&cluster.crm_mon_xml());
    let bad = crm_failures_or_unclean(&v);
    assert!(
        bad.is_empty(),
        "after the rejoin: {bad:?}\n{}",
        cluster.crm_mon_text()
    );

    step("no pod logs the key");
    let (b64, hex) = (
        base64_encode(&key),
        key.iter()
            .take(32)
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    );
    for p in pods() {
        let logs = kubectl_ok(&["-n", NS, "logs", &p.0]);
        assert!(!logs.is_empty() || p.1 == "remoted", "{}: no logs", p.0);
        assert!(
            !logs.contains(&b64[..64]) && !logs.contains(&hex),
            "{} logs the authkey",
            p.0
        );
    }

    step("leaving the cluster clean");
    cluster.reset();
    let o = support::run_with_timeout(
        Command::new(format!("{K8S_BIN}/helm"))
            .env(
                "KUBECONFIG",
                "/var/tmp/kubemaker-test/k8s-local/control-plane/admin.kubeconfig",
            )
            .args([
                "uninstall",
                RELEASE,
                "-n",
                NS,
                "--wait",
                "--timeout",
                "300s",
            ]),
        Duration::from_secs(320),
    );
    assert!(o.status.success(), "helm uninstall: {}", text(&o));
    step(&format!("done in {:.0} s", t0.elapsed().as_secs_f64()));
}
