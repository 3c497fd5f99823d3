//! Real fencing for the tests: a power switch the test runs and a fence device that uses it.
//!
//! - [`PowerSwitch`]: a TCP service on an address the cluster reaches, standing in for a BMC or a
//!   PDU. It turns "off NAME" / "on NAME" / "status NAME" requests into calls of the test's own
//!   power function (for the local Kubernetes workers, `scripts/local-k8s.sh power-off|on`) and
//!   records every request.
//! - [`FenceDevice`]: `tests/agents/fence/fence_kubemaker_test` installed where the cluster's fencer
//!   looks for agents, a `stonith` primitive pointing at the switch, `stonith-enabled=true` and
//!   `stonith-action=off` (a fenced machine stays off until the test powers it on);
//!   [`FenceDevice::remove`] (or dropping it) puts the cluster back as it was.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Cluster, repo_root, wait_for};

/// What the fencer asks of the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerVerb {
    Off,
    On,
    Status,
}

/// One request the switch served.
#[derive(Debug, Clone)]
pub struct PowerRequest {
    pub at: Instant,
    pub verb: PowerVerb,
    pub machine: String,
    pub answer: String,
}

/// The test's power function: acts on `machine` and returns the answer line ("ok", "on", "off"),
/// or why it could not.
pub type PowerFn = dyn Fn(PowerVerb, &str) -> Result<String, String> + Send + Sync;

/// A power switch listening on `addr`: one request per connection, served one at a time (a real
/// switch does not power a machine off and on at once).
pub struct PowerSwitch {
    pub addr: String,
    pub port: u16,
    requests: Arc<Mutex<Vec<PowerRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PowerSwitch {
    pub fn start(addr: &str, power: Box<PowerFn>) -> PowerSwitch {
        let listener = TcpListener::bind((addr, 0))
            .unwrap_or_else(|e| panic!("power switch: cannot listen on {addr}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            if let Some(r) = serve(conn, &*power) {
                                eprintln!(
                                    "[power switch] {:?} {} → {}",
                                    r.verb, r.machine, r.answer
                                );
                                requests.lock().expect("requests").push(r);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
        };
        PowerSwitch {
            addr: addr.to_string(),
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The requests served so far, oldest first.
    pub fn requests(&self) -> Vec<PowerRequest> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for PowerSwitch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one "VERB NAME" line (5 s at most), acts, answers one line.
fn serve(conn: TcpStream, power: &PowerFn) -> Option<PowerRequest> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (verb, machine) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let verb = match verb {
        "ping" => {
            let _ = (&conn).write_all(b"ok\n");
            return None;
        }
        "off" => PowerVerb::Off,
        "on" => PowerVerb::On,
        "status" => PowerVerb::Status,
        other => {
            let _ = writeln!(&conn, "error unknown request {other:?}");
            return None;
        }
    };
    let answer = power(verb, machine).unwrap_or_else(|e| format!("error {e}"));
    let _ = writeln!(&conn, "{answer}");
    Some(PowerRequest {
        at: Instant::now(),
        verb,
        machine: machine.to_string(),
        answer,
    })
}

/// The test fence agent's name, as a `stonith:` resource type.
pub const FENCE_AGENT: &str = "fence_kubemaker_test";

/// A fence device for `hosts` on the test cluster, backed by a [`PowerSwitch`].
pub struct FenceDevice<'a> {
    cluster: &'a Cluster,
    pub id: String,
    agent_path: PathBuf,
    removed: bool,
}

impl<'a> FenceDevice<'a> {
    /// Installs the agent on the cluster node, creates the device and enables fencing; returns
    /// once the fencer has registered the device and its monitor passed.
    pub fn configure(
        cluster: &'a Cluster,
        id: &str,
        switch: &PowerSwitch,
        hosts: &[&str],
    ) -> FenceDevice<'a> {
        let agent_path = cluster.node_path(&format!("/usr/sbin/{FENCE_AGENT}"));
        let source = repo_root().join("tests/agents/fence").join(FENCE_AGENT);
        std::fs::copy(&source, &agent_path)
            .unwrap_or_else(|e| panic!("installing {}: {e}", agent_path.display()));
        let device = FenceDevice {
            cluster,
            id: id.to_string(),
            agent_path,
            removed: false,
        };
        cluster.create_resource_xml(&format!(
            r#"<primitive id="{id}" class="stonith" type="{FENCE_AGENT}"><instance_attributes id="{id}-ia"><nvpair id="{id}-ia-ipaddr" name="ipaddr" value="{}"/><nvpair id="{id}-ia-ipport" name="ipport" value="{}"/><nvpair id="{id}-ia-hosts" name="pcmk_host_list" value="{}"/></instance_attributes><operations><op id="{id}-monitor" name="monitor" interval="60s"/></operations></primitive>"#,
            switch.addr,
            switch.port,
            hosts.join(" ")
        ));
        // Fencing powers off (no reboot): the machine stays off until the test powers it on.
        for (name, value) in [("stonith-action", "off"), ("stonith-enabled", "true")] {
            let out = cluster.set_property(name, Some(value));
            assert!(
                out.status.success(),
                "{name}={value}: {}",
                super::text(&out)
            );
        }
        cluster.wait_until(
            &format!("fence device {id} started"),
            Duration::from_secs(60),
            |v| v.resource(id).is_some_and(|r| r.active && !r.failed),
        );
        wait_for(
            &format!("the fencer to register {id}"),
            Duration::from_secs(30),
            || {
                let o = cluster.run("stonith_admin", &["--list-registered"]);
                let out = String::from_utf8_lossy(&o.stdout).into_owned();
                if out.lines().any(|l| l.trim() == id) {
                    Ok(())
                } else {
                    Err(out)
                }
            },
        );
        device
    }

    /// Disables fencing, unsets `stonith-action`, deletes the device and the agent.
    pub fn remove(mut self) {
        self.tear_down();
    }

    fn tear_down(&mut self) {
        if std::mem::replace(&mut self.removed, true) {
            return;
        }
        let _ = self.cluster.set_property("stonith-enabled", Some("false"));
        let _ = self.cluster.set_property("stonith-action", None);
        let _ = self.cluster.cibadmin(&[
            "--delete",
            "--xml-text",
            &format!(r#"<primitive id="{}"/>"#, self.id),
        ]);
        let _ = std::fs::remove_file(&self.agent_path);
    }
}

impl Drop for FenceDevice<'_> {
    fn drop(&mut self) {
        self.tear_down();
    }
}
