//! Test harness for the integration tests, above all those that run against a REAL Pacemaker
//! cluster. Include it from an integration test with `mod support;`. What it offers, by module:
//!
//! - [`env`]: [`require_tools`] / [`require_root`] skip a test outside CI when the machine lacks
//!   something and fail it in CI (`CI=true`); [`step`] prints progress; [`kubemaker`] and
//!   [`kubemaker_remoted`] are the binaries under test.
//! - [`process`]: commands with a time limit ([`run`], [`run_ok`], [`run_with_input`]), children
//!   with captured output ([`ChildGuard`]), and [`Daemon`], a long-running process with its log.
//! - [`wait`]: [`wait_for`] / [`poll`], a check called until it holds, bounded in time.
//! - [`generation`]: [`Generation`], the Pacemaker generation under test (`KUBEMAKER_PACEMAKER`):
//!   where its cluster node, tools and reference daemon are.
//! - [`cluster`]: [`Cluster`], exclusive use of the one-node test cluster of
//!   `scripts/test-cluster.sh`, reset to an empty configuration, with `crm_mon`/`cibadmin` helpers
//!   and bounded waits on a parsed [`MonView`] ([`mon`]).
//! - [`netns`]: [`NetnsHost`], a network namespace with a veth pair: a host with its own address.
//! - [`remote_host`]: [`RemoteHost`], `kubemaker-remoted` with its key and log, in a [`NetnsHost`]
//!   or on loopback; [`reference_host`]: [`ReferenceHost`], the generation's reference daemon in
//!   one, for side-by-side runs.
//! - [`keys`]: Pacemaker Remote keys ([`write_key_file`], [`test_authkey`],
//!   [`install_cluster_authkey`]) and [`assert_key_not_logged`].
//! - [`certs`]: [`certs::TestPki`], a throw-away PKI made with `certtool` for the X.509 tests;
//!   [`tls_pair`]: a loopback connection handshaken by both sides at once.
//! - [`fence`]: [`fence::PowerSwitch`] and [`fence::FenceDevice`], real fencing of a test machine
//!   through the project's fence agent (`tests/agents/fence`).
//! - [`cib_port`]: the cluster's remote CIB port opened for the `cib` layer's tests.
//! - [`two_node`]: [`two_node::TwoNodeCluster`], the two-node 3.x test cluster whose nodes can be
//!   lost and brought back.
//! - [`operator`]: the Kubernetes side of the operator's end-to-end tests.
//!
//! Real-cluster helpers run as root (network namespaces, the cluster), every wait is bounded in
//! time, and only processes this module (or the test) started are ever signalled, by pid.

// Each integration test binary compiles its own copy of this module and uses only part of it; without
// this, every helper one test does not call would be a dead-code warning (an error under clippy -D).
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod cib_port;
pub mod cluster;
pub mod env;
pub mod fence;
pub mod generation;
pub mod keys;
pub mod mon;
pub mod netns;
pub mod operator;
pub mod process;
pub mod reference_host;
pub mod remote_host;
pub mod tls_pair;
pub mod two_node;
pub mod wait;

pub use cluster::{
    CLUSTER_LOCK, Cluster, all_started_on, create_dummies_on, create_pinned_dummies,
    dummy_state_file, start_test_cluster_with,
};
pub use env::{
    TEST_STATE_DIR, find_tool, have_tool, in_ci, kubemaker, kubemaker_remoted, repo_root,
    require_root, require_tools, step,
};
pub use generation::Generation;
pub use keys::{
    CLUSTER_AUTHKEY, assert_key_not_logged, base64_decode, base64_encode, cluster_authkey_path,
    current_cluster_authkey, hex, install_cluster_authkey, install_cluster_file,
    mark_remote_key_idle, mark_remote_key_in_use, random_bytes, test_authkey, write_authkey,
    write_key_file, write_private,
};
pub use mon::{MonNode, MonResource, MonView};
pub use netns::NetnsHost;
pub use process::{
    ChildGuard, Daemon, free_port, proc_cpu_secs, proc_stat, recorded_pid, rss_kib, run, run_ok,
    run_with_input, run_with_timeout, spawn_with_input, tail, text, wait_child,
};
pub use reference_host::ReferenceHost;
pub use remote_host::{RemoteHost, remote_node_spec};
pub use wait::{poll, wait_for};

/// Where `scripts/install-test-deps.sh` extracts the host's (2.1.5) reference daemon.
pub const REFERENCE_REMOTED: &str = generation::HOST_REFERENCE_REMOTED;

/// The current generation's reference `pacemaker-remoted` (2.1.5's extracted by
/// `scripts/install-test-deps.sh`, or the one in a 3.x root), as seen from here; run it on a test
/// host with [`Generation::reference_remoted_command`].
pub fn reference_remoted() -> std::path::PathBuf {
    Generation::current().reference_remoted()
}
