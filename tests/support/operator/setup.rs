//! What the end-to-end tests set up on the shared API server, and take down: the test namespace
//! with the chart installed, CRDs, credentials, a ServiceAccount kubeconfig, Nodes, and the
//! clean-up of a crashed run's leftovers (never touching anyone else's objects).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::super::env::repo_root;
use super::super::keys::{base64_decode, write_private};
use super::super::process::text;
use super::api::Api;
use super::objects::{parse_rfc3339, str_at};
use super::{CONTROLLER_SA, LEASE, RELEASE, TEST_LABEL};

impl Api {
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
