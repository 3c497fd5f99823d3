//! Network namespaces as test hosts: each a "remote host" with its own address on a veth pair.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::env::{TEST_STATE_DIR, lock_file};
use super::process::{Daemon, run, run_ok};

/// A "host" for a remote node: network namespace `km-<tag>` joined to the root namespace by a veth
/// pair. Host side: link `km-<tag>` with `<subnet>.1/24`; inside: `eth0` with `<subnet>.2/24`,
/// `lo` up, and a route to the 3.x test cluster nodes' `10.249.0.0/16` via the host side.
///
/// `n` (1..=500) is the lowest index whose lock file `/var/tmp/kubemaker-test/netns/<n>.lock` this
/// process can flock; the lock is held for the host's lifetime, so hosts in several threads and test
/// binaries get distinct subnets. The subnet is `10.250.<n>` for n ≤ 250 and `10.251.<n-250>` above
/// (only the scale benchmark needs more than 250 hosts). A leftover `km-*` link with an address in
/// the subnet (a crashed run) is deleted when `n` is taken; a subnet used by any other link is
/// skipped.
///
/// Tags must be unique among concurrently running tests (a per-tag lock makes a second user wait);
/// they are 1 to 12 characters of `[a-z0-9-]` (Linux link names have at most 15).
///
/// Drop deletes the namespace and the veth pair. It does not kill processes: the caller owns those
/// ([`Daemon`] kills its child on drop). A namespace that still has processes lives on until they
/// exit, but without its veth.
pub struct NetnsHost {
    name: String,
    /// The first three octets of the host's /24, e.g. `10.250.7`.
    subnet: String,
    _index_lock: File,
    _tag_lock: File,
}

impl NetnsHost {
    /// Creates namespace `km-<tag>`; first deletes a leftover namespace or link of that name.
    pub fn create(tag: &str) -> NetnsHost {
        assert!(
            !tag.is_empty()
                && tag.len() <= 12
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "NetnsHost tag {tag:?}: use 1 to 12 characters of [a-z0-9-]"
        );
        let name = format!("km-{tag}");
        let lock_dir = Path::new(TEST_STATE_DIR).join("netns");
        let tag_lock_path = lock_dir.join(format!("tag-{tag}.lock"));
        let tag_lock = lock_file(&tag_lock_path, Duration::from_secs(120));
        let (index, index_lock) = allocate_index(&lock_dir);

        // Leftovers of a crashed run with the same name.
        let _ = run("ip", &["netns", "delete", &name]);
        let _ = run("ip", &["link", "delete", &name]);

        let subnet = subnet_of(index);
        let host_addr = format!("{subnet}.1/24");
        let ns_addr = format!("{subnet}.2/24");
        run_ok("ip", &["netns", "add", &name]);
        let host = NetnsHost {
            name: name.clone(),
            subnet: subnet.clone(),
            _index_lock: index_lock,
            _tag_lock: tag_lock,
        };
        // From here on, Drop cleans up if a step panics.
        run_ok(
            "ip",
            &[
                "link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ],
        );
        run_ok("ip", &["addr", "add", &host_addr, "dev", &name]);
        run_ok("ip", &["link", "set", &name, "up"]);
        run_ok("ip", &["-n", &name, "addr", "add", &ns_addr, "dev", "eth0"]);
        run_ok("ip", &["-n", &name, "link", "set", "eth0", "up"]);
        run_ok("ip", &["-n", &name, "link", "set", "lo", "up"]);
        // A 3.x test cluster node lives in 10.249.<k>.0/24 behind the host (scripts/lib/pcmk-node.sh):
        // its connections come from there, so the replies go back through the host.
        let via = format!("{subnet}.1");
        run_ok(
            "ip",
            &["-n", &name, "route", "add", "10.249.0.0/16", "via", &via],
        );
        host
    }

    /// The namespace's address (`<subnet>.2`): where a daemon inside listens.
    pub fn addr(&self) -> String {
        format!("{}.2", self.subnet)
    }

    /// The root namespace's end of the veth (`<subnet>.1`): where the cluster's traffic comes from.
    pub fn host_addr(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// The namespace name, `km-<tag>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <ns> <program>`: add arguments, environment, stdio, then spawn. `ip netns exec`
    /// joins the namespace and then execs `program` in the same process (no fork), so the child's
    /// pid is the program's pid.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "delete", &self.name]);
        let _ = run("ip", &["link", "delete", &self.name]);
    }
}

/// The /24 of host index `n` (1..=500), as its first three octets.
fn subnet_of(index: u32) -> String {
    if index <= 250 {
        format!("10.250.{index}")
    } else {
        format!("10.251.{}", index - 250)
    }
}

fn allocate_index(lock_dir: &Path) -> (u32, File) {
    fs::create_dir_all(lock_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_dir.display()));
    for index in 1..=500u32 {
        let path = lock_dir.join(format!("{index}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        if file.try_lock().is_err() {
            continue;
        }
        // Nobody alive owns this index. A km-* link with an address in the subnet is a leftover of
        // a crashed run; any other link with one belongs to someone else: skip the subnet.
        let subnet = format!("{}.", subnet_of(index));
        let out = run("ip", &["-o", "-4", "addr", "show"]);
        let mut usable = true;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut fields = line.split_whitespace();
            let (_, dev, _, cidr) = (fields.next(), fields.next(), fields.next(), fields.next());
            let (Some(dev), Some(cidr)) = (dev, cidr) else {
                continue;
            };
            if !cidr.starts_with(&subnet) {
                continue;
            }
            let dev = dev.split('@').next().unwrap_or(dev);
            if dev.starts_with("km-") {
                eprintln!("[harness] deleting leftover link {dev} ({cidr})");
                let _ = run("ip", &["link", "delete", dev]);
            } else {
                usable = false; // not ours: leave it alone, use another subnet
            }
        }
        if usable {
            return (index, file);
        }
    }
    panic!("no free test subnet in 10.250.0.0/15 (all 500 in use?)");
}

impl Daemon {
    /// Starts `program args` in `host` with extra environment `env`, output appended to `log`
    /// (created, with its parent directory, if needed).
    pub fn spawn_in(
        host: &NetnsHost,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Daemon {
        let mut cmd = host.command(program);
        cmd.args(args).envs(env.iter().copied());
        Daemon::spawn(cmd, log).unwrap_or_else(|e| {
            panic!("cannot start {} in {}: {e}", program.display(), host.name())
        })
    }
}
