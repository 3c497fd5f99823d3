#!/usr/bin/env bash
# Builds the kubemaker container image WITHOUT Docker, as OCI image archives that containerd
# imports (`ctr -n k8s.io images import FILE`), for the local Kubernetes nodes; plus the pause
# (sandbox) image those nodes need, since no registry is reachable.
#
# Usage: scripts/build-image.sh [--suite SUITE] [--tag TAG] [--out DIR] [--print-tag]
#   --suite SUITE  the Debian release under the binary, which decides the Pacemaker tools in the pod:
#                bookworm (default, Pacemaker 2.1.5's) or sid (3.0.3's, tag suffix -pacemaker3).
#                A tool reads only CIBs it knows: 2.1 tools refuse a 3.x cluster's pacemaker-4.0
#                schema, and 3.0.0's (Debian 13) refuse the newer feature set of a 3.0.3 CIB ("Can't
#                process CIB with feature set '3.20.5' greater than our own '3.20.0'"); newer tools
#                read older CIBs. So 3.x clusters get the newest 3.0 tools.
#   --tag TAG    image tag (default 0.1.0-<12 hex of sha256 over binaries, image/packages.txt, suite,
#                this script>, plus the suite's suffix)
#   --out DIR    output folder (default /var/tmp/kubemaker-cache/images)
#   --print-tag  build the binary if needed, print only the tag it would build, and exit
#
# Output (stdout, the only lines there, for callers to grep):
#   image: docker.io/library/kubemaker:TAG DIR/kubemaker-TAG.oci.tar
#   pause: registry.k8s.io/pause:3.10 DIR/pause-3.10.oci.tar
# Progress, sizes and step times go to stderr, prefixed [build-image].
#
# Steps, each cached so a rerun only redoes what changed:
#   1. pause: image/pause.c, `gcc -static -Os`, a one-layer image (cache key: pause.c + this script)
#   2. rootfs: `mmdebstrap --variant=apt` with image/packages.txt (the same list the Dockerfile
#      installs) into /var/tmp/kubemaker-cache/images/rootfs-<key>.tar (key: packages.txt, suite,
#      mmdebstrap options, apt sources), so a new binary does not redo the bootstrap
#   3. binaries: `cargo build --release --locked --bin kubemaker --bin kubemaker-remoted` (both link
#      GnuTLS and libqb dynamically; libgnutls30/libqb100 in packages.txt provide them)
#   4. image: rootfs + /usr/sbin/kubemaker, /usr/sbin/kubemaker-remoted and the pacemaker-remoted
#      symlink, one layer, the paths, command and port of the Dockerfile (cache key: the tag's inputs)
# Needs root (mmdebstrap's root mode; unpacking the rootfs keeps its file owners), mmdebstrap, gcc,
# libc6-dev (static libc) — scripts/install-test-deps.sh installs them.
set -euo pipefail

say() { printf '[build-image] %s\n' "$*" >&2; }
die() { printf '[build-image] ERROR: %s\n' "$*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT="$REPO/scripts/build-image.sh"
PACKAGES_FILE="$REPO/image/packages.txt"
PAUSE_SRC="$REPO/image/pause.c"
VERSION=0.1.0
SUITE=bookworm
IMAGE_REPO=docker.io/library/kubemaker
PAUSE_NAME=registry.k8s.io/pause:3.10
CACHE=/var/tmp/kubemaker-cache
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
MMDEBSTRAP_TIMEOUT=${MMDEBSTRAP_TIMEOUT:-900}
CARGO_TIMEOUT=${CARGO_TIMEOUT:-3600}
# Fixed file times in every tar, so the same inputs give the same bytes (and digests).
EPOCH=${SOURCE_DATE_EPOCH:-0}
ENV_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The rootfs cache stays here whatever --out says, so another output folder does not redo mmdebstrap.
ROOTFS_CACHE=$CACHE/images
TAG="" OUT=$CACHE/images PRINT_TAG=0
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) SUITE=${2:?--suite needs a value}; shift 2 ;;
        --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --print-tag) PRINT_TAG=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

# Debian mirrors for the bootstrap. bookworm: the machine's own Debian sources (deb822), so the image
# gets the same archive (and security updates) as the host; deb.debian.org if the host has none.
# sid: deb.debian.org (KUBEMAKER_DEBIAN_MIRROR for another).
case "$SUITE" in
    bookworm)
        SUITE_SUFFIX=""
        APT_SOURCES=(${KUBEMAKER_IMAGE_SOURCES:-/etc/apt/sources.list.d/debian.sources})
        [ -f "${APT_SOURCES[0]}" ] || APT_SOURCES=("http://deb.debian.org/debian")
        ;;
    sid)
        SUITE_SUFFIX="-pacemaker3"
        APT_SOURCES=("${KUBEMAKER_DEBIAN_MIRROR:-http://deb.debian.org/debian}")
        ;;
    *) die "unknown suite '$SUITE' (bookworm: Pacemaker 2.1 tools; sid: Pacemaker 3.0 tools)" ;;
