//! Kubernetes side of the operator's end-to-end tests: the test API server of
//! `scripts/test-apiserver.sh`, `kubectl`/`helm` with its admin kubeconfig, a fresh namespace with
//! the chart installed, a ServiceAccount kubeconfig (so `kubemaker controller` runs with exactly
//! the chart's RBAC), a wrapper around the controller process (logs, signals, `/metrics`,
//! `/readyz`), and readers for objects, conditions, Events and the CIB.
//!
//! Included next to `mod support;` and the `cib_port` hook:
//!
//! ```ignore
//! mod support;
//! #[path = "support/cib_port.rs"]
//! mod cib_port;
//! #[path = "support/operator.rs"]
//! mod operator;
//! ```
//!
//! Every command and every wait is bounded in time. Secrets (the authkey, the hacluster password,
//! ServiceAccount tokens) are passed on stdin or in 0600 files, never on a command line, and never
//! appear in a panic message.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kubemaker::wire::Element;
use serde_json::{Value, json};

use super::support::{self, Daemon, repo_root, run_with_input, tail, wait_child};

/// Where the e2e tests keep kubeconfigs, controller logs and key files.
pub const STATE_DIR: &str = "/var/tmp/kubemaker-test/operator-e2e";
/// Helm release name. Not `kubemaker`: `tests/operator_crds.rs` applies `manifests/` (the chart
/// rendered as release `kubemaker`), whose cluster-scoped RBAC objects helm could not adopt.
pub const RELEASE: &str = "kubemaker-e2e";
/// The controller ServiceAccount the chart creates for [`RELEASE`].
pub const CONTROLLER_SA: &str = "kubemaker-e2e-controller";
/// Label on every object the e2e tests create themselves (Nodes, RemoteNodes).
pub const TEST_LABEL: &str = "kubemaker-e2e";
/// The finalizer the controller puts on RemoteNodes.
pub const FINALIZER: &str = "kubemaker.io/cib-cleanup";
/// Default Lease name of the controller.
pub const LEASE: &str = "kubemaker-controller";

