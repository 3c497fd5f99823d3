//! The readiness file: present while the daemon listens with a key it can use, absent otherwise
//! (no key file yet, or refusing connections while it shuts down). A Kubernetes exec probe tests
//! for it, so readiness means "a cluster could connect now" without a probe ever opening a TLS
//! connection (a bare TCP connect ends in a failed-handshake warning every period).
//!
//! Off unless `KUBEMAKER_READY_FILE` names a path. Only this module writes the file.

use std::path::PathBuf;

use tracing::{info, warn};

/// How often the daemon re-checks (the key may appear or vanish at any time).
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a cluster could connect now.
pub fn is_ready(listening: bool, key_usable: bool) -> bool {
    listening && key_usable
}

pub struct ReadyFile {
    path: PathBuf,
    /// What the file system shows, as far as we know; `None` before the first update.
    shown: Option<bool>,
}

impl ReadyFile {
    pub fn new(path: PathBuf) -> ReadyFile {
        ReadyFile { path, shown: None }
    }

    /// Creates or removes the file when `ready` differs from what it shows.
    pub fn update(&mut self, ready: bool) {
        if self.shown == Some(ready) {
            return;
        }
        let result = if ready {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(&self.path, b"ready\n")
        } else {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        match result {
            Ok(()) => {
                info!(path = %self.path.display(), ready, "Readiness changed");
                self.shown = Some(ready);
            }
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "Cannot update the readiness file")
            }
        }
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_listening_with_a_key() {
        assert!(is_ready(true, true));
        assert!(!is_ready(true, false));
        assert!(!is_ready(false, true));
        assert!(!is_ready(false, false));
    }

    #[test]
    fn the_file_follows_readiness_and_goes_with_the_daemon() {
        let dir = std::env::temp_dir().join(format!("km-ready-{}", std::process::id()));
        let path = dir.join("sub/remoted.ready");
        let mut f = ReadyFile::new(path.clone());
        f.update(false);
        assert!(!path.exists());
        f.update(true);
        assert!(path.is_file(), "created with its folder");
        f.update(true);
        assert!(path.is_file());
        f.update(false);
        assert!(!path.exists());
        f.update(true);
        drop(f);
        assert!(!path.exists(), "removed on drop");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
