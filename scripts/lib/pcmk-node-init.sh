# shellcheck shell=bash
# The first process of a Pacemaker cluster node of another generation (scripts/lib/pcmk-node.sh):
# runs as PID 1 of the node's PID namespace, in its own mount and UTS namespaces, already in its
# network namespace. It mounts the node's file system (an overlay of the generation's root, with
# the node's own /dev/shm, /run, /var/lib/corosync on tmpfs and its persistent /var/lib/pacemaker,
# /etc/pacemaker, /etc/corosync and /var/log/pacemaker from the state directory), sets the host
# name, then waits inside the root. corosync and pacemakerd join it with nsenter. When it dies
# (its parent `unshare --kill-child` is stopped), the kernel kills every process of the node.
#
#   bash pcmk-node-init.sh ROOT NODE_DIR HOSTNAME
set -euo pipefail
root=$1 dir=$2 name=$3
hostname "$name"
m=$dir/merged
mkdir -p "$dir/upper" "$dir/work" "$m"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$dir/upper,workdir=$dir/work" "$m"
mkdir -p "$m/var/lib/corosync" "$m/var/lib/pacemaker" "$m/etc/pacemaker" "$m/etc/corosync" "$m/var/log/pacemaker"
mount -t proc proc "$m/proc"
mount -t sysfs sysfs "$m/sys"
mount --rbind /dev "$m/dev"
mount -t tmpfs -o mode=1777,size=256m tmpfs "$m/dev/shm"
mount -t tmpfs -o mode=755 tmpfs "$m/run"
mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"
mount -t tmpfs -o mode=755 tmpfs "$m/var/lib/corosync"
for d in var/lib/pacemaker etc/pacemaker etc/corosync var/log/pacemaker; do
    mount --bind "$dir/${d//\//-}" "$m/$d"
done
# PID 1 of the namespace: wait for ever (reaping what it must) until killed.
exec chroot "$m" /bin/sh -c 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'