const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Commands with stdin and a time limit
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` with `input` on stdin (or /dev/null); see [`run_with_input`].
pub fn run_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    run_with_input(cmd, input, timeout)
}

/// stdout and stderr of `o`, lossy UTF-8.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ---------------------------------------------------------------------------------------------
// The test API server
// ---------------------------------------------------------------------------------------------

/// `scripts/test-apiserver.sh`.
pub fn apiserver_script() -> PathBuf {
    repo_root().join("scripts/test-apiserver.sh")
}

/// The running test API server and the environment its tools need (KUBECONFIG with the admin
/// credentials, PATH with our kubectl and helm first, their cache folders).
pub struct Api {
    env: Vec<(String, String)>,
    /// Whether [`Api::ensure`] started it (then [`Api::stop_if_started`] stops it).
    pub started: bool,
    pub url: String,
    pub ca_file: String,
}

impl Api {
    /// Starts the test API server unless it already runs (like `tests/operator_crds.rs`), then
    /// reads its environment. Err says why it cannot run (the caller skips or, in CI, fails).
    pub fn ensure() -> Result<Api, String> {
        let script = apiserver_script();
        let ready = run_input(
            Command::new("bash").arg(&script).arg("status"),
            None,
            Duration::from_secs(30),
        )
        .status
        .success();
        let mut started = false;
        if !ready {
            let out = run_input(
                Command::new("bash").arg(&script).arg("start"),
                None,
                Duration::from_secs(300),
            );
            if !out.status.success() {
                return Err(format!(
                    "`{} start` failed: {}",
                    script.display(),
                    text(&out)
                ));
            }
            started = true;
        }
        // Evaluate the script's `export` lines in a shell and read back the variables we need.
        const VARS: [&str; 9] = [
            "KUBECONFIG",
            "PATH",
            "KUBECACHEDIR",
            "HELM_CACHE_HOME",
            "HELM_CONFIG_HOME",
            "HELM_DATA_HOME",
            "KUBEMAKER_APISERVER_URL",
            "KUBEMAKER_APISERVER_CA",
            "KUBEMAKER_K8S_BIN",
        ];
        let shell = format!(
            "eval \"$(bash '{}' env)\" && for v in {}; do printf '%s=%s\\0' \"$v\" \"${{!v}}\"; done",
            script.display(),
            VARS.join(" ")
        );
        let out = run_input(
            Command::new("bash").arg("-c").arg(&shell),
            None,
            Duration::from_secs(30),
        );
        if !out.status.success() {
            return Err(format!("`{} env` failed: {}", script.display(), text(&out)));
        }
        let mut env = Vec::new();
        for item in out.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()) {
            let item = String::from_utf8_lossy(item);
            if let Some((k, v)) = item.split_once('=') {
                env.push((k.to_string(), v.to_string()));
            }
        }
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let api = Api {
            url: get("KUBEMAKER_APISERVER_URL"),
            ca_file: get("KUBEMAKER_APISERVER_CA"),
            env,
            started,
        };
        if api.url.is_empty() || api.ca_file.is_empty() {
            return Err("the API server's env lacks its URL or CA".into());
        }
        for tool in ["kubectl", "helm"] {
            if !api.have(tool) {
                return Err(format!(
                    "{tool} not found (run scripts/install-k8s-test-deps.sh)"
                ));
            }
        }
        Ok(api)
    }

    fn have(&self, tool: &str) -> bool {
        let path = self
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        std::env::split_paths(&path).any(|d| d.join(tool).is_file())
    }

    /// Stops the API server if [`Api::ensure`] started it (only our script's own processes).
    pub fn stop_if_started(&self) {
        if self.started {
            let _ = run_input(
                Command::new("bash").arg(apiserver_script()).arg("stop"),
                None,
                Duration::from_secs(120),
            );
        }
    }

    /// A command with the API server's environment.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// `kubectl args` (60 s limit), whatever its exit status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_input(args, None)
    }

    /// `kubectl args` with `input` on stdin.
    pub fn kubectl_input(&self, args: &[&str], input: Option<&str>) -> Output {
        run_input(
            self.command("kubectl").args(args),
            input.map(str::as_bytes),
            KUBECTL_TIMEOUT,
        )
    }

    /// `kubectl args`; panics with its output unless it succeeds. Returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl apply -f -` of a JSON object (or a `List`); panics on failure. Returns stdout.
    /// The object is not shown on failure (it may be a Secret).
    pub fn apply(&self, obj: &Value) -> String {
        let o = self.kubectl_input(&["apply", "-f", "-"], Some(&obj.to_string()));
        assert!(o.status.success(), "kubectl apply failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl create -f -`; panics on failure.
    pub fn create(&self, obj: &Value) -> String {
        let o = self.kubectl_input(&["create", "-f", "-"], Some(&obj.to_string()));
        assert!(o.status.success(), "kubectl create failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `helm args` (180 s limit), whatever its exit status.
    pub fn helm(&self, args: &[&str]) -> Output {
        run_input(
            self.command("helm").args(args),
            None,
            Duration::from_secs(180),
        )
    }

    /// The object as JSON; Ok(None) when it does not exist. `kind` as kubectl takes it
    /// (`remotenode`, `pacemakercluster`, `node`, `secret`...); `ns` for namespaced kinds.
    pub fn try_get(
        &self,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, String> {
        let mut args = vec!["get", kind, name, "-o", "json"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let o = self.kubectl(&args);
        if o.status.success() {
            return serde_json::from_slice(&o.stdout)
                .map(Some)
                .map_err(|e| format!("kubectl get {kind} {name}: not JSON: {e}"));
        }
        let err = String::from_utf8_lossy(&o.stderr);
        if err.contains("NotFound") || err.contains("not found") {
            Ok(None)
        } else {
            Err(format!("kubectl get {kind} {name}: {}", err.trim()))
        }
    }

    /// Cluster-scoped `kind/name` as JSON, None when it does not exist; panics on other errors.
    pub fn get_json(&self, kind: &str, name: &str) -> Option<Value> {
        self.try_get(kind, None, name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Namespaced `kind/name` as JSON, None when it does not exist; panics on other errors.
    pub fn get_json_ns(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        self.try_get(kind, Some(ns), name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `kubectl get kind [selector args] -o json`'s items.
    pub fn list(&self, kind: &str, extra: &[&str]) -> Result<Vec<Value>, String> {
        let mut args = vec!["get", kind, "-o", "json"];
        args.extend_from_slice(extra);
        let o = self.kubectl(&args);
        if !o.status.success() {
            return Err(format!("kubectl get {kind}: {}", text(&o).trim()));
        }
        let v: Value = serde_json::from_slice(&o.stdout)
            .map_err(|e| format!("kubectl get {kind}: not JSON: {e}"))?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    /// Events (core/v1 view, so events.k8s.io ones too) in namespace `ns` about objects named `name`.
    pub fn events(&self, ns: &str, name: &str) -> Vec<EventInfo> {
        let selector = format!("involvedObject.name={name}");
        let items = self
            .list("events", &["-n", ns, "--field-selector", &selector])
            .unwrap_or_else(|e| panic!("{e}"));
        items
            .iter()
            .map(|e| EventInfo {
                reason: str_at(e, "/reason"),
                type_: str_at(e, "/type"),
                kind: str_at(e, "/involvedObject/kind"),
                uid: str_at(e, "/involvedObject/uid"),
                message: str_at(e, "/message"),
            })
            .collect()
    }

    /// Reasons of the Events about the object with this uid (cluster-scoped objects' Events live
    /// in `default`), e.g. `["Configured", "Online"]`.
    pub fn event_reasons(&self, name: &str, uid: &str) -> Vec<String> {
        self.events("default", name)
            .into_iter()
            .filter(|e| e.uid == uid)
            .map(|e| e.reason)
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Test namespace, chart, credentials
    // -----------------------------------------------------------------------------------------

    /// Applies `crds/` (server-side, so a changed CRD is updated; helm never updates CRDs) and
    /// waits until both are established.
    pub fn apply_crds(&self) {
        let dir = repo_root().join("crds");
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            dir.to_str().expect("utf-8 path"),
        ]);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/remotenodes.kubemaker.io",
            "crd/pacemakerclusters.kubemaker.io",
        ]);
    }

    /// Which kubemaker objects and controllers on this (shared) API server are not ours: other
    /// PacemakerClusters and RemoteNodes, and Leases named [`LEASE`] outside `ns` renewed in the last
    /// 60 s (a running controller reconciles every object, ours included). Ours: PacemakerClusters
    /// named in `my_clusters` or labelled [`TEST_LABEL`]; RemoteNodes labelled [`TEST_LABEL`],
    /// auto-joined into or referring to one of `my_clusters`, or `tests/operator_crds.rs`'s
    /// `km-crd-test-*`.
    pub fn foreign_activity(&self, ns: &str, my_clusters: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        let labelled = |o: &Value| o["metadata"]["labels"][TEST_LABEL] == "true";
        let mine = |c: &str| my_clusters.contains(&c);
        for pc in self
            .list("pacemakerclusters.kubemaker.io", &[])
            .unwrap_or_default()
        {
            let name = str_at(&pc, "/metadata/name");
            if !mine(&name) && !labelled(&pc) {
                found.push(format!("PacemakerCluster {name}"));
            }
        }
        for rn in self
            .list("remotenodes.kubemaker.io", &[])
            .unwrap_or_default()
        {
            let name = str_at(&rn, "/metadata/name");
            let ours = labelled(&rn)
                || mine(&str_at(&rn, "/metadata/labels/kubemaker.io~1auto-join"))
                || mine(&str_at(&rn, "/spec/clusterRef/name"))
                || name.starts_with("km-crd-test-");
            if !ours {
                found.push(format!("RemoteNode {name}"));
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        for lease in self
            .list("leases.coordination.k8s.io", &["--all-namespaces"])
            .unwrap_or_default()
        {
            let lns = str_at(&lease, "/metadata/namespace");
            let holder = str_at(&lease, "/spec/holderIdentity");
            let renewed = parse_rfc3339(&str_at(&lease, "/spec/renewTime"));
            if str_at(&lease, "/metadata/name") == LEASE
                && lns != ns
                && !holder.is_empty()
                && renewed.is_some_and(|t| now - t < 60)
            {
                found.push(format!("a controller ({holder}, Lease in namespace {lns})"));
            }
        }
        found
    }

    /// Waits (at most `timeout`) until nobody else uses kubemaker objects on the shared API server
    /// (see [`Api::foreign_activity`]); panics naming them otherwise. Our own objects would be
    /// reconciled by another controller, and cleaning up must never delete someone else's.
    pub fn wait_until_unshared(&self, ns: &str, my_clusters: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut noted = false;
        loop {
            let foreign = self.foreign_activity(ns, my_clusters);
            if foreign.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the test API server is in use by someone else after waiting {timeout:?}: {}",
                foreign.join(", ")
            );
            if !noted {
                eprintln!(
                    "[operator] waiting for others to finish with the test API server: {}",
                    foreign.join(", ")
                );
                noted = true;
            }
            thread::sleep(Duration::from_secs(5));
        }
    }

    /// Removes what an earlier (crashed) run may have left: our RemoteNodes and PacemakerClusters
    /// (see [`Api::foreign_activity`]; finalizers stripped: no controller of ours runs now), Nodes
    /// labelled [`TEST_LABEL`], the helm release and namespace `ns`. Never touches other objects.
    pub fn remove_leftovers(&self, ns: &str, my_clusters: &[&str]) {
        let labelled = |o: &Value| o["metadata"]["labels"][TEST_LABEL] == "true";
        let mine = |c: &str| my_clusters.contains(&c);
        let rns: Vec<String> = self
            .list("remotenodes.kubemaker.io", &[])
            .unwrap_or_default()
            .iter()
            .filter(|rn| {
                labelled(rn)
                    || mine(&str_at(rn, "/metadata/labels/kubemaker.io~1auto-join"))
                    || mine(&str_at(rn, "/spec/clusterRef/name"))
                    || str_at(rn, "/metadata/name").starts_with("km-crd-test-")
            })
            .map(|rn| str_at(rn, "/metadata/name"))
            .collect();
        self.strip_finalizers_and_delete("remotenodes.kubemaker.io", &rns);
        let pcs: Vec<String> = self
            .list("pacemakerclusters.kubemaker.io", &[])
            .unwrap_or_default()
            .iter()
            .filter(|pc| labelled(pc) || mine(&str_at(pc, "/metadata/name")))
            .map(|pc| str_at(pc, "/metadata/name"))
            .collect();
        self.strip_finalizers_and_delete("pacemakerclusters.kubemaker.io", &pcs);
        let sel = format!("{TEST_LABEL}=true");
        let _ = self.kubectl(&["delete", "nodes", "-l", &sel, "--wait=false"]);
        self.delete_namespace(ns);
    }

    /// Deletes the named objects of a cluster-scoped kind after removing their finalizers (one
    /// `kubectl replace` for all). Only for when no controller of ours runs.
    pub fn strip_finalizers_and_delete(&self, kind: &str, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let Ok(items) = self.list(kind, &[]) else {
            return; // the CRD is not installed yet: nothing to clean
        };
        let with_finalizers: Vec<Value> = items
            .into_iter()
            .filter(|i| names.contains(&str_at(i, "/metadata/name")))
            .filter(|i| {
                i["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
            })
            .map(|mut i| {
                i["metadata"]["finalizers"] = json!([]);
                i
            })
            .collect();
        if !with_finalizers.is_empty() {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": with_finalizers});
            let o = self.kubectl_input(&["replace", "-f", "-"], Some(&list.to_string()));
            if !o.status.success() {
                eprintln!(
                    "[operator] stripping finalizers of {kind}: {}",
                    text(&o).trim()
                );
            }
        }
        let mut args = vec!["delete", kind, "--ignore-not-found", "--wait=false"];
        args.extend(names.iter().map(String::as_str));
        let _ = self.kubectl(&args);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let left = self.list(kind, &[]).map(|items| {
                items
                    .iter()
                    .filter(|i| names.contains(&str_at(i, "/metadata/name")))
                    .count()
            });
            if left.is_ok_and(|n| n == 0) {
                return;
            }
            thread::sleep(Duration::from_millis(250));
        }
        eprintln!("[operator] some {kind} objects are still there after 30 s");
    }

    /// Uninstalls the release and deletes namespace `ns` with everything in it. Without a
    /// controller-manager nothing empties a Terminating namespace, so this deletes the contents
    /// itself and then finalizes the namespace.
    pub fn delete_namespace(&self, ns: &str) {
        if self.get_json("namespace", ns).is_none() {
            return;
        }
        let _ = self.helm(&["uninstall", RELEASE, "-n", ns, "--ignore-not-found"]);
        let _ = self.kubectl(&[
            "delete",
            "secrets,leases.coordination.k8s.io,serviceaccounts,configmaps,roles,rolebindings,deployments,daemonsets,events",
            "--all",
            "-n",
            ns,
            "--wait=false",
        ]);
        let _ = self.kubectl(&["delete", "namespace", ns, "--wait=false"]);
        if let Some(mut obj) = self.get_json("namespace", ns) {
            obj["spec"]["finalizers"] = json!([]);
            let path = format!("/api/v1/namespaces/{ns}/finalize");
            let o = self.kubectl_input(
                &["replace", "--raw", &path, "-f", "-"],
                Some(&obj.to_string()),
            );
            if !o.status.success() {
                eprintln!("[operator] finalizing namespace {ns}: {}", text(&o).trim());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get_json("namespace", ns).is_some() {
            assert!(
                Instant::now() < deadline,
                "namespace {ns} still exists 30 s after it was deleted and finalized"
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Creates namespace `ns` and installs the chart as [`RELEASE`] into it (CRDs applied first).
    pub fn install_chart(&self, ns: &str) {
        self.apply_crds();
        self.kubectl_ok(&["create", "namespace", ns]);
        let chart = repo_root().join("charts/kubemaker");
        let o = self.helm(&[
            "install",
            RELEASE,
            chart.to_str().expect("utf-8 path"),
            "--namespace",
            ns,
            "--skip-crds",
        ]);
        assert!(o.status.success(), "helm install failed: {}", text(&o));
        let sa = self.get_json_ns("serviceaccount", ns, CONTROLLER_SA);
        assert!(
            sa.is_some(),
            "the chart did not create ServiceAccount {ns}/{CONTROLLER_SA}"
        );
    }

    /// Writes a kubeconfig (mode 0600) that authenticates as ServiceAccount `ns/sa` with a token
    /// from `kubectl create token` (2 h), default namespace `ns`.
    pub fn sa_kubeconfig(&self, ns: &str, sa: &str, path: &Path) {
        let o = self.kubectl(&["create", "token", sa, "-n", ns, "--duration=2h"]);
        assert!(
            o.status.success(),
            "kubectl create token {sa} -n {ns} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let token = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(!token.is_empty(), "kubectl create token printed nothing");
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url, "certificate-authority": self.ca_file}}],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "test", "user": sa, "namespace": ns}}],
            "current-context": "sa",
        });
        write_private(path, config.to_string().as_bytes());
    }

    /// Creates the credentials Secret `ns/name` for the remote CIB (username, password); the
    /// password goes on stdin.
    pub fn create_credentials_secret(&self, ns: &str, name: &str, password: &str) {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "stringData": {"username": "hacluster", "password": password},
        });
        self.apply(&secret);
    }

    /// The bytes of `data.<key>` of Secret `ns/name`, with its resourceVersion; None if there is no
    /// such Secret. Never shows the bytes.
    pub fn secret_bytes(&self, ns: &str, name: &str, key: &str) -> Option<(Vec<u8>, String)> {
        let s = self.get_json_ns("secret", ns, name)?;
        let b64 = s["data"][key].as_str().unwrap_or_default();
        let bytes = base64_decode(b64).unwrap_or_else(|| {
            panic!("Secret {ns}/{name}: data.{key} is not valid base64 (contents not shown)")
        });
        Some((bytes, str_at(&s, "/metadata/resourceVersion")))
    }

    /// Creates (or replaces) Node `name` with `labels` plus [`TEST_LABEL`] and an InternalIP.
    /// If the API server dropped the status on create, sets it through the status subresource.
    pub fn create_node(&self, name: &str, labels: &[(&str, &str)], internal_ip: &str) -> Value {
        let _ = self.kubectl(&["delete", "node", name, "--ignore-not-found", "--wait=true"]);
        let mut l = serde_json::Map::new();
        l.insert(TEST_LABEL.into(), json!("true"));
        for (k, v) in labels {
            l.insert((*k).into(), json!(v));
        }
        let addresses = json!([{"type": "InternalIP", "address": internal_ip},
                               {"type": "Hostname", "address": name}]);
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": l},
            "status": {"addresses": addresses},
        });
        self.create(&node);
        let got = self.get_json("node", name).expect("the Node just created");
        let has_ip = got["status"]["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["address"] == internal_ip));
        if !has_ip {
            let patch = json!({"status": {"addresses": addresses}}).to_string();
            self.kubectl_ok(&[
                "patch",
                "node",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ]);
        }
        self.get_json("node", name).expect("the Node just created")
    }
}

/// One Event, as `kubectl get events -o json` shows it.
#[derive(Debug, Clone)]
pub struct EventInfo {
    pub reason: String,
    pub type_: String,
    pub kind: String,
    pub uid: String,
    pub message: String,
}

/// Seconds since the epoch of an RFC 3339 time (`2026-11-25T23:13:01.495034Z`), fractions cut.
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    t.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|ts| ts.as_second())
}

/// Writes `data` to `path` with mode 0600 (parent created).
pub fn write_private(path: &Path, data: &[u8]) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    f.write_all(data)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

/// The string at JSON pointer `ptr`, or "" (numbers and booleans are formatted).
pub fn str_at(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `(status, reason)` of condition `type_` in `obj.status.conditions`.
pub fn condition(obj: &Value, type_: &str) -> Option<(String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| (str_at(c, "/status"), str_at(c, "/reason")))
}

/// Whether condition `type_` has this status and reason.
pub fn condition_is(obj: &Value, type_: &str, status: &str, reason: &str) -> bool {
    condition(obj, type_).is_some_and(|(s, r)| s == status && r == reason)
}

/// A compact description of an object's state for failure messages: generation, finalizers,
/// deletion, status.
pub fn describe(obj: &Value) -> String {
    json!({
        "name": obj["metadata"]["name"],
        "generation": obj["metadata"]["generation"],
        "finalizers": obj["metadata"]["finalizers"],
        "deletionTimestamp": obj["metadata"]["deletionTimestamp"],
        "labels": obj["metadata"]["labels"],
        "status": obj["status"],
    })
    .to_string()
}

/// Whether `obj` carries finalizer `f`.
pub fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == f))
}

