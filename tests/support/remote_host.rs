//! A remote node's host: `kubemaker remoted` with its own key file and log, either in a network
//! namespace of its own (a remote node as the cluster sees one) or on loopback (protocol tests,
//! no root needed). Every test that runs our daemon gets it from here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use kubemaker::remoted::client::LrmdClient;

use super::env::{TEST_STATE_DIR, kubemaker_remoted};
use super::keys::write_key_file;
use super::netns::NetnsHost;
use super::process::{Daemon, free_port, tail};

/// How long a start may take until the log says "successfully started".
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STARTED: &str = "successfully started";

/// Where the daemon runs.
enum Place {
    Netns(NetnsHost),
    /// 127.0.0.1 at this port; the files live in a temporary directory removed on drop.
    Loopback(u16),
}

/// `kubemaker remoted` on a test host, with its key file `<dir>/authkey` and its log
/// `<dir>/remoted.log`. Dropping it kills the daemon (see [`Daemon`]) and deletes the network
/// namespace; a netns host's files stay for a post-mortem.
pub struct RemoteHost {
    // Declared first: the daemon goes before its namespace.
    daemon: Option<Daemon>,
    place: Place,
    dir: PathBuf,
    key: Vec<u8>,
    port: Option<u16>,
    env: Vec<(String, String)>,
}

impl RemoteHost {
    /// Network namespace `km-<tag>` (see [`NetnsHost::create`]) where nothing listens yet, its
    /// files in `/var/tmp/kubemaker-test/hosts/<tag>` (emptied first).
    pub fn in_netns(tag: &str) -> RemoteHost {
        let dir = Path::new(TEST_STATE_DIR).join("hosts").join(tag);
        RemoteHost::new(Place::Netns(NetnsHost::create(tag)), dir)
    }

    /// [`RemoteHost::in_netns`] with the daemon started, using `key`.
    pub fn start_in_netns(tag: &str, key: &[u8]) -> RemoteHost {
        RemoteHost::in_netns(tag).with_key(key).started()
    }

    /// The daemon on 127.0.0.1 at a free port with `env` added, started. No local IPC: beside the
    /// test cluster, its daemons own the IPC names. Its files go with it on drop.
    pub fn start_on_loopback(name: &str, key: &[u8], env: &[(&str, &str)]) -> RemoteHost {
        let dir = std::env::temp_dir().join(format!("km-remoted-{name}-{}", std::process::id()));
        RemoteHost::new(Place::Loopback(free_port()), dir)
            .with_key(key)
            .with_env(env)
            .started()
    }

    fn new(place: Place, dir: PathBuf) -> RemoteHost {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        RemoteHost {
            daemon: None,
            place,
            dir,
            key: Vec::new(),
            port: None,
            env: Vec::new(),
        }
    }

    /// Sets the key before the first start.
    pub fn with_key(mut self, key: &[u8]) -> RemoteHost {
        self.set_key(key);
        self
    }

