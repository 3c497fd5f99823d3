#!/usr/bin/env bash
# Installs what the integration tests need on a fresh Debian 12 machine (run as root).
# Idempotent: re-running it on a prepared machine only checks and prints.
#
#  - Debian packages: a real Pacemaker 2.1.5 cluster stack, GnuTLS/libqb headers for the build,
#    iproute2 (network namespaces), gnutls-bin (gnutls-cli/gnutls-serv for probing, certtool for
#    the X.509 tests' throw-away certificates), procps; for the local
#    Kubernetes nodes (scripts/local-k8s.sh) containerd, runc, the CNI plugins, iptables, conntrack,
#    openssl (certificates; the key-format test), util-linux (nsenter/unshare); for the image without Docker
#    (scripts/build-image.sh) mmdebstrap and a static libc for the pause program; mmdebstrap also
#    builds the Pacemaker 3.0.0/3.0.3 roots (scripts/pacemaker-root.sh, run by scripts/test.sh).
#  - A Rust toolchain: the existing `cargo` on PATH is used; none is installed here. For the fuzz
#    smoke (scripts/fuzz.sh): rustup's nightly toolchain (minimal profile) if absent, and
#    cargo-fuzz, built once into /var/tmp/kubemaker-cache/cargo-fuzz-<version>/bin.
#  - The reference pacemaker-remoted, extracted (not installed: pacemaker-remote conflicts with
#    pacemaker as packages) into /var/tmp/kubemaker-cache/reference/.
set -euo pipefail

say() { printf '[install-test-deps] %s\n' "$*"; }
die() { printf '[install-test-deps] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo $0)"

PACKAGES=(pacemaker corosync pacemaker-cli-utils resource-agents libgnutls28-dev libqb-dev
          pkg-config iproute2 gnutls-bin procps
          containerd runc containernetworking-plugins iptables conntrack openssl util-linux
          mmdebstrap gcc libc6-dev binutils)
REFERENCE_DIR=${KUBEMAKER_REFERENCE_DIR:-/var/tmp/kubemaker-cache/reference}
REFERENCE_BIN="$REFERENCE_DIR/usr/sbin/pacemaker-remoted"
export DEBIAN_FRONTEND=noninteractive

# --- 1. Debian packages -------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    case "$status" in
        ii*) ;;
        *) missing+=("$p") ;;
    esac
done
if [ "${#missing[@]}" -eq 0 ]; then
    say "packages: all ${#PACKAGES[@]} present"
else
    say "packages: installing ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    say "packages: installed"
fi

id hacluster >/dev/null 2>&1 || die "user hacluster missing (the pacemaker package should have created it)"

# --- 2. Rust toolchain --------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    for d in "${SUDO_USER:+$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo/bin}" /root/.cargo/bin; do
        if [ -n "$d" ] && [ -x "$d/cargo" ]; then
            die "cargo is not on PATH but exists in $d; run with PATH including it (e.g. sudo env PATH=\"\$PATH\" $0)"
        fi
    done
    die "no Rust toolchain: cargo is not on PATH. Install one (https://rustup.rs) and re-run."
fi
say "rust: $(cargo --version)"
for tool in rustfmt clippy-driver; do
    command -v "$tool" >/dev/null 2>&1 || say "warning: $tool not found (rustup component add rustfmt clippy)"
done
if cargo +nightly --version >/dev/null 2>&1; then
    say "rust nightly: $(cargo +nightly --version)"
else
    command -v rustup >/dev/null 2>&1 || die "no nightly toolchain and no rustup to install one (the fuzz smoke needs it)"
    say "rust nightly: installing (rustup toolchain install nightly --profile minimal)"
    timeout 900 rustup toolchain install nightly --profile minimal || die "rustup could not install nightly"
fi
CARGO_FUZZ_VERSION=0.13.2
CARGO_FUZZ_ROOT=/var/tmp/kubemaker-cache/cargo-fuzz-$CARGO_FUZZ_VERSION
if [ -x "$CARGO_FUZZ_ROOT/bin/cargo-fuzz" ]; then
    say "cargo-fuzz: $CARGO_FUZZ_VERSION cached in $CARGO_FUZZ_ROOT"
