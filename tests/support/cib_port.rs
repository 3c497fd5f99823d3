//! Hook for tests of the CIB layer: opens the test cluster's remote CIB port and gives `hacluster`
//! a password ([`enable_remote_cib`]). The port is on the cluster node's address (127.0.0.1 for
//! 2.1.5, the node's own for a 3.x generation), the password in the node's own /etc/shadow.
//!
//! The ports are root attributes of the CIB, read by pacemaker-based only at start-up, so the first
//! call on a machine restarts the test cluster (with `scripts/test-cluster.sh`, under the cluster
//! lock the caller's [`Cluster`] holds); later calls find them open. The CIB persists in
//! /var/lib/pacemaker, so this happens once per machine, not once per test.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use kubemaker::cib::{ClientConfig, Endpoint, Secret, Transport};

use super::cluster::{Cluster, restart_test_cluster};
use super::env::repo_root;
use super::generation::Generation;
use super::keys::{hex, random_bytes};
use super::process::{run_with_input, run_with_timeout};

pub const TLS_PORT: u16 = 5989;
pub const CLEAR_PORT: u16 = 5990;
const CIB_FILE: &str = "/var/lib/pacemaker/cib/cib.xml";

/// How to reach the test cluster's CIB.
pub struct RemoteCib {
    pub password: Secret,
    /// The cluster node's address, where the ports listen.
    pub host: String,
}

impl RemoteCib {
    pub fn config(&self, transport: Transport) -> ClientConfig {
        let port = match transport {
            Transport::Tls => TLS_PORT,
            Transport::Plain => CLEAR_PORT,
        };
        let mut cfg = ClientConfig::new(
            vec![Endpoint {
                host: self.host.clone(),
                port,
            }],
            transport,
            self.password.clone(),
        );
        cfg.client_name = "kubemaker-test".into();
        cfg.request_timeout = Duration::from_secs(20);
        cfg
    }

    /// Environment for the `kubemaker cib` CLI (and Pacemaker's own tools).
    pub fn env(&self, transport: Transport) -> Vec<(String, String)> {
        let (port, encrypted) = match transport {
            Transport::Tls => (TLS_PORT, "true"),
            Transport::Plain => (CLEAR_PORT, "false"),
        };
        vec![
            ("CIB_server".into(), self.host.clone()),
            ("CIB_port".into(), port.to_string()),
            ("CIB_encrypted".into(), encrypted.into()),
            ("CIB_user".into(), "hacluster".into()),
            ("CIB_passwd".into(), self.password.expose().into()),
        ]
    }
}

