//! Golden files for the RemoteNode status the controller writes: for each CIB captured from the
//! real cluster (`tests/golden/cib/status/*.cib.xml`, the fixtures of the status reader), the
//! status of every node in it, configured, plus one not-configured case.
//!
//! `UPDATE_GOLDEN=1 cargo test --test operator_status_golden` rewrites the expected files; review
//! the diff.

use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;
use kubemaker::cib::status::read_status;
use kubemaker::operator::node_status::{Inputs, Outcome, remote_node_status};
use kubemaker::wire::Element;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check(path: &Path, actual: &str) {
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "missing golden file {} ({e}); run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        expected,
        actual,
        "{} differs from the output (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

fn now() -> Timestamp {
    "2026-01-02T03:04:05Z".parse().unwrap()
}

#[test]
fn status_of_every_captured_node() {
    let mut fixtures: Vec<_> = std::fs::read_dir(golden_dir().join("cib/status"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".cib.xml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 7, "the captured CIBs are missing");
    for f in fixtures {
        let cib = Element::parse(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let statuses: Vec<_> = read_status(&cib)
            .iter()
            .map(|n| {
                remote_node_status(&Inputs {
                    generation: Some(3),
                    node_name: &n.name,
                    address: Some(&n.address),
                    connection_resource: Some(&n.connection),
                    outcome: &Outcome::Configured,
                    pacemaker: Some(n),
                    standby_cause: None,
                    kubelet: None,
                    previous: &[],
                    now: now(),
                })
            })
            .collect();
        let stem = f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".cib.xml")
            .to_string();
        let json = serde_json::to_string_pretty(&statuses).unwrap() + "\n";
        check(
            &golden_dir().join(format!("operator/status/{stem}.json")),
            &json,
        );
    }
}

#[test]
fn name_clash_reports_no_pacemaker_state() {
    let cib = Element::parse(
        &std::fs::read_to_string(golden_dir().join("cib/status/online.cib.xml")).unwrap(),
    )
    .unwrap();
    let online = read_status(&cib);
    let outcome = Outcome::failed(
        "NameClash",
        "node name \"cap-rn\" clashes with resource \"cap-rn\" (ocf:pacemaker:Dummy)",
    );
    // Even with a node of that name online in the CIB, a RemoteNode that was refused must not
    // claim its state.
    let status = remote_node_status(&Inputs {
        generation: Some(1),
        node_name: "cap-rn",
        address: None,
        connection_resource: None,
        outcome: &outcome,
        pacemaker: online.first(),
        standby_cause: None,
        kubelet: None,
        previous: &[],
        now: now(),
    });
    let json = serde_json::to_string_pretty(&status).unwrap() + "\n";
    check(&golden_dir().join("operator/status/name-clash.json"), &json);
}
