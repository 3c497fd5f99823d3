#!/usr/bin/env bash
# Root file systems of other Pacemaker generations, built from Debian's packages with mmdebstrap and
# cached, for scripts/test-cluster.sh (KUBEMAKER_PACEMAKER=3.0.0|3.0.3) and the test harness.
#
#   scripts/pacemaker-root.sh build SUITE   build the root of SUITE (trixie, sid) unless cached;
#                                            prints its path as the last line of stdout
#   scripts/pacemaker-root.sh path SUITE    prints the cached root's path (exit 1 if not built)
#
# A root holds pacemaker, corosync, pacemaker-cli-utils and resource-agents installed, and the
# suite's reference pacemaker-remoted unpacked (the packages conflict) under /opt/pacemaker-remote.
# Cache: /var/tmp/kubemaker-cache/pacemaker-roots/<suite>-<hash of the package list and this
# script>; a root is built in a temporary directory and renamed into place only once verified, so
# a crashed build leaves no half root (its leftovers are removed by the next build).
set -euo pipefail

CACHE_DIR=${KUBEMAKER_PACEMAKER_ROOTS:-/var/tmp/kubemaker-cache/pacemaker-roots}
MIRROR=${KUBEMAKER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUILD_TIMEOUT=${KUBEMAKER_ROOT_BUILD_TIMEOUT:-1200}
# passwd: chpasswd, for the remote CIB login of hacluster (tests/support/cib_port.rs)
PACKAGES=(pacemaker corosync pacemaker-cli-utils resource-agents passwd)
REFERENCE_DIR=/opt/pacemaker-remote
OK_MARK=.kubemaker-root-ok

say() { printf '[pacemaker-root] %s\n' "$*" >&2; }
die() { printf '[pacemaker-root] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

suite_ok() {
    case "$1" in
        trixie | sid) ;;
        *) die "unknown suite '$1' (trixie or sid)" ;;
    esac
}

root_path() {
    local hash
    hash=$( { printf '%s\n' "$1" "$MIRROR" "${PACKAGES[@]}"; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12)
    printf '%s/%s-%s\n' "$CACHE_DIR" "$1" "$hash"
}

# Unmounts whatever a crashed build left mounted below $1, then removes it (never crossing into
# another file system).
remove_tree() {
    local dir=$1 m
    [ -e "$dir" ] || return 0
    for m in $(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$dir"
}

cmd_path() {
    suite_ok "$1"
    local root
    root=$(root_path "$1")
    [ -f "$root/$OK_MARK" ] || die "no $1 root at $root (run: $0 build $1)"
    printf '%s\n' "$root"
}

cmd_build() {
    suite_ok "$1"
    local suite=$1 root tmp t0=$SECONDS
    root=$(root_path "$suite")
    mkdir -p "$CACHE_DIR"
    exec 8>>"$CACHE_DIR/$suite.lock"
    flock -w "$BUILD_TIMEOUT" 8 || die "another build of $suite held $CACHE_DIR/$suite.lock for $BUILD_TIMEOUT s"
    if [ -f "$root/$OK_MARK" ]; then
        say "$suite: cached at $root ($(cat "$root/$OK_MARK"))"
        printf '%s\n' "$root"
        return 0
    fi
    local old
    for old in "$CACHE_DIR/$suite"-*; do
        [ -e "$old" ] && [ "$old" != "$root" ] || continue
        say "$suite: removing $old (other inputs, or a crashed build)"
        remove_tree "$old"
    done
    tmp="$root.tmp.$$"
    say "$suite: building with mmdebstrap from $MIRROR (at most $BUILD_TIMEOUT s): ${PACKAGES[*]}"
    # The customize hook unpacks the suite's pacemaker-remote beside the installed pacemaker.
    local hook
    hook="chroot \"\$1\" sh -ec 'cd /tmp && apt-get -q -o APT::Sandbox::User=root download pacemaker-remote \
        && mkdir -p $REFERENCE_DIR && dpkg-deb -x pacemaker-remote_*.deb $REFERENCE_DIR && rm -f pacemaker-remote_*.deb'"
    if ! timeout "$BUILD_TIMEOUT" mmdebstrap --mode=root --variant=apt --format=directory \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --include="$(IFS=,; echo "${PACKAGES[*]}")" \
        --customize-hook="$hook" \
        "$suite" "$tmp" "$MIRROR" >"$CACHE_DIR/$suite.build.log" 2>&1; then
        tail -n 30 "$CACHE_DIR/$suite.build.log" >&2
        remove_tree "$tmp"
        die "mmdebstrap $suite failed (log above: $CACHE_DIR/$suite.build.log)"
    fi
    [ -x "$tmp$REFERENCE_DIR/usr/sbin/pacemaker-remoted" ] || { remove_tree "$tmp"; die "$suite: no reference pacemaker-remoted in the root"; }
    local version
    version=$(chroot "$tmp" pacemakerd --version 2>&1 | head -n 1) || { remove_tree "$tmp"; die "$suite: pacemakerd --version failed in the root"; }
    printf '%s\n' "$version" >"$tmp/$OK_MARK"
    mv -T "$tmp" "$root"
    say "$suite: built $root in $((SECONDS - t0)) s: $version"
    printf '%s\n' "$root"
}

case "${1:-}" in
    build) [ $# -eq 2 ] || die "usage: $0 build trixie|sid"; cmd_build "$2" ;;
    path) [ $# -eq 2 ] || die "usage: $0 path trixie|sid"; cmd_path "$2" ;;
    *) echo "usage: $0 build|path trixie|sid" >&2; exit 2 ;;
esac