esac

# --- helpers --------------------------------------------------------------------------------------
sha256() { sha256sum "$1" | cut -d' ' -f1; }
now() { printf '%s\n' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The package names: comment lines and blanks dropped (the Dockerfile does the same with sed).
packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' "$PACKAGES_FILE" | grep -v '^$'; }

# A deterministic tar of DIR's contents: sorted names, fixed times, numeric owners as on disk.
det_tar() { # det_tar DIR OUT [owner options...]
    local dir=$1 out=$2; shift 2
    tar --sort=name --mtime="@$EPOCH" --numeric-owner --format=gnu "$@" \
        -C "$dir" -cf "$out" .
}

# Cache check: FILE exists and its FILE.key sidecar holds KEY (so --tag cannot reuse stale bytes).
cached() { [ -f "$1" ] && [ -f "$1.key" ] && [ "$(head -n1 "$1.key")" = "$2" ]; }

# pack_oci OUT NAME LAYER_TAR CONFIG_FRAGMENT: writes a one-layer OCI image archive (oci-layout,
# index.json naming the image for containerd, blobs/sha256/{layer,config,manifest}).
# CONFIG_FRAGMENT is the inside of the config's "config" object (Entrypoint, Cmd, ...).
pack_oci() {
    local out=$1 name=$2 layer_tar=$3 config_body=$4
    local dir diff_id layer_gz layer_digest config manifest
    dir=$(mktemp -d "$WORK/oci.XXXXXX")
    mkdir -p "$dir/blobs/sha256"
    # diff_ids name the UNcompressed layer; the manifest names the compressed blob.
    diff_id=$(sha256 "$layer_tar")
    layer_gz="$dir/layer.tar.gz"
    gzip -n -6 -c "$layer_tar" >"$layer_gz"
    layer_digest=$(sha256 "$layer_gz")
    mv "$layer_gz" "$dir/blobs/sha256/$layer_digest"

    config=$(printf '{"architecture":"%s","os":"linux","config":{%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"scripts/build-image.sh"}]}' \
        "$ARCH" "$config_body" "$diff_id")
    blob "$dir" "$config" >"$dir/config.ref"
    manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$(cut -d' ' -f1 "$dir/config.ref")" "$(cut -d' ' -f2 "$dir/config.ref")" \
        "$layer_digest" "$(stat -c %s "$dir/blobs/sha256/$layer_digest")")
    blob "$dir" "$manifest" >"$dir/manifest.ref"
    rm "$dir/config.ref"

    printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
    # io.containerd.image.name is the name `ctr images import` gives the image.
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
        "$(cut -d' ' -f1 "$dir/manifest.ref")" "$(cut -d' ' -f2 "$dir/manifest.ref")" \
        "$ARCH" "$name" "$name" >"$dir/index.json"
    rm "$dir/manifest.ref"

    tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner \
        -C "$dir" -cf "$out.tmp" oci-layout index.json blobs
    mv "$out.tmp" "$out"
    rm -rf "$dir"
}

# blob DIR JSON: stores JSON as a content-addressed blob; prints "<hex digest> <size>".
blob() {
    local tmp="$1/blob.tmp" digest
    printf '%s' "$2" >"$tmp"
    digest=$(sha256 "$tmp")
    printf '%s %s\n' "$digest" "$(stat -c %s "$tmp")"
    mv "$tmp" "$1/blobs/sha256/$digest"
}

report() { # report LABEL FILE SECONDS
    local mb=""
    [ -f "$2.key" ] && mb=$(sed -n 2p "$2.key")
    say "$1: $(stat -c %s "$2") bytes compressed archive${mb:+, $mb MB unpacked}, $3 s"
}

# --- checks ---------------------------------------------------------------------------------------
[ -f "$PACKAGES_FILE" ] || die "missing $PACKAGES_FILE"
ARCH=$(dpkg --print-architecture)
mkdir -p "$OUT" "$ROOTFS_CACHE"
WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- 3. binary (defined here: --print-tag needs only this step; cargo makes a rerun cheap) ---------
build_binary() {
    local t0; t0=$(now)
    say "binaries: cargo build --release --locked --bin kubemaker --bin kubemaker-remoted (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    # Without the variables cargo sets for a test or bench that runs this script (CARGO_PKG_*,
    # CARGO_MANIFEST_DIR, ...): ring's build script watches them, and changed values rebuild ring,
    # rustls and kube (~3.5 min) whenever the script runs from cargo after a run from the shell,
    # and back. Cargo's own settings (CARGO_HOME, CARGO_TARGET_DIR, CARGO_BUILD_* ...) stay.
    (
        cd "$REPO"
        for v in $(compgen -e); do
            case $v in
                CARGO_HOME | CARGO_TARGET_DIR | CARGO_BUILD_* | CARGO_PROFILE_* | CARGO_NET_* | \
                    CARGO_REGISTRIES_* | CARGO_HTTP_* | CARGO_TERM_* | CARGO_INCREMENTAL) ;;
                CARGO | CARGO_*) unset "$v" ;;
            esac
        done
        timeout "$CARGO_TIMEOUT" cargo build --release --locked --bin kubemaker --bin kubemaker-remoted
    ) >&2 || die "cargo build failed"
    BIN="$CARGO_TARGET_DIR/release/kubemaker"
    DAEMON_BIN="$CARGO_TARGET_DIR/release/kubemaker-remoted"
    [ -x "$BIN" ] || die "no binary at $BIN"
    [ -x "$DAEMON_BIN" ] || die "no binary at $DAEMON_BIN"
    T_BINARY=$(elapsed "$t0")
    say "binaries: $BIN ($(stat -c %s "$BIN") bytes), $DAEMON_BIN ($(stat -c %s "$DAEMON_BIN") bytes), $T_BINARY s"
}