else
    say "cargo-fuzz: building $CARGO_FUZZ_VERSION into $CARGO_FUZZ_ROOT (~3 min, once)"
    timeout 1800 cargo install --locked --quiet --version "$CARGO_FUZZ_VERSION" --root "$CARGO_FUZZ_ROOT" cargo-fuzz ||
        die "cargo install cargo-fuzz failed"
fi

# --- 3. Reference pacemaker-remoted -------------------------------------------------------
if [ -x "$REFERENCE_BIN" ]; then
    say "reference: present at $REFERENCE_BIN"
else
    pcmk_version=$(dpkg-query -W -f='${Version}' pacemaker)
    say "reference: downloading pacemaker-remote=$pcmk_version (same version as the installed pacemaker)"
    tmp=$(mktemp -d /var/tmp/kubemaker-refdl.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    # apt-get download drops privileges to _apt; the directory must be writable by it.
    chmod 0777 "$tmp"
    if ! (cd "$tmp" && apt-get download -q "pacemaker-remote=$pcmk_version"); then
        say "reference: download failed, refreshing package lists and retrying once"
        apt-get update -q
        (cd "$tmp" && apt-get download -q "pacemaker-remote=$pcmk_version")
    fi
    deb=$(find "$tmp" -maxdepth 1 -name 'pacemaker-remote_*.deb' | head -n 1)
    [ -n "$deb" ] || die "apt-get download produced no pacemaker-remote .deb"
    mkdir -p "$REFERENCE_DIR.partial"
    dpkg -x "$deb" "$REFERENCE_DIR.partial"
    [ -x "$REFERENCE_DIR.partial/usr/sbin/pacemaker-remoted" ] || die "the .deb has no usr/sbin/pacemaker-remoted"
    rm -rf "$REFERENCE_DIR"
    mv "$REFERENCE_DIR.partial" "$REFERENCE_DIR"
    rm -rf "$tmp"
    trap - EXIT
    say "reference: extracted to $REFERENCE_DIR"
fi

# Verify the reference binary links against the libraries of the installed pacemaker package...
if ldd "$REFERENCE_BIN" | grep -q 'not found'; then
    ldd "$REFERENCE_BIN" | grep 'not found' >&2
    die "reference pacemaker-remoted has unresolved libraries"
fi
"$REFERENCE_BIN" --version >/dev/null 2>&1 || die "reference pacemaker-remoted --version failed"

# ...and that it really starts and listens. It runs in a throwaway network namespace so that its
# libqb IPC names (abstract sockets, per namespace) and port 3121 never touch the host's.
check_ns=km-refcheck
check_log=$(mktemp /var/tmp/kubemaker-refcheck.XXXXXX.log)
ip netns delete "$check_ns" 2>/dev/null || true
ip netns add "$check_ns"
ip -n "$check_ns" link set lo up
PCMK_logfile="$check_log" PCMK_remote_address=127.0.0.1 \
    ip netns exec "$check_ns" "$REFERENCE_BIN" >>"$check_log" 2>&1 &
ref_pid=$!
listening=no
for _ in $(seq 1 100); do   # at most ~10 s
    if ip netns exec "$check_ns" ss -Hltn 'sport = :3121' 2>/dev/null | grep -q 3121; then
        listening=yes; break
    fi
    kill -0 "$ref_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$ref_pid" 2>/dev/null; then
    kill -TERM "$ref_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$ref_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$ref_pid" 2>/dev/null || true
fi
wait "$ref_pid" 2>/dev/null || true
ip netns delete "$check_ns" 2>/dev/null || true
if [ "$listening" != yes ]; then
    tail -n 30 "$check_log" >&2 || true
    die "reference pacemaker-remoted did not start listening on port 3121 (log above: $check_log)"
fi
rm -f "$check_log"
say "reference: $("$REFERENCE_BIN" --version 2>&1 | head -n 1) starts and listens on :3121"
say "done"
