# shellcheck shell=bash
# Runs a program of a Pacemaker generation's root (scripts/pacemaker-root.sh) on a test host: in
# the caller's network namespace (`ip netns exec NS bash pcmk-root-exec.sh ...`), in a private
# mount namespace of its own, chrooted into the root with the host's /dev (and so its /dev/shm:
# libqb IPC keeps files there beside the abstract sockets of the network namespace), /proc, /sys
# and /run, and each BIND directory at the same path inside (key files, logs). Nothing of this
# leaves the private namespace; the cached root is not written to. The program replaces this
# shell (same pid).
#
#   bash pcmk-root-exec.sh ROOT [BIND_DIR...] -- PROGRAM [ARGS...]
set -euo pipefail
root=$1
shift
binds=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do binds+=("$1"); shift; done
[ "${1:-}" = -- ] || { echo "usage: $0 ROOT [BIND_DIR...] -- PROGRAM [ARGS...]" >&2; exit 2; }
shift
if [ -z "${KM_ROOT_EXEC_PRIVATE:-}" ]; then
    KM_ROOT_EXEC_PRIVATE=1 exec unshare --mount --propagation private bash "${BASH_SOURCE[0]}" "$root" "${binds[@]}" -- "$@"
fi
unset KM_ROOT_EXEC_PRIVATE
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /run "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o mode=1777 tmpfs "$root/var/tmp"
for d in "${binds[@]}"; do
    case "$d" in
        /var/tmp/?* | /tmp/?*) ;;
        *) echo "pcmk-root-exec: $d: only directories under /var/tmp or /tmp (tmpfs in the root) can be bound" >&2; exit 2 ;;
    esac
    mkdir -p "$root$d"
    mount --bind "$d" "$root$d"
done
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
exec chroot "$root" "$@"