# The tag's inputs: what ends up in the image. The key goes into the sidecar so --tag is safe.
image_tag() {
    IMAGE_KEY=$( { sha256 "$BIN"; sha256 "$DAEMON_BIN"; cat "$PACKAGES_FILE" "$SCRIPT"; echo "$SUITE"; } | sha256sum | cut -d' ' -f1)
    TAG=${TAG:-$VERSION-${IMAGE_KEY:0:12}$SUITE_SUFFIX}
    IMAGE_NAME="$IMAGE_REPO:$TAG"
    IMAGE_OUT="$OUT/kubemaker-$TAG.oci.tar"
}
if [ "$PRINT_TAG" = 1 ]; then
    build_binary
    image_tag
    printf '%s\n' "$TAG"
    exit 0
fi
PAUSE_OUT="$OUT/pause-3.10.oci.tar"

# --- 1. pause image -------------------------------------------------------------------------------
t0=$(now)
PAUSE_KEY=$( { cat "$PAUSE_SRC" "$SCRIPT"; echo "$ARCH"; } | sha256sum | cut -d' ' -f1)
if cached "$PAUSE_OUT" "$PAUSE_KEY"; then
    say "pause: cached $PAUSE_OUT"
else
    say "pause: gcc -static -Os image/pause.c"
    mkdir -p "$WORK/pause-root"
    gcc -static -Os -Wall -o "$WORK/pause-root/pause" "$PAUSE_SRC"
    strip "$WORK/pause-root/pause"
    det_tar "$WORK/pause-root" "$WORK/pause-layer.tar" --owner=0 --group=0
    pack_oci "$PAUSE_OUT" "$PAUSE_NAME" "$WORK/pause-layer.tar" \
        '"Entrypoint":["/pause"],"User":"65535:65535"'
    printf '%s\n' "$PAUSE_KEY" >"$PAUSE_OUT.key"
fi
T_PAUSE=$(elapsed "$t0")
report "pause" "$PAUSE_OUT" "$T_PAUSE"

