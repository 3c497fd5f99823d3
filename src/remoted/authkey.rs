//! The pre-shared key: the raw bytes of the first readable, non-empty key file (no trimming: a
//! trailing newline is part of the key). Re-read after a short time so a rotated Secret or key
//! file is picked up without a restart. Key bytes are never logged.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::tls::PskKeySource;

/// Pacemaker caches for 60 s; a Kubernetes Secret update should not take that long to land.
pub const CACHE_FOR: Duration = Duration::from_secs(10);

pub struct KeyFiles {
    paths: Vec<PathBuf>,
    cached: Mutex<Option<(Instant, Vec<u8>)>>,
}

impl KeyFiles {
    pub fn new(paths: Vec<PathBuf>) -> KeyFiles {
        KeyFiles {
            paths,
            cached: Mutex::new(None),
        }
    }

    /// Reads the key now, bypassing the cache. Returns the path it came from.
    pub fn load(&self) -> Option<(PathBuf, Vec<u8>)> {
        for (i, path) in self.paths.iter().enumerate() {
            match std::fs::read(path) {
                Ok(bytes) if !bytes.is_empty() => {
                    if i > 0 {
                        warn!(path = %path.display(), "Using fallback key file");
                    }
                    return Some((path.clone(), bytes));
                }
                Ok(_) => warn!(path = %path.display(), "Key file is empty"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(path = %path.display(), error = %e, "Cannot read key file"),
            }
        }
        None
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl PskKeySource for KeyFiles {
    fn current_key(&self) -> Option<Vec<u8>> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, key)) = cached.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return Some(key.clone());
        }
        match self.load() {
            Some((_, key)) => {
                *cached = Some((Instant::now(), key.clone()));
                Some(key)
            }
            None => {
                warn!(paths = ?self.paths, "No Pacemaker Remote key available; refusing the connection");
                *cached = None;
                None
            }
        }
    }
}

/// Which PSK identities a listener gives the key to: the cluster port takes every identity but
/// the CIB gateway's (Pacemaker's clients send "lrmd", and Pacemaker ignores it), the gateway
/// only its own, so a key holder cannot use one listener for the other's purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityRule {
    AllBut(&'static str),
    Only(&'static str),
}

impl IdentityRule {
    pub fn admits(self, identity: &str) -> bool {
        match self {
            IdentityRule::AllBut(refused) => identity != refused,
            IdentityRule::Only(wanted) => identity == wanted,
        }
    }
}

/// The key files as one listener's key source, under its [`IdentityRule`].
pub struct KeysFor {
    pub keys: std::sync::Arc<KeyFiles>,
    pub rule: IdentityRule,
}

impl PskKeySource for KeysFor {
    fn current_key(&self) -> Option<Vec<u8>> {
        self.keys.current_key()
    }

    fn key_for_identity(&self, identity: &str) -> Option<Vec<u8>> {
        if self.rule.admits(identity) {
            self.keys.current_key()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_fallback_and_empty_files() {
        let dir = std::env::temp_dir().join(format!("km-authkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"secret\n").unwrap();
        let keys = KeyFiles::new(vec![dir.join("missing"), a.clone(), b.clone()]);
        assert_eq!(keys.current_key().as_deref(), Some(&b"secret\n"[..]));
        std::fs::write(&a, b"new").unwrap();
        // Cached: still the old key until CACHE_FOR passes; load() bypasses the cache.
        assert_eq!(keys.current_key().as_deref(), Some(&b"secret\n"[..]));
        assert_eq!(keys.load(), Some((a.clone(), b"new".to_vec())));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(KeyFiles::new(vec![dir.join("gone")]).current_key(), None);
    }

    #[test]
    fn each_listener_takes_its_own_identities() {
        let gateway = crate::wire::cib_gateway::IDENTITY;
        let cluster = IdentityRule::AllBut(gateway);
        assert!(cluster.admits("lrmd") && cluster.admits("") && !cluster.admits(gateway));
        let only = IdentityRule::Only(gateway);
        assert!(only.admits(gateway) && !only.admits("lrmd") && !only.admits(""));
    }
}
