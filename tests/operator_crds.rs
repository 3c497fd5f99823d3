//! The generated CustomResourceDefinitions: their shape (printer columns, short names, status
//! subresource, a description on every property, the validation the API server enforces), that the
//! checked-in copies are current, and — against a real kube-apiserver from
//! `scripts/test-apiserver.sh` — that `kubectl explain` and server-side validation behave.
//!
//! Outside CI a missing API server only skips the last part; with `CI=true` it fails the test.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion, JSONSchemaProps,
};
use kubemaker::operator::crd::{DURATION_PATTERN, NODE_NAME_PATTERN};
use serde::Deserialize;
use support::{operator, text};

fn repo() -> PathBuf {
    support::repo_root()
}

/// The checked-in copies that must equal `kubemaker crds`.
const CRD_FILES: [&str; 2] = [
    "crds/kubemaker.io.yaml",
    "charts/kubemaker/crds/kubemaker.io.yaml",
];

fn generated() -> String {
    kubemaker::operator::crds_yaml().expect("CRDs serialize")
}

fn crds() -> Vec<CustomResourceDefinition> {
    serde_yaml::Deserializer::from_str(&generated())
        .map(|doc| CustomResourceDefinition::deserialize(doc).expect("a CRD document"))
        .collect()
}

fn crd(kind: &str) -> CustomResourceDefinition {
    crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn version(c: &CustomResourceDefinition) -> &CustomResourceDefinitionVersion {
    assert_eq!(c.spec.versions.len(), 1, "one version, v1alpha1");
    &c.spec.versions[0]
}

fn schema(c: &CustomResourceDefinition) -> &JSONSchemaProps {
    version(c)
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("an openAPIV3Schema")
}

/// `path` is dot-separated property names from the root (`spec.port`).
fn prop<'a>(root: &'a JSONSchemaProps, path: &str) -> &'a JSONSchemaProps {
    path.split('.').fold(root, |s, name| {
        s.properties
            .as_ref()
            .and_then(|p| p.get(name))
            .unwrap_or_else(|| panic!("no property {name} on the way to {path}"))
    })
}

#[test]
fn two_cluster_scoped_crds_in_group_kubemaker_io() {
    let all = crds();
    let names: Vec<_> = all
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["pacemakerclusters.kubemaker.io", "remotenodes.kubemaker.io"]
    );
    for c in &all {
        assert_eq!(c.spec.group, "kubemaker.io");
        assert_eq!(c.spec.scope, "Cluster");
        let v = version(c);
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{}: status subresource",
            c.spec.names.kind
        );
    }
    assert!(
        generated().contains("\n---\n"),
        "documents separated by ---"
    );
}

