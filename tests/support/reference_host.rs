//! The generation's reference `pacemaker-remoted` on a test host of its own, restartable: the
//! other side of every side-by-side comparison.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::env::TEST_STATE_DIR;
use super::generation::Generation;
use super::keys::write_key_file;
use super::netns::NetnsHost;
use super::process::{Daemon, run_with_timeout};

pub struct ReferenceHost {
    pub host: NetnsHost,
    dir: PathBuf,
    daemon: Option<Daemon>,
}

impl ReferenceHost {
    /// A host `km-<tag>` with `key` as its authkey, the reference daemon started and listening.
    pub fn start(tag: &str, key: &[u8]) -> ReferenceHost {
        let host = NetnsHost::create(tag);
        let dir = Path::new(TEST_STATE_DIR).join(format!("{tag}-reference"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the reference's directory");
        write_key_file(&dir.join("authkey"), key);
        let mut r = ReferenceHost {
            host,
            dir,
            daemon: None,
        };
        r.restart();
        r
    }

    /// (Re)starts the daemon and waits (at most 20 s) until it listens.
    pub fn restart(&mut self) {
        let mut cmd = Generation::current().reference_remoted_command(&self.host, &[&self.dir]);
        cmd.env("PCMK_logfile", self.dir.join("pacemaker-remoted.log"))
            .env("PCMK_authkey_location", self.dir.join("authkey"))
            .env("PCMK_remote_address", self.host.addr());
        let daemon = Daemon::spawn(cmd, &self.dir.join("pacemaker-remoted.out"))
            .expect("start the reference pacemaker-remoted");
        // Listening is what the cluster needs; the daemon logs nothing on stdout for it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = run_with_timeout(
                self.host.command("ss").args(["-Hltn", "sport = :3121"]),
                Duration::from_secs(10),
            );
            if String::from_utf8_lossy(&out.stdout).contains("3121") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the reference pacemaker-remoted does not listen after 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.daemon = Some(daemon);
    }

    pub fn addr(&self) -> String {
        self.host.addr()
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("the reference was started")
    }
}
