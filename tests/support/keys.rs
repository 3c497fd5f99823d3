//! Pacemaker Remote keys: key files for test hosts, the suite's stable key, the cluster's own key
//! (and the controller's 60 s cache of it), and the helpers that check a key never shows.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::env::{TEST_STATE_DIR, epoch_secs, lock_file};
use super::generation::Generation;

/// The key file the cluster's controller reads to connect to remote nodes (on the cluster node:
/// see [`cluster_authkey_path`]).
pub const CLUSTER_AUTHKEY: &str = "/etc/pacemaker/authkey";

/// [`CLUSTER_AUTHKEY`] of the current generation's cluster node, as seen from the test.
pub fn cluster_authkey_path() -> std::path::PathBuf {
    Generation::current().cluster_path(CLUSTER_AUTHKEY)
}

/// Marker for the controller's Pacemaker Remote key cache, see [`install_cluster_authkey`].
/// `scripts/test-cluster.sh` deletes it when it starts a fresh pacemakerd.
fn key_read_marker() -> std::path::PathBuf {
    Generation::current().state_dir().join("remote-key-read")
}

/// Writes `len` random bytes (from /dev/urandom) to `path` with mode 0400 and returns them.
pub fn write_authkey(path: &Path, len: usize) -> Vec<u8> {
    let key = random_bytes(len);
    write_key_file(path, &key);
    key
}

/// `len` random bytes from /dev/urandom.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
}

/// Lowercase hex, two digits a byte (how a key would look in a log, and how gnutls tools take one).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `key` to `path` with mode 0400 (replacing the file atomically).
pub fn write_key_file(path: &Path, key: &[u8]) {
    write_file_atomically(path, key, 0o400);
}

/// Writes `data` to `path` with mode 0600 (parent created): kubeconfigs and other secrets.
pub fn write_private(path: &Path, data: &[u8]) {
    write_file_atomically(path, data, 0o600);
}

fn write_file_atomically(path: &Path, data: &[u8], mode: u32) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).expect("chmod key file");
    fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("cannot rename {} to {}: {e}", tmp.display(), path.display()));
}

/// A stable 4096-byte test key (`/var/tmp/kubemaker-test/authkey`, created on first use). Using the
/// same key in every test keeps [`install_cluster_authkey`] a no-op after the first install.
pub fn test_authkey() -> Vec<u8> {
    let path = Path::new(TEST_STATE_DIR).join("authkey");
    let _guard = lock_file(
        &Path::new(TEST_STATE_DIR).join("authkey.lock"),
        Duration::from_secs(60),
    );
    match fs::read(&path) {
        Ok(key) if key.len() == 4096 => key,
        _ => write_authkey(&path, 4096),
    }
}

/// The key the cluster already uses (so the controller's 60 s key cache never has to expire), or
/// else [`test_authkey`], installed.
pub fn current_cluster_authkey() -> Vec<u8> {
    match fs::read(cluster_authkey_path()) {
        Ok(key) if !key.is_empty() => key,
        _ => {
            let key = test_authkey();
            install_cluster_authkey(&key);
            key
        }
    }
}

/// Installs `key` as the cluster's Pacemaker Remote key ([`CLUSTER_AUTHKEY`]), owner
/// `root:haclient`, mode 0640, like the pacemaker package and Pacemaker's documentation do: the
/// controller runs as `hacluster` (group `haclient`) and only needs to read it.
///
/// A no-op if the file already holds exactly `key`. Otherwise beware: the controller caches the key
/// it last read for 60 s (`lrmd_client.c`), so right after a remote connection it would still use
/// the old key. The harness records when a remote connection may last have read the key (creating
/// a remote resource; [`super::Cluster::reset`] removing one; a fresh cluster start clears it), and this
/// function sleeps until 61 s after that before returning.
pub fn install_cluster_authkey(key: &[u8]) {
    assert!(
        !key.is_empty(),
        "an empty key file means ENOKEY to Pacemaker"
    );
    let path = cluster_authkey_path();
    if fs::read(&path).is_ok_and(|old| old == key) {
        return;
    }
    install_cluster_file(CLUSTER_AUTHKEY, key);

    if let Some(last_read) = remote_key_last_read() {
        if !Generation::current().is_host() {
            // Pacemaker 3.0.x's controller went on using the key it had read before: on 3.0.3,
            // connections (to our daemon and to the reference pacemaker-remoted alike) still used
            // the old key minutes after the file changed, though lrmd_client.c at Pacemaker-3.0.0
            // has the same 60 s key cache as 2.1.5. A restarted cluster reads the new key.
            eprintln!(
                "[harness] cluster authkey changed; restarting the Pacemaker {} cluster so its controller reads it",
                Generation::current().version()
            );
            super::cluster::restart_test_cluster();
            return;
        }
        let ready = last_read + 61;
        let now = epoch_secs();
        if ready > now {
            eprintln!(
                "[harness] cluster authkey changed; waiting {} s for the controller's 60 s key cache to expire",
                ready - now
            );
            thread::sleep(Duration::from_secs(ready - now));
        }
    }
}