# --- 2. rootfs (mmdebstrap) -----------------------------------------------------------------------
# Docs, man pages and locales are dropped at unpack time (copyright files kept); mmdebstrap's own
# cleanup already removes /var/lib/apt/lists and /var/cache/apt. The host's apt config turns off
# Release-file date checks (its mirrors may be snapshots); the bootstrap does the same.
MMDEBSTRAP_OPTS=(
    --variant=apt --format=tar
    --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"'
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/*.bin'
    --customize-hook='rm -rf "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/cache/ldconfig/aux-cache'
    # pacemaker-common's postinst generates a random /etc/pacemaker/authkey; an image must not ship
    # a secret (every pod would share it). The DaemonSet mounts the cluster's key there.
    --customize-hook='rm -f "$1"/etc/pacemaker/authkey'
)
ROOTFS_KEY=$( { cat "$PACKAGES_FILE"; echo "$SUITE"; printf '%s\n' "${MMDEBSTRAP_OPTS[@]}";
                for src in "${APT_SOURCES[@]}"; do cat "$src" 2>/dev/null || echo "$src"; done; } |
              sha256sum | cut -d' ' -f1)
ROOTFS_TAR="$ROOTFS_CACHE/rootfs-$SUITE-${ROOTFS_KEY:0:16}.tar"
t0=$(now)
if [ -f "$ROOTFS_TAR" ]; then
    say "rootfs: cached $ROOTFS_TAR"
else
    command -v mmdebstrap >/dev/null || die "mmdebstrap missing (apt-get install -y mmdebstrap)"
    include=$(packages | paste -sd, -)
    say "rootfs: mmdebstrap $SUITE --include=$include (sources: ${APT_SOURCES[*]}, limit ${MMDEBSTRAP_TIMEOUT}s)"
    # stdin from /dev/null: without a tty mmdebstrap would otherwise read mirrors from stdin.
    timeout "$MMDEBSTRAP_TIMEOUT" mmdebstrap --quiet "${MMDEBSTRAP_OPTS[@]}" --include="$include" \
        "$SUITE" "$ROOTFS_TAR.tmp" "${APT_SOURCES[@]}" </dev/null >&2 || die "mmdebstrap failed"
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    # Only the current package set's rootfs of each suite is worth keeping (each is ~250 MB); the
    # unsuffixed names are an older layout of this cache.
    find "$ROOTFS_CACHE" -maxdepth 1 -regextype posix-extended \
        -regex ".*/rootfs-($SUITE-)?[0-9a-f]{16}\.tar" ! -path "$ROOTFS_TAR" -delete
fi
T_ROOTFS=$(elapsed "$t0")
say "rootfs: $(stat -c %s "$ROOTFS_TAR") bytes, $T_ROOTFS s"

# --- 3. binary ------------------------------------------------------------------------------------
build_binary
image_tag

# --- 4. kubemaker image ---------------------------------------------------------------------------
t0=$(now)
if cached "$IMAGE_OUT" "$IMAGE_KEY"; then
    say "image: cached $IMAGE_OUT"
else
    say "image: $IMAGE_NAME"
    root="$WORK/root"
    mkdir -p "$root"
    tar --numeric-owner -C "$root" -xpf "$ROOTFS_TAR"
    install -m 0755 -o 0 -g 0 "$BIN" "$root/usr/sbin/kubemaker"
    install -m 0755 -o 0 -g 0 "$DAEMON_BIN" "$root/usr/sbin/kubemaker-remoted"
    ln -sfn kubemaker-remoted "$root/usr/sbin/pacemaker-remoted"
    # Smoke checks in the rootfs itself: every library resolves and the CLI tools run.
    for b in kubemaker kubemaker-remoted; do
        if ldd_out=$(chroot "$root" /usr/bin/ldd "/usr/sbin/$b" 2>&1) && ! grep -q 'not found' <<<"$ldd_out"; then
            say "image: ldd /usr/sbin/$b resolves ($(grep -c '=>' <<<"$ldd_out") libraries)"
        else
            die "ldd /usr/sbin/$b in the rootfs: $ldd_out"
        fi
    done
    say "image: $(chroot "$root" /usr/sbin/crm_mon --version | head -n1)"
    [ ! -e "$root/etc/pacemaker/authkey" ] || die "the rootfs carries /etc/pacemaker/authkey"
    rootfs_mb=$(du -sm "$root" | cut -f1)
    det_tar "$root" "$WORK/layer.tar"
    rm -rf "$root"
    pack_oci "$IMAGE_OUT" "$IMAGE_NAME" "$WORK/layer.tar" \
        "$(printf '"Cmd":["/usr/sbin/kubemaker-remoted"],"ExposedPorts":{"3121/tcp":{}},"Env":["PATH=%s"],"WorkingDir":"/"' "$ENV_PATH")"
    printf '%s\n%s\n' "$IMAGE_KEY" "$rootfs_mb" >"$IMAGE_OUT.key"
    # Each build is ~90 MB: keep the newest three kubemaker archives of the suite in OUT.
    # (TAG ends in the suite's suffix unless --tag named another.)
    ls -1t "$OUT"/kubemaker-*.oci.tar | { grep -E -- "-[0-9a-f]{12}$SUITE_SUFFIX\.oci\.tar$" || true; } |
        tail -n +4 | while read -r old; do
        say "image: removing old $old"
        rm -f "$old" "$old.key"
    done
fi
T_IMAGE=$(elapsed "$t0")

# --- summary --------------------------------------------------------------------------------------
say "times: pause $T_PAUSE s, rootfs $T_ROOTFS s, binary $T_BINARY s, image $T_IMAGE s"
report "kubemaker" "$IMAGE_OUT" "$T_IMAGE"
printf 'image: %s %s\n' "$IMAGE_NAME" "$IMAGE_OUT"
printf 'pause: %s %s\n' "$PAUSE_NAME" "$PAUSE_OUT"