fn listening(host: &str, port: u16) -> bool {
    let ip: IpAddr = host
        .parse()
        .expect("the cluster node's address is an IP address");
    let addr = SocketAddr::from((ip, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// A fresh random password (hex of 12 random bytes).
fn random_password() -> String {
    format!("km-{}", hex(&random_bytes(12)))
}

/// Makes the remote CIB port usable on the test cluster and returns how to log in.
pub fn enable_remote_cib(cluster: &Cluster) -> RemoteCib {
    // hacluster must be in haclient (the package does this; make sure) and have a password.
    let host = cluster.node_addr();
    let groups =
        String::from_utf8_lossy(&cluster.run_ok("id", &["-nG", "hacluster"]).stdout).into_owned();
    if !groups.split_whitespace().any(|g| g == "haclient") {
        cluster.run_ok("usermod", &["-a", "-G", "haclient", "hacluster"]);
    }
    let password = random_password();
    let out = run_with_input(
        &mut Generation::current().cluster_command("chpasswd"),
        Some(format!("hacluster:{password}\n").as_bytes()),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "chpasswd failed for hacluster");
    // Debian sid (3.0.3) creates hacluster with systemd-sysusers, which gives system accounts
    // an expiry date of day 1: PAM then refuses every password login. An admin of such a
    // cluster has to lift it the same way.
    let shadow = std::fs::read_to_string(cluster.node_path("/etc/shadow")).unwrap_or_default();
    let expires = shadow
        .lines()
        .find(|l| l.starts_with("hacluster:"))
        .and_then(|l| l.split(':').nth(7))
        .unwrap_or_default();
    if !expires.is_empty() {
        eprintln!("[cib_port] hacluster's account expires (day {expires}); chage -E -1 hacluster");
        cluster.run_ok("chage", &["-E", "-1", "hacluster"]);
    }

    // What pacemaker-based will read when it starts is the file, not the live CIB.
    let on_disk = || {
        let cib = std::fs::read_to_string(cluster.node_path(CIB_FILE)).unwrap_or_default();
        let root = cib.split('>').next().unwrap_or_default().to_string();
        root.contains(&format!("remote-tls-port=\"{TLS_PORT}\""))
            && root.contains(&format!("remote-clear-port=\"{CLEAR_PORT}\""))
    };
    let _ = cluster.cib_xml();
    let configured = on_disk();
    if !configured {
        let xml =
            format!(r#"<cib remote-tls-port="{TLS_PORT}" remote-clear-port="{CLEAR_PORT}"/>"#);
        cluster.run_ok("cibadmin", &["--modify", "--xml-text", &xml]);
        // A root-attribute change counts as a status change (num_updates), which pacemaker-based
        // does not write to disk, and so would a bare `cibadmin --bump`; a configuration change
        // (a throwaway cluster property, set then deleted) makes it write the ports out.
        let prop = [
            "--type",
            "crm_config",
            "--name",
            "kubemaker-remote-cib-enabled",
        ];
        cluster.run_ok(
            "crm_attribute",
            &[&prop[..], &["--update", "true"]].concat(),
        );
        cluster.run_ok("crm_attribute", &[&prop[..], &["--delete"]].concat());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if on_disk() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the CIB with the remote ports was not written to disk within 20 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if !configured || !listening(&host, TLS_PORT) || !listening(&host, CLEAR_PORT) {
        eprintln!(
            "[cib_port] restarting the test cluster so pacemaker-based opens ports {TLS_PORT}/{CLEAR_PORT}"
        );
        restart_test_cluster();
        wait_for_ports(&host);
        let _ = cluster.run("crm_mon", &["-1"]);
    }
    RemoteCib {
        password: Secret::new(password),
        host,
    }
}

/// Closes the remote CIB ports, as on a cluster whose admin never opened them: the root attributes
/// removed and pacemaker-based restarted. `cibadmin --modify` cannot remove an attribute, so the
/// whole CIB is replaced with them gone and the epoch bumped (a replace must be newer); the
/// restart right after rebuilds the status section anyway. [`enable_remote_cib`] opens them again
/// for the tests that need them. For a caller holding the cluster lock.
pub fn disable_remote_cib(cluster: &Cluster) {
    let host = cluster.node_addr();
    let mut root = kubemaker::wire::Element::parse(&cluster.cib_xml()).expect("CIB XML");
    let had_tls = root.remove_attr("remote-tls-port").is_some();
    let had_clear = root.remove_attr("remote-clear-port").is_some();
    if had_tls || had_clear {
        let epoch = root.attr_i64("epoch").unwrap_or(0);
        root.set_attr("epoch", epoch + 1);
        root.set_attr("num_updates", 0);
        cluster.run_ok("cibadmin", &["--replace", "--xml-text", &root.to_xml()]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let cib = std::fs::read_to_string(cluster.node_path(CIB_FILE)).unwrap_or_default();
            let on_disk = cib.split('>').next().unwrap_or_default().to_string();
            if !on_disk.contains("remote-tls-port") && !on_disk.contains("remote-clear-port") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the CIB without the remote ports was not written to disk within 20 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if listening(&host, TLS_PORT) || listening(&host, CLEAR_PORT) {
        eprintln!(
            "[cib_port] restarting the test cluster so pacemaker-based closes ports {TLS_PORT}/{CLEAR_PORT}"
        );
        restart_test_cluster();
        let _ = cluster.run("crm_mon", &["-1"]);
    }
    assert!(
        !listening(&host, TLS_PORT) && !listening(&host, CLEAR_PORT),
        "the remote CIB ports are still open at {host}"
    );
}

/// Waits (at most 60 s) until pacemaker-based listens on both ports at `host` after a start.
pub fn wait_for_ports(host: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(listening(host, TLS_PORT) && listening(host, CLEAR_PORT)) {
        assert!(
            Instant::now() < deadline,
            "pacemaker-based did not open ports {TLS_PORT}/{CLEAR_PORT} within 60 s after a start"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
