//! The daemon's own binary, `kubemaker-remoted`, carries none of the controller's code: the
//! Kubernetes client, rustls, the HTTP server, the metrics and the regex engine stay in `kubemaker`.
//! Those pages would otherwise be mapped by the daemon on every worker (issue: the daemon's own
//! memory). The check reads both binaries' symbol tables with `nm`; the full binary must show the
//! crates, so that a broken check cannot pass.

mod support;

use std::path::Path;
use std::process::Command;

/// Crates that only the controller and the CIB command line need.
const CONTROLLER_CRATES: &[&str] = &[
    "kube_client::",
    "kube_runtime::",
    "k8s_openapi::",
    "rustls::",
    "hyper::",
    "prometheus_client::",
    "regex_automata::",
];

/// Defined symbols of `bin` (demangled) per crate of [`CONTROLLER_CRATES`].
fn controller_symbols(bin: &Path) -> Vec<(&'static str, usize)> {
    let out = Command::new("nm")
        .args(["--demangle", "--defined-only"])
        .arg(bin)
        .output()
        .expect("run nm");
    assert!(out.status.success(), "nm {} failed", bin.display());
    let symbols = String::from_utf8_lossy(&out.stdout);
    CONTROLLER_CRATES
        .iter()
        .map(|c| (*c, symbols.lines().filter(|l| l.contains(c)).count()))
        .collect()
}

#[test]
fn the_daemon_binary_links_no_controller_code() {
    if !support::require_tools(&["nm"]) {
        return;
    }
    let full = controller_symbols(&support::kubemaker());
    for (krate, n) in &full {
        assert!(
            *n > 0,
            "kubemaker has no {krate} symbols: the check is broken"
        );
    }
    let daemon = controller_symbols(&support::kubemaker_remoted());
    let linked: Vec<_> = daemon.iter().filter(|(_, n)| *n > 0).collect();
    assert!(
        linked.is_empty(),
        "kubemaker-remoted links controller code (crate, symbols): {linked:?}"
    );
}