    /// Adds `env` to the daemon's environment (e.g. the PCMK_*_file settings of X.509).
    pub fn with_env(mut self, env: &[(&str, &str)]) -> RemoteHost {
        self.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Listens on `port` instead of the default 3121 (netns hosts; loopback ones pick a free port).
    pub fn with_port(mut self, port: u16) -> RemoteHost {
        assert!(
            matches!(self.place, Place::Netns(_)),
            "a loopback host picks its own port"
        );
        self.port = Some(port);
        self
    }

    /// Starts the daemon and returns the host.
    pub fn started(mut self) -> RemoteHost {
        self.start();
        self
    }

    /// Replaces the key file (mode 0400); a running daemon picks it up after its key cache expires.
    pub fn set_key(&mut self, key: &[u8]) {
        write_key_file(&self.key_path(), key);
        self.key = key.to_vec();
    }

    /// (Re)starts the daemon and waits until its log says it started. The log is appended to, so
    /// a restart waits for one more start line than the log had before.
    pub fn start(&mut self) {
        let log = self.log_path();
        let starts = |text: &str| text.matches(STARTED).count();
        let before = starts(&std::fs::read_to_string(&log).unwrap_or_default());
        let key = self.key_path();
        let daemon = match &self.place {
            Place::Netns(host) => {
                let port = self.port.map(|p| p.to_string());
                let mut args = Vec::new();
                if let Some(p) = &port {
                    args.extend(["-p", p.as_str()]);
                }
                let mut env = vec![
                    ("PCMK_authkey_location", key.display().to_string()),
                    ("PCMK_logfile", log.display().to_string()),
                ];
                env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.clone())));
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                Daemon::spawn_in(host, &kubemaker_remoted(), &args, &env, &log)
            }
            Place::Loopback(port) => {
                let mut cmd = Command::new(kubemaker_remoted());
                cmd.args(["--no-local-ipc", "-p", &port.to_string(), "-l"])
                    .arg(&log)
                    .env("PCMK_authkey_location", &key)
                    .env_remove("PCMK_remote_address")
                    .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                Daemon::spawn_logging_itself(cmd, &log).unwrap_or_else(|e| {
                    panic!("cannot start {}: {e}", kubemaker_remoted().display())
                })
            }
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while starts(&daemon.log()) <= before {
            assert!(
                Instant::now() < deadline,
                "kubemaker remoted ({}) did not start within {START_TIMEOUT:?}:\n{}",
                self.name(),
                tail(&daemon.log(), 20)
            );
            thread::sleep(Duration::from_millis(20));
        }
        self.daemon = Some(daemon);
    }

    /// Where the daemon listens: the namespace's address, or 127.0.0.1.
    pub fn addr(&self) -> String {
        match &self.place {
            Place::Netns(host) => host.addr(),
            Place::Loopback(_) => "127.0.0.1".to_string(),
        }
    }

    /// `addr:port`, for a client to connect to.
    pub fn endpoint(&self) -> String {
        let port = match &self.place {
            Place::Netns(_) => self.port.unwrap_or(3121),
            Place::Loopback(port) => *port,
        };
        format!("{}:{port}", self.addr())
    }

    /// The namespace name (`km-<tag>`), or `loopback`.
    pub fn name(&self) -> &str {
        match &self.place {
            Place::Netns(host) => host.name(),
            Place::Loopback(_) => "loopback",
        }
    }

    /// The network namespace (panics for a loopback host).
    pub fn netns(&self) -> &NetnsHost {
        match &self.place {
            Place::Netns(host) => host,
            Place::Loopback(_) => panic!("a loopback host has no network namespace"),
        }
    }

    /// The key the daemon reads (the last one set).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("authkey")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("remoted.log")
    }

    /// The host's own directory (key, log, and whatever the test puts there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon last started (panics if none was).
    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the daemon was started")
    }

    pub fn daemon_mut(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("the daemon was started")
    }

    /// A registered Pacemaker Remote client (`provider`: a cluster node's proxy provider).
    pub async fn lrmd_client(&self, name: &str, provider: bool) -> LrmdClient {
        LrmdClient::connect(&self.endpoint(), &self.key, name, provider)
            .await
            .expect("register")
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        self.daemon = None;
        if let Place::Loopback(_) = self.place {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The RemoteNode spec tests give a host at `addr`: reconnect 5 s, monitor every 5 s (15 s
/// timeout), so a test sees it join and leave quickly.
pub fn remote_node_spec(addr: &str) -> kubemaker::cib::spec::RemoteNodeSpec {
    use kubemaker::cib::spec::{MonitorSpec, RemoteNodeSpec};
    RemoteNodeSpec {
        address: Some(addr.into()),
        reconnect_interval: Some("5s".into()),
        monitor: Some(MonitorSpec {
            interval: Some("5s".into()),
            timeout: Some("15s".into()),
        }),
        ..Default::default()
    }
}