// ---------------------------------------------------------------------------------------------
// Bounded waits
// ---------------------------------------------------------------------------------------------

/// Calls `check` every `every` until it returns Ok, at most `timeout`. Err(last state) on timeout;
/// `check` returns Err with a description of what it saw.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(state) => {
                if Instant::now() + every > deadline {
                    return Err(state);
                }
            }
        }
        thread::sleep(every);
    }
}

/// [`poll`] every 250 ms, panicking with `what` and the last state on timeout.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Result<T, String>) -> T {
    poll(timeout, Duration::from_millis(250), check).unwrap_or_else(|last| {
        panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
    })
}

// ---------------------------------------------------------------------------------------------
// The controller process
// ---------------------------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1 (bound and released; fine for a test).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A `kubemaker controller` process we started; stdout and stderr go to its log file. Dropping it
/// kills it (SIGKILL, by pid, our own unreaped child) if it still runs.
pub struct Controller {
    /// The process; dropping it kills the controller.
    pub daemon: Daemon,
    pub identity: String,
    pub metrics_addr: String,
    pub log_path: PathBuf,
}

impl Controller {
    /// Starts `bin controller --namespace ns --metrics-addr 127.0.0.1:<free port> --identity
    /// identity <extra>` with `KUBECONFIG=kubeconfig`, logging (RUST_LOG=`log_filter`) to
    /// `<log_dir>/controller-<identity>-<n>.log`.
    pub fn spawn(
        bin: &Path,
        ns: &str,
        identity: &str,
        kubeconfig: &Path,
        extra: &[&str],
        log_dir: &Path,
        log_filter: &str,
    ) -> Controller {
        fs::create_dir_all(log_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_dir.display()));
        let mut n = 0;
        let log_path = loop {
            let p = log_dir.join(format!("controller-{identity}-{n}.log"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(bin);
        cmd.args([
            "controller",
            "--namespace",
            ns,
            "--metrics-addr",
            &metrics_addr,
            "--identity",
            identity,
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", log_filter)
        .env("NO_COLOR", "1")
        .env_remove("KUBEMAKER_NAMESPACE")
        .env_remove("KUBEMAKER_POD_NAME")
        .env_remove("KUBEMAKER_LEADER_ELECTION")
        .env_remove("KUBEMAKER_METRICS_ADDR")
        .env_remove("KUBEMAKER_LOG_FORMAT")
        .env_remove("KUBERNETES_SERVICE_HOST");
        let daemon = Daemon::spawn(cmd, &log_path)
            .unwrap_or_else(|e| panic!("cannot start {} controller: {e}", bin.display()));
        eprintln!(
            "[operator] controller {identity} pid {} metrics {metrics_addr} log {}",
            daemon.pid(),
            log_path.display()
        );
        Controller {
            daemon,
            identity: identity.to_string(),
            metrics_addr,
            log_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// Whether the process has exited (a zombie not yet reaped counts), without needing `&mut`.
    pub fn has_exited(&self) -> bool {
        self.daemon.has_exited()
    }

    /// Sends `sig` (by pid) unless the process has exited.
    pub fn signal(&mut self, sig: nix::sys::signal::Signal) {
        self.daemon.signal(sig);
    }

    /// SIGKILL and reap (a crash).
    pub fn kill9(&mut self) -> ExitStatus {
        self.daemon.kill9();
        self.wait_exit(Duration::from_secs(10))
            .expect("a SIGKILLed process exits")
    }

    /// SIGTERM (a graceful stop request).
    pub fn terminate(&mut self) {
        self.daemon.terminate();
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.daemon.wait_exit(timeout)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log(), n)
    }

    /// `GET path` on the metrics address: (status code, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(&self.metrics_addr, path)
    }

    /// `/metrics`, parsed.
    pub fn metrics(&self) -> Result<Metrics, String> {
        match self.get("/metrics")? {
            (200, body) => Ok(Metrics::parse(&body)),
            (code, body) => Err(format!("/metrics answered {code}: {}", tail(&body, 5))),
        }
    }

    /// `kubemaker_leader` (None while /metrics does not answer).
    pub fn leader(&self) -> Option<f64> {
        self.metrics().ok()?.get("kubemaker_leader", &[])
    }

    /// CPU time used so far (user + system), from /proc/<pid>/stat.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        // Fields after the command: state is field 3; utime and stime are fields 14 and 15.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        Some(Duration::from_millis(ticks * 1000 / hz.max(1)))
    }

    /// Peak and current resident memory in KiB (VmHWM, VmRSS from /proc/<pid>/status).
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((field("VmHWM:")?, field("VmRSS:")?))
    }
}

/// A minimal HTTP/1.0 GET over a std TcpStream (2 s connect, 5 s read, at most 16 MiB).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let sock: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut buf = Vec::new();
    s.take(16 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read from {addr}{path}: {e}"))?;
    let resp = String::from_utf8_lossy(&buf);
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}{path}: no complete HTTP response: {resp:?}"))?;
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{addr}{path}: bad status line in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// Prometheus text exposition, parsed: one entry per series.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut series = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // name{labels} value [timestamp]
            let (name_labels, rest) = match line.find('}') {
                Some(end) => (&line[..=end], line[end + 1..].trim()),
                None => match line.split_once(char::is_whitespace) {
                    Some((n, r)) => (n, r.trim()),
                    None => continue,
                },
            };
            let Some(value) = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            let (name, labels) = match name_labels.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (name_labels, ""),
            };
            let mut map = BTreeMap::new();
            for pair in labels.split("\",").filter(|p| !p.trim().is_empty()) {
                if let Some((k, v)) = pair.split_once('=') {
                    map.insert(
                        k.trim().trim_start_matches(',').to_string(),
                        v.trim().trim_matches('"').to_string(),
                    );
                }
            }
            series.push((name.to_string(), map, value));
        }
        Metrics { series }
    }

    /// The first series named `name` whose labels include all of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| *v)
    }

    /// The sum over all series named `name` (0 if none).
    pub fn sum(&self, name: &str) -> f64 {
        self.series
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// The authkey must never be logged
// ---------------------------------------------------------------------------------------------

/// Panics if `log` contains `key` (or any 24-byte piece of it, at 48-byte steps) as lowercase or
/// uppercase hex or as standard/URL-safe base64. The message never shows the key.
pub fn assert_key_not_logged(log: &str, key: &[u8], whose: &str) {
    assert!(key.len() >= 24, "key too short to check");
    let mut off = 0;
    while off + 24 <= key.len() {
        let piece = &key[off..off + 24];
        let hex = hex_lower(piece);
        let b64 = base64_encode(piece);
        let b64url = b64.replace('+', "-").replace('/', "_");
        for (enc, needle) in [
            ("hex", hex.clone()),
            ("HEX", hex.to_uppercase()),
            ("base64", b64),
            ("base64url", b64url),
        ] {
            assert!(
                !log.contains(&needle),
                "{whose} contains the authkey ({enc} of bytes {off}..{}); contents not shown",
                off + 24
            );
        }
        off += 48;
    }
}

pub fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Standard base64 (padding optional, whitespace ignored); None if invalid.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT.decode(compact).ok()
}