/// The gid of group `haclient` on the cluster node (its own /etc/group: a 3.x root's ids are
/// not this machine's).
/// Writes `data` to the cluster node's file `path` (e.g. under /etc/pacemaker), as Pacemaker's
/// daemons read their secrets: root:haclient, mode 0640, replaced atomically.
pub fn install_cluster_file(path: &str, data: &[u8]) {
    let path = Generation::current().cluster_path(path);
    write_file_atomically(&path, data, 0o640);
    nix::unistd::chown(
        &path,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(cluster_haclient_gid())),
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn cluster_haclient_gid() -> u32 {
    let group_file = Generation::current().cluster_path("/etc/group");
    let groups = fs::read_to_string(&group_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", group_file.display()));
    groups
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some("haclient"))
                .then(|| f.nth(1).and_then(|gid| gid.parse().ok()))
                .flatten()
        })
        .unwrap_or_else(|| {
            panic!(
                "no group haclient in {} (the pacemaker package creates it)",
                group_file.display()
            )
        })
}

/// Records that a remote connection is (or may soon be) active: the key may be read any time.
/// [`super::Cluster::cibadmin`] calls it itself; a test whose remote connections something else creates
/// (the operator's controller) calls it before the first one.
pub fn mark_remote_key_in_use() {
    let marker = key_read_marker();
    let _ = fs::create_dir_all(marker.parent().unwrap_or(Path::new("/")));
    let _ = fs::write(marker, "active\n");
}

/// Records that no remote connection is configured any more: the key was last read at most now.
/// Call it only once every remote connection resource is gone from the CIB.
pub fn mark_remote_key_idle() {
    let _ = fs::write(key_read_marker(), format!("{}\n", epoch_secs()));
}

/// When the controller may last have read the key (epoch seconds), if ever since it started.
fn remote_key_last_read() -> Option<u64> {
    let text = match fs::read_to_string(key_read_marker()) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(_) => return Some(epoch_secs()),
    };
    Some(text.trim().parse().unwrap_or_else(|_| epoch_secs()))
}

// ---------------------------------------------------------------------------------------------
// The authkey must never be logged
// ---------------------------------------------------------------------------------------------

/// Panics if `log` contains `key` (or any 24-byte piece of it, at 48-byte steps) as lowercase or
/// uppercase hex or as standard/URL-safe base64. The message never shows the key.
pub fn assert_key_not_logged(log: &str, key: &[u8], whose: &str) {
    assert!(key.len() >= 24, "key too short to check");
    let mut off = 0;
    while off + 24 <= key.len() {
        let piece = &key[off..off + 24];
        let lower = hex(piece);
        let b64 = base64_encode(piece);
        let b64url = b64.replace('+', "-").replace('/', "_");
        for (enc, needle) in [
            ("hex", lower.clone()),
            ("HEX", lower.to_uppercase()),
            ("base64", b64),
            ("base64url", b64url),
        ] {
            assert!(
                !log.contains(&needle),
                "{whose} contains the authkey ({enc} of bytes {off}..{}); contents not shown",
                off + 24
            );
        }
        off += 48;
    }
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Standard base64 (padding optional, whitespace ignored); None if invalid.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT.decode(compact).ok()
}