#[test]
fn short_names_and_printer_columns() {
    let rn = crd("RemoteNode");
    assert_eq!(
        rn.spec.names.short_names.as_deref(),
        Some(&["rn".to_string()][..])
    );
    let columns: Vec<(String, String)> = version(&rn)
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect();
    let expect = [
        ("Node", ".status.nodeName"),
        ("Type", ".spec.type"),
        ("Address", ".status.address"),
        ("State", ".status.pacemakerState"),
        ("Host", ".status.host"),
        ("Resources", ".status.resourcesActive"),
        (
            "Kubelet",
            ".status.conditions[?(@.type==\"KubeletReady\")].status",
        ),
        ("Age", ".metadata.creationTimestamp"),
    ];
    assert_eq!(
        columns,
        expect.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
    // Every column points at a field the schema has (a typo would print an empty column).
    for (_, path) in &columns {
        // A filtered list (`conditions[?(...)].status`) is checked up to the list.
        let path = path.split('[').next().unwrap_or_default();
        if let Some(p) = path
            .strip_prefix('.')
            .filter(|p| !p.starts_with("metadata"))
        {
            prop(schema(&rn), p);
        }
    }

    let pc = crd("PacemakerCluster");
    let short = pc.spec.names.short_names.clone().unwrap_or_default();
    assert!(short.contains(&"pcmk".to_string()) && short.contains(&"pcl".to_string()));
    let pc_columns: Vec<String> = version(&pc)
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(pc_columns, ["Connection", "DC", "Quorum", "CIB", "Age"]);
    for c in version(&pc).additional_printer_columns.iter().flatten() {
        if let Some(p) = c.json_path.strip_prefix(".status.") {
            prop(schema(&pc), &format!("status.{p}"));
        }
    }
}

/// Walks every property (objects, array items, map values) and collects the paths that have no
/// description: `kubectl explain` would show nothing for them.
fn undocumented(s: &JSONSchemaProps, path: &str, out: &mut Vec<String>) {
    for (name, p) in s.properties.iter().flatten() {
        let here = format!("{path}.{name}");
        // apiVersion/kind/metadata are Kubernetes' own and documented by the API server.
        let builtin =
            path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
        match p.description.as_deref() {
            _ if builtin => {}
            None => out.push(here.clone()),
            Some(d) if d.trim().is_empty() => out.push(here.clone()),
            // Source line breaks left in would make `kubectl explain` print ragged lines.
            Some(d) if d.replace("\n\n", "").contains('\n') => {
                out.push(format!("{here} (unreflowed line break)"))
            }
            Some(_) => {}
        }
        undocumented(p, &here, out);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) = &s.items {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(v)) = &s.additional_properties {
        undocumented(v, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_property_has_a_description() {
    for c in crds() {
        let mut missing = Vec::new();
        undocumented(schema(&c), "", &mut missing);
        assert!(
            missing.is_empty(),
            "{}: properties without a description: {missing:?}",
            c.spec.names.kind
        );
        assert!(schema(&c).description.is_some(), "the kind itself");
    }
}

#[test]
fn validation_lives_in_the_schema() {
    let rn = crd("RemoteNode");
    let s = schema(&rn);
    let name = prop(s, "spec.nodeName");
    assert_eq!(name.pattern.as_deref(), Some(NODE_NAME_PATTERN));
    assert_eq!(NODE_NAME_PATTERN, "^[a-z]([-a-z0-9]*[a-z0-9])?$");
    assert_eq!(name.max_length, Some(63));
    let port = prop(s, "spec.port");
    assert_eq!((port.minimum, port.maximum), (Some(1.0), Some(65535.0)));
    let ty = prop(s, "spec.type");
    let values: Vec<_> = ty.enum_.iter().flatten().map(|v| v.0.clone()).collect();
    assert_eq!(
        values,
        [serde_json::json!("remote"), serde_json::json!("guest")]
    );
    for d in [
        "spec.reconnectInterval",
        "spec.startTimeout",
        "spec.stopTimeout",
        "spec.monitor.interval",
        "spec.monitor.timeout",
        "spec.guest.connectTimeout",
    ] {
        assert_eq!(prop(s, d).pattern.as_deref(), Some(DURATION_PATTERN), "{d}");
    }
    // A `kubemaker render -f` file (no clusterRef) must stay a valid object.
    assert!(
        prop(s, "spec").required.iter().flatten().next().is_none(),
        "no required spec fields"
    );
    let conditions = prop(s, "status.conditions");
    assert_eq!(conditions.x_kubernetes_list_type.as_deref(), Some("map"));
    assert_eq!(
        conditions.x_kubernetes_list_map_keys.as_deref(),
        Some(&["type".to_string()][..])
    );
    // CEL: the object name stands in for nodeName, so it must be a valid node name too; guests
    // need their guest section.
    let rules = |p: &JSONSchemaProps| -> Vec<String> {
        p.x_kubernetes_validations
            .iter()
            .flatten()
            .map(|r| r.rule.clone())
            .collect()
    };
    assert!(rules(s).iter().any(|r| r.contains("self.metadata.name")));
    assert!(
        rules(prop(s, "spec"))
            .iter()
            .any(|r| r.contains("has(self.guest)"))
    );
    let status = prop(s, "status");
    for c in ["Configured", "Connected", "Ready"] {
        let d = prop(status, "conditions").description.clone().unwrap();
        assert!(d.contains(c), "conditions description names {c}");
    }

    let pc = crd("PacemakerCluster");
    let s = schema(&pc);
    let port = prop(s, "spec.endpoints").items.as_ref().unwrap();
    let k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(item) = port else {
        panic!("endpoints items is one schema");
    };
    let p = prop(item, "port");
    assert_eq!((p.minimum, p.maximum), (Some(1.0), Some(65535.0)));
    assert_eq!(
        prop(s, "spec.remoteNodeDefaults.reconnectInterval")
            .pattern
            .as_deref(),
        Some(DURATION_PATTERN)
    );
    for f in ["connection", "dc", "quorum", "cibVersion", "conditions"] {
        prop(s, &format!("status.{f}"));
    }
}

/// A file `kubemaker render -f` accepts stays a valid RemoteNode spec once it names its cluster.
#[test]
fn render_examples_are_valid_specs() {
    let text = "type: remote\naddress: 192.0.2.11\nattributes: {rack: r1}\n";
    let spec: kubemaker::operator::crd::RemoteNodeSpec = serde_yaml::from_str(text).unwrap();
    let cib = spec.to_cib_spec(None, None);
    assert_eq!(cib.address.as_deref(), Some("192.0.2.11"));
}

#[test]
fn checked_in_crds_are_current() {
    let want = generated();
    for f in CRD_FILES {
        let have = std::fs::read_to_string(repo().join(f)).unwrap_or_default();
        assert!(
            have == want,
            "{f} is stale: regenerate with `scripts/check-generated.sh --update` \
             (or `kubemaker crds > {f}`)"
        );
    }
    // The binary prints the same bytes (what the script and users run).
    let out = Command::new(env!("CARGO_BIN_EXE_kubemaker"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}

/// `scripts/check-generated.sh` in check mode: the chart lints and `manifests/` (helm template
/// output) is current. Needs helm; without it the test skips, except in CI where it fails.
#[test]
fn chart_lints_and_manifests_are_current() {
    let cached = Path::new("/var/tmp/kubemaker-cache/k8s/bin/helm");
    let on_path = Command::new("bash")
        .args(["-c", "command -v helm"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !on_path && !cached.exists() && !support::in_ci() {
        eprintln!("SKIPPED: no helm (run scripts/install-k8s-test-deps.sh)");
        return;
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/check-generated.sh"))
        .env("KUBEMAKER_BIN", env!("CARGO_BIN_EXE_kubemaker"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// Against a real API server
// ---------------------------------------------------------------------------------------------

/// Runs a command with the test API server's environment (KUBECONFIG, PATH with its kubectl).
fn with_apiserver_env(cmd: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let script = format!(
        "eval \"$(bash {}/scripts/test-apiserver.sh env)\" && exec {cmd} \"$@\"",
        repo().display()
    );
    support::run_with_input(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("bash")
            .args(args),
        Some(stdin.unwrap_or_default().as_bytes()),
        Duration::from_secs(300),
    )
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    with_apiserver_env("kubectl", args, stdin)
}

fn must(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    text(&o)
}

/// Starts the test API server unless it already runs. Returns whether this test started it (and
/// so stops it), or an error saying why it cannot run.
fn ensure_apiserver(script: &Path) -> Result<bool, String> {
    if apiserver_ready(script) {
        return Ok(false);
    }
    let out = Command::new("bash")
        .arg(script)
        .arg("start")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(format!(
            "`{} start` failed: {}",
            script.display(),
            text(&out)
        ))
    }
}

fn apiserver_ready(script: &Path) -> bool {
    Command::new("bash")
        .arg(script)
        .arg("status")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const VALID: &str = r#"
apiVersion: kubemaker.io/v1alpha1
kind: RemoteNode
metadata: {name: km-crd-test-valid}
spec:
  clusterRef: {name: prod}
  kubernetesNode: worker-1
  port: 3121
  reconnectInterval: 60s
  monitor: {interval: 30s, timeout: PT1M}
  startTimeout: 500ms
  stopTimeout: 2min
  attributes: {rack: r1}
"#;

/// A manifest's body (after `kind`) and the texts the API server's refusal must mention.
type Refusal = (&'static str, &'static [&'static str]);

/// RemoteNodes the API server must refuse.
const INVALID: [Refusal; 4] = [
    (
        "metadata: {name: km-crd-test-bad-fields}\nspec:\n  clusterRef: {name: prod}\n  nodeName: Bad_Name\n  port: 70000\n",
        &["spec.nodeName", "spec.port"],
    ),
    (
        "metadata: {name: km-crd-test.dotted}\nspec:\n  clusterRef: {name: prod}\n",
        &["metadata.name is the Pacemaker node name"],
    ),
    (
        "metadata: {name: km-crd-test-guest}\nspec:\n  clusterRef: {name: prod}\n  type: guest\n",
        &["needs a guest section"],
    ),
    (
        "metadata: {name: km-crd-test-duration}\nspec:\n  clusterRef: {name: prod}\n  type: vm\n  reconnectInterval: soon\n",
        &["spec.type", "spec.reconnectInterval"],
    ),
];

/// PacemakerClusters the API server must refuse.
const INVALID_CLUSTERS: [Refusal; 2] = [
    (
        "metadata: {name: km-crd-test-x509}\nspec:\n  endpoints: [{host: node1, port: 5989}]\n  tlsMode: x509\n  credentialsSecretRef: {name: c}\n",
        &["tlsMode: x509 needs x509SecretName"],
    ),
    (
        "metadata: {name: km-crd-test-x509-unused}\nspec:\n  endpoints: [{host: node1, port: 5989}]\n  tlsMode: psk\n  x509SecretName: t\n  credentialsSecretRef: {name: c}\n",
        &["x509SecretName is used only with tlsMode: x509"],
    ),
];

/// Applies `crds/` to a real API server and checks what users see: `kubectl explain` shows the
/// descriptions, invalid objects are refused with the field named, a valid one is stored.
fn check_against_apiserver() {
    let script = repo().join("scripts/test-apiserver.sh");
    let hold = match operator::hold_apiserver() {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    };
    let started = match ensure_apiserver(&script) {
        Ok(s) => s,
        Err(e) if support::in_ci() => {
            panic!("CI=true and the test API server is not available: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED the API server checks (run scripts/install-k8s-test-deps.sh): {e}");
            return;
        }
    };
    let result = std::panic::catch_unwind(|| {
        let crds_dir = repo().join("crds");
        must(
            kubectl(
                &[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "-f",
                    crds_dir.to_str().unwrap(),
                ],
                None,
            ),
            "kubectl apply --server-side -f crds/",
        );
        must(
            kubectl(
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd/remotenodes.kubemaker.io",
                    "crd/pacemakerclusters.kubemaker.io",
                ],
                None,
            ),
            "waiting for the CRDs",
        );

        // Discovery can lag right after the CRDs are established; retry briefly.
        let mut explain = String::new();
        for _ in 0..20 {
            let o = kubectl(&["explain", "remotenode.spec"], None);
            explain = text(&o);
            if o.status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        for needle in [
            "clusterRef",
            "kubernetesNode",
            "The PacemakerCluster this node joins",
            "The Pacemaker node name",
            "InternalIP",
        ] {
            assert!(
                explain.contains(needle),
                "kubectl explain remotenode.spec lacks {needle:?}:\n{explain}"
            );
        }
        let o = kubectl(&["explain", "pacemakercluster.spec.endpoints"], None);
        assert!(text(&o).contains("remote CIB"), "{}", text(&o));

        let refusals: [(&str, &[Refusal]); 2] = [
            ("RemoteNode", &INVALID),
            ("PacemakerCluster", &INVALID_CLUSTERS),
        ];
        for (kind, cases) in refusals {
            for (body, mentions) in cases {
                let doc = format!("apiVersion: kubemaker.io/v1alpha1\nkind: {kind}\n{body}");
                let o = kubectl(&["create", "--dry-run=server", "-f", "-"], Some(&doc));
                let t = text(&o);
                assert!(!o.status.success(), "the API server accepted:\n{doc}\n{t}");
                for m in *mentions {
                    assert!(
                        t.contains(m),
                        "refusal of\n{doc}\ndoes not mention {m:?}: {t}"
                    );
                }
            }
        }
        let x509 = "apiVersion: kubemaker.io/v1alpha1\nkind: PacemakerCluster\nmetadata: {name: km-crd-test-x509-ok}\nspec:\n  endpoints: [{host: node1, port: 5989}]\n  tlsMode: x509\n  x509SecretName: controller-tls\n  credentialsSecretRef: {name: c, pskKey: psk}\n";
        let dry = kubectl(&["create", "--dry-run=server", "-f", "-"], Some(x509));
        assert!(dry.status.success(), "x509 cluster refused: {}", text(&dry));

        // The example in the CIB layer's docs, as `kubemaker render -f` reads it.
        let render_example = "apiVersion: kubemaker.io/v1alpha1\nkind: RemoteNode\nmetadata: {name: worker-1}\nspec:\n  type: remote\n  address: 192.0.2.11\n  attributes: {rack: r1}\n";
        kubemaker::cib::RemoteNodeManifest::from_yaml(render_example).unwrap();
        let dry = kubectl(
            &["create", "--dry-run=server", "-f", "-"],
            Some(render_example),
        );
        assert!(
            dry.status.success(),
            "render example refused: {}",
            text(&dry)
        );

        let _ = kubectl(
            &[
                "delete",
                "remotenode",
                "km-crd-test-valid",
                "--ignore-not-found",
            ],
            None,
        );
        must(
            kubectl(&["create", "-f", "-"], Some(VALID)),
            "creating a valid RemoteNode",
        );
        let got = must(
            kubectl(
                &[
                    "get",
                    "rn",
                    "km-crd-test-valid",
                    "-o",
                    "jsonpath={.spec.type}",
                ],
                None,
            ),
            "reading it back",
        );
        assert_eq!(got.trim(), "remote", "the schema default fills spec.type");
        let table = must(kubectl(&["get", "rn"], None), "kubectl get rn");
        for col in [
            "NODE",
            "TYPE",
            "ADDRESS",
            "STATE",
            "HOST",
            "RESOURCES",
            "KUBELET",
            "AGE",
        ] {
            assert!(table.contains(col), "column {col} missing:\n{table}");
        }
        must(
            kubectl(&["delete", "remotenode", "km-crd-test-valid"], None),
            "deleting it",
        );

        check_manifests_and_rbac();
    });
    if started {
        operator::release_and_stop_if_unused(hold);
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Values that switch on every optional branch of the chart's templates.
const NON_DEFAULT_VALUES: &str = r#"
imagePullSecrets: [{name: regcred}]
controller:
  leaderElection: false
  replicas: 2
  metricsPort: 9090
  serviceAccount: {annotations: {example.com/role: operator}}
  tolerations: [{operator: Exists}]
remoted:
  port: 3200
  verbosity: 2
  forceFilesystemSockets: false
  dbus: {enabled: true}
  nodeSelector: {}
  tolerations: [{operator: Exists}]
  extraEnv: [{name: PCMK_debug, value: "yes"}]
  extraHostPaths:
    - {name: lib-modules, hostPath: /lib/modules, mountPath: /lib/modules, type: Directory, readOnly: true}
  serviceAccount: {create: false, name: existing-remoted}
"#;

/// The chart's rendered objects (`manifests/`) are valid for the API server, and the RBAC they
/// grant is what the design promises: enough for the controller, nothing for remoted.
fn check_manifests_and_rbac() {
    const NS: &str = "kubemaker-system";
    let ns = must(
        kubectl(
            &["create", "namespace", NS, "--dry-run=client", "-o", "yaml"],
            None,
        ),
        "rendering the namespace",
    );
    must(
        kubectl(&["apply", "-f", "-"], Some(&ns)),
        "creating the namespace",
    );
    let manifests = repo().join("manifests/kubemaker.yaml");
    let manifests = manifests.to_str().unwrap();
    must(
        kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                manifests,
            ],
            None,
        ),
        "kubectl apply --server-side -f manifests/kubemaker.yaml",
    );

    // The optional branches of the templates render to objects the API server accepts too.
    let values = std::env::temp_dir().join(format!("kubemaker-values-{}.yaml", std::process::id()));
    std::fs::write(&values, NON_DEFAULT_VALUES).unwrap();
    let chart = repo().join("charts/kubemaker");
    let rendered = must(
        with_apiserver_env(
            "helm",
            &[
                "template",
                "other",
                chart.to_str().unwrap(),
                "--namespace",
                NS,
                "-f",
                values.to_str().unwrap(),
            ],
            None,
        ),
        "helm template with non-default values",
    );
    let _ = std::fs::remove_file(&values);
    let dry = must(
        kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&rendered)),
        "server-side dry run of the non-default rendering",
    );
    assert!(
        dry.contains("daemonset.apps/other-kubemaker-remoted"),
        "{dry}"
    );

    let can = |who: &str, args: &[&str]| -> bool {
        let sa = format!("--as=system:serviceaccount:{NS}:kubemaker-{who}");
        let mut all = vec!["auth", "can-i", sa.as_str()];
        all.extend_from_slice(args);
        let o = kubectl(&all, None);
        let t = text(&o);
        assert!(
            t.trim_start().starts_with("yes") || t.trim_start().starts_with("no"),
            "kubectl auth can-i {args:?}: {t}"
        );
        o.status.success()
    };
    let allowed: &[&[&str]] = &[
        &["watch", "remotenodes.kubemaker.io"],
        &["patch", "remotenodes.kubemaker.io", "--subresource=status"],
        &[
            "update",
            "remotenodes.kubemaker.io",
            "--subresource=finalizers",
        ],
        &[
            "patch",
            "pacemakerclusters.kubemaker.io",
            "--subresource=status",
        ],
        &["list", "nodes"],
        &["create", "events.events.k8s.io", "-n", "default"],
        &["get", "secrets", "-n", NS],
        &["create", "secrets", "-n", NS],
        &["update", "leases.coordination.k8s.io", "-n", NS],
    ];
    for a in allowed {
        assert!(can("controller", a), "the controller needs {a:?}");
    }
    let denied: &[&[&str]] = &[
        &["list", "secrets", "-n", NS],
        &["get", "secrets", "-n", "default"],
        &["list", "secrets", "--all-namespaces"],
        &["delete", "nodes"],
        &["create", "pods", "-n", NS],
    ];
    for d in denied {
        assert!(!can("controller", d), "the controller must not {d:?}");
    }
    for d in [
        &["get", "secrets", "-n", NS][..],
        &["list", "nodes"],
        &["get", "remotenodes.kubemaker.io"],
    ] {
        assert!(!can("remoted", d), "remoted must not {d:?}");
    }
    // Leave no cluster-scoped RBAC behind: a later `helm install kubemaker` (the e2e test, the
    // demo) would find objects it does not own. The CRDs stay: later tests use them.
    must(
        kubectl(
            &[
                "delete",
                "clusterrole,clusterrolebinding",
                "kubemaker-controller",
                "--ignore-not-found",
            ],
            None,
        ),
        "deleting the applied ClusterRole and ClusterRoleBinding",
    );
    // The namespace stays: without kube-controller-manager a deleted namespace never finishes
    // terminating, and a terminating namespace refuses the next run's objects.
}

#[test]
fn api_server_applies_explains_and_validates() {
    check_against_apiserver();
}