// ---------------------------------------------------------------------------------------------
// The CIB
// ---------------------------------------------------------------------------------------------

/// `cibadmin -Q`, parsed.
pub fn cib_root() -> Element {
    let out = support::run_ok("cibadmin", &["-Q"]);
    Element::parse(&String::from_utf8_lossy(&out.stdout)).expect("cibadmin -Q prints XML")
}

/// `(admin_epoch, epoch, num_updates)` of the live CIB.
pub fn cib_version() -> (u64, u64, u64) {
    let out = support::run_ok("cibadmin", &["--query", "--no-children"]);
    let root = Element::parse(&String::from_utf8_lossy(&out.stdout)).expect("cib XML");
    let n = |a: &str| root.attr_i64(a).unwrap_or(0).max(0) as u64;
    (n("admin_epoch"), n("epoch"), n("num_updates"))
}

/// Every `<primitive>` in `<resources>` (also inside groups, clones, bundles).
pub fn primitives(root: &Element) -> Vec<&Element> {
    fn walk<'a>(e: &'a Element, out: &mut Vec<&'a Element>) {
        if e.name == "primitive" {
            out.push(e);
        }
        for c in &e.children {
            walk(c, out);
        }
    }
    let mut out = Vec::new();
    if let Some(r) = root
        .child("configuration")
        .and_then(|c| c.child("resources"))
    {
        walk(r, &mut out);
    }
    out
}

