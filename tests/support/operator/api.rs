//! The test API server of `scripts/test-apiserver.sh` and `kubectl`/`helm` with its admin
//! kubeconfig: objects read and written as JSON, Events.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::super::env::repo_root;
use super::super::process::{run_with_input, text};
use super::objects::{condition, condition_is, str_at};

const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// `scripts/test-apiserver.sh`.
pub fn apiserver_script() -> PathBuf {
    repo_root().join("scripts/test-apiserver.sh")
}

/// Every test process that uses the API server holds this file with a shared flock for as long
/// as it does; the one that started the server stops it only if it can then take the lock
/// exclusively, so a test of another checkout running at the same time keeps its server.
const USERS_LOCK: &str = "/var/tmp/kubemaker-test/apiserver.users";

/// A shared hold on [`USERS_LOCK`], taken before the server is checked or started (a stop in
/// progress finishes first).
pub fn hold_apiserver() -> Result<File, String> {
    let path = Path::new(USERS_LOCK);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {USERS_LOCK}: {e}"))?;
    file.lock_shared()
        .map_err(|e| format!("cannot lock {USERS_LOCK}: {e}"))?;
    Ok(file)
}

/// Lets go of `hold` and stops the API server unless another process still holds it.
pub fn release_and_stop_if_unused(hold: File) {
    drop(hold);
    let Ok(file) = OpenOptions::new().append(true).open(USERS_LOCK) else {
        return;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = run_with_input(
                Command::new("bash").arg(apiserver_script()).arg("stop"),
                None,
                Duration::from_secs(120),
            );
        }
        Err(_) => eprintln!("[harness] the test API server stays up: another test uses it"),
    }
}

/// The running test API server and the environment its tools need (KUBECONFIG with the admin
/// credentials, PATH with our kubectl and helm first, their cache folders).
pub struct Api {
    env: Vec<(String, String)>,
    /// Whether [`Api::ensure`] started it (then [`Api::stop_if_started`] stops it).
    pub started: bool,
    pub url: String,
    pub ca_file: String,
    /// The shared hold on [`USERS_LOCK`] (taken by [`Api::stop_if_started`]).
    hold: Mutex<Option<File>>,
}

impl Api {
    /// [`Api::ensure`] for a test: None (said on stderr, naming `what` needs it) when the API
    /// server cannot run outside CI; in CI (`CI=true`) a panic instead.
    pub fn ensure_or_skip(what: &str) -> Option<Api> {
        match Api::ensure() {
            Ok(api) => Some(api),
            Err(e) if super::super::env::in_ci() => {
                panic!("CI=true and the test API server is not available: {e}")
            }
            Err(e) => {
                eprintln!("SKIP: {what} needs the test API server: {e}");
                None
            }
        }
    }

    /// Starts the test API server unless it already runs (like `tests/operator_crds.rs`), then
    /// reads its environment. Err says why it cannot run (the caller skips or, in CI, fails).
    pub fn ensure() -> Result<Api, String> {
        let hold = hold_apiserver()?;
        let script = apiserver_script();
        let ready = run_with_input(
            Command::new("bash").arg(&script).arg("status"),
            None,
            Duration::from_secs(30),
        )
        .status
        .success();
        let mut started = false;
        if !ready {
            let out = run_with_input(
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
        let out = run_with_input(
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
            hold: Mutex::new(Some(hold)),
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

    /// Stops the API server if [`Api::ensure`] started it and no other test uses it.
    pub fn stop_if_started(&self) {
        let hold = self.hold.lock().ok().and_then(|mut h| h.take());
        if let (true, Some(hold)) = (self.started, hold) {
            release_and_stop_if_unused(hold);
        }
    }

    /// Makes this test the API server's only user (the hold on [`USERS_LOCK`] becomes exclusive),
    /// waiting at most `timeout` for the others to finish; other tests wait for it to end. Only
    /// then may the server be killed and restarted ([`ExclusiveUse`]).
    pub fn exclusive_use(&self, timeout: Duration) -> Result<ExclusiveUse<'_>, String> {
        let deadline = Instant::now() + timeout;
        let mut told = false;
        loop {
            {
                let hold = self
                    .hold
                    .lock()
                    .map_err(|_| "the hold's lock is poisoned")?;
                let file = hold.as_ref().ok_or("the API server is no longer held")?;
                match file.try_lock() {
                    Ok(()) => return Ok(ExclusiveUse { api: self }),
                    Err(TryLockError::WouldBlock) => {
                        // A failed conversion drops the shared lock: take it back at once.
                        file.lock_shared()
                            .map_err(|e| format!("cannot lock {USERS_LOCK}: {e}"))?;
                    }
                    Err(TryLockError::Error(e)) => {
                        return Err(format!("cannot lock {USERS_LOCK}: {e}"));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "other tests still use the API server after {timeout:?}"
                ));
            }
            if !told {
                eprintln!("[harness] waiting for the other users of the test API server to finish");
                told = true;
            }
            std::thread::sleep(Duration::from_secs(1));
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
        run_with_input(
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
        run_with_input(
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

    /// The RemoteNodes matching `selector`: how many there are, and "name: condition" for each
    /// that is not `Configured=True`.
    pub fn unconfigured_remote_nodes(
        &self,
        selector: &str,
    ) -> Result<(Vec<Value>, Vec<String>), String> {
        let items = self.list("remotenodes", &["-l", selector])?;
        let not = items
            .iter()
            .filter(|o| !condition_is(o, "Configured", "True", "Configured"))
            .map(|o| {
                format!(
                    "{}: {:?}",
                    str_at(o, "/metadata/name"),
                    condition(o, "Configured")
                )
            })
            .collect();
        Ok((items, not))
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
}

/// This test is the API server's only user while this lives (see [`Api::exclusive_use`]);
/// dropping it shares the server again.
pub struct ExclusiveUse<'a> {
    api: &'a Api,
}

impl ExclusiveUse<'_> {
    /// `scripts/test-apiserver.sh kill-apiserver`: SIGKILL to the kube-apiserver only (etcd
    /// keeps running).
    pub fn kill_apiserver(&self) -> Result<(), String> {
        self.script("kill-apiserver", Duration::from_secs(60))
    }

    /// `scripts/test-apiserver.sh start` (not `--fresh`): starts the killed kube-apiserver again
    /// beside the running etcd and returns once `/readyz` says ok.
    pub fn start_apiserver(&self) -> Result<(), String> {
        self.script("start", Duration::from_secs(300))
    }

    fn script(&self, command: &str, limit: Duration) -> Result<(), String> {
        let script = apiserver_script();
        let out = run_with_input(Command::new("bash").arg(&script).arg(command), None, limit);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{} {command}` failed: {}",
                script.display(),
                text(&out)
            ))
        }
    }
}

impl Drop for ExclusiveUse<'_> {
    fn drop(&mut self) {
        if let Ok(hold) = self.api.hold.lock()
            && let Some(file) = hold.as_ref()
            && let Err(e) = file.lock_shared()
        {
            eprintln!("[harness] cannot share {USERS_LOCK} again: {e}");
        }
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