/// The primitive with this id.
pub fn primitive<'a>(root: &'a Element, id: &str) -> Option<&'a Element> {
    primitives(root)
        .into_iter()
        .find(|p| p.attr("id") == Some(id))
}

/// `class:provider:type` of a primitive.
pub fn agent_of(p: &Element) -> String {
    match p.attr("provider") {
        Some(prov) => format!(
            "{}:{prov}:{}",
            p.attr("class").unwrap_or(""),
            p.attr("type").unwrap_or("")
        ),
        None => format!(
            "{}:{}",
            p.attr("class").unwrap_or(""),
            p.attr("type").unwrap_or("")
        ),
    }
}

/// Value of nvpair `name` in any `<set>` (`instance_attributes`, `meta_attributes`) of `p`.
pub fn nvpair(p: &Element, set: &str, name: &str) -> Option<String> {
    p.children
        .iter()
        .filter(|c| c.name == set)
        .flat_map(|s| s.children.iter())
        .find(|n| n.name == "nvpair" && n.attr("name") == Some(name))
        .and_then(|n| n.attr("value"))
        .map(str::to_string)
}

/// `interval` of op `name` in `p`'s operations.
pub fn op_interval(p: &Element, name: &str) -> Option<String> {
    p.child("operations")?
        .children
        .iter()
        .find(|o| {
            o.name == "op" && o.attr("name") == Some(name) && o.attr("interval") != Some("0s")
        })
        .or_else(|| {
            p.child("operations")?
                .children
                .iter()
                .find(|o| o.name == "op" && o.attr("name") == Some(name))
        })
        .and_then(|o| o.attr("interval"))
        .map(str::to_string)
}

/// Whether `<nodes>` has a `<node>` whose id or uname is `name`.
pub fn has_node_entry(root: &Element, name: &str) -> bool {
    root.child("configuration")
        .and_then(|c| c.child("nodes"))
        .is_some_and(|n| {
            n.children.iter().any(|e| {
                e.name == "node" && (e.attr("id") == Some(name) || e.attr("uname") == Some(name))
            })
        })
}

/// Whether `<status>` has a `<node_state>` whose id or uname is `name`.
pub fn has_node_state(root: &Element, name: &str) -> bool {
    root.child("status").is_some_and(|s| {
        s.children.iter().any(|e| {
            e.name == "node_state" && (e.attr("id") == Some(name) || e.attr("uname") == Some(name))
        })
    })
}

/// Adds addresses `10.250.<n>.<first>..` (`count` of them) inside `host` (on its eth0), so that
/// connections to them are refused at once by the host's kernel (nothing listens) instead of
/// timing out; traffic stays on the test host's own link. Returns the addresses.
pub fn add_host_addresses(host: &support::NetnsHost, first: u32, count: u32) -> Vec<String> {
    let base = host.addr();
    let prefix = base
        .rsplit_once('.')
        .map(|(p, _)| p.to_string())
        .expect("an IPv4 address");
    assert!(
        first >= 3 && first + count <= 255,
        "addresses 3..=254 are free in a test host's /24"
    );
    let addrs: Vec<String> = (first..first + count)
        .map(|i| format!("{prefix}.{i}"))
        .collect();
    let batch: String = addrs
        .iter()
        .map(|a| format!("addr replace {a}/24 dev eth0\n"))
        .collect();
    let o = run_input(
        Command::new("ip").args(["-n", host.name(), "-batch", "-"]),
        Some(batch.as_bytes()),
        Duration::from_secs(60),
    );
    assert!(
        o.status.success(),
        "ip -n {} -batch (addr add): {}",
        host.name(),
        text(&o)
    );
    addrs
}

/// A thread reading one pipe to its end.
type Reader = thread::JoinHandle<Vec<u8>>;

/// A child process whose stdout and stderr are drained by threads from the start (so it never
/// blocks on a full pipe); killed (SIGKILL, by pid, our own child) and reaped on drop unless it
/// was waited for.
pub struct ChildGuard {
    child: Option<Child>,
    readers: Option<(Reader, Reader)>,
}

impl ChildGuard {
    /// Waits for the child (at most `timeout`, then kills it) and returns its output.
    pub fn wait_output(&mut self, timeout: Duration) -> Output {
        let mut child = self.child.take().expect("a child not yet waited for");
        let (status, _) = wait_child(&mut child, timeout);
        let (out, err) = self.readers.take().expect("reader threads");
        Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }

    /// Whether the child has exited (Some(status)), without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns `cmd` with `input` written to its stdin (from a thread), stdout and stderr captured.
pub fn spawn_with_input(cmd: &mut Command, input: Vec<u8>) -> ChildGuard {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    ChildGuard {
        child: Some(child),
        readers: Some((out, err)),
    }
}
