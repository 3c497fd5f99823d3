# shellcheck shell=bash
# A one-node Pacemaker cluster of another generation (3.0.0 from Debian trixie, 3.0.3 from sid) for
# scripts/test-cluster.sh: node "node1" runs corosync and pacemakerd from the generation's root
# (scripts/pacemaker-root.sh) in its own mount, UTS, network and PID namespaces
# (scripts/lib/pcmk-node-init.sh). Its network namespace km-pc<NN> is joined to the host by the
# veth pair km-pc<NN> (host, 10.249.<NN>.1/24) / eth0 (node, 10.249.<NN>.2/24); the node routes the
# test hosts' 10.250.0.0/15 and the local Kubernetes workers' 10.232.0.0/24 through the host, which
# forwards IPv4 (the test hosts route 10.249.0.0/16 back, tests/support/netns.rs; the workers' default
# route is the host).
#
# Sourced by test-cluster.sh after it set GEN, SUITE, SUBNET, STATE_DIR and defined say/die,
# one_node_corosync_conf and lib/procs.sh. State in $STATE_DIR: holder.pid (the `unshare` whose child is the node's PID 1),
# init.pid (that PID 1), corosync.pid and pacemakerd.pid (the daemons themselves), all
# "<pid> <starttime>"; node/ holds the node's persistent directories and its overlay's upper layer.

NODE_NAME=node1
NODE_NETNS=km-pc$SUBNET
NODE_VETH=km-pc$SUBNET
NODE_HOST_ADDR=10.249.$SUBNET.1
NODE_ADDR=10.249.$SUBNET.2
NODE_DIR=$STATE_DIR/node
NODE_PATH=/usr/sbin:/usr/bin:/sbin:/bin
INIT_SCRIPT=$(dirname "${BASH_SOURCE[0]}")/pcmk-node-init.sh
ROOT_SCRIPT=$(dirname "${BASH_SOURCE[0]}")/../pacemaker-root.sh

init_pid() { pid_if_ours "$STATE_DIR/init.pid"; }

# in_node CMD...: runs CMD inside the node (all its namespaces, its root) with a clean environment.
in_node() {
    local init
    init=$(init_pid) || { echo "the $GEN cluster node is not running" >&2; return 1; }
    nsenter -t "$init" -m -u -n -p -r -w env -i PATH="$NODE_PATH" HOME=/root LANG=C.UTF-8 "$@"
}

# PCMK_* settings for pacemakerd (what /etc/default/pacemaker gives it on a real node), from
# KUBEMAKER_CLUSTER_ENV ("PCMK_a=x PCMK_b=y"; e.g. the X.509 files of Pacemaker Remote). A running
# node started with other settings is restarted; $STATE_DIR/pacemakerd.env records them.
CLUSTER_ENV=()
NODE_ENV=()
for kv in ${KUBEMAKER_CLUSTER_ENV:-}; do
    [[ $kv =~ ^PCMK_[A-Za-z_]+=[^[:space:]]*$ ]] || die "KUBEMAKER_CLUSTER_ENV: '$kv' is not PCMK_<name>=<value>"
    CLUSTER_ENV+=("$kv")
done

# spawn_in_node PIDFILE LOG NAME ARGS...: starts NAME in the node (with NODE_ENV's settings);
# PIDFILE records the daemon itself (the child nsenter forks into the node's PID namespace), not
# nsenter.
spawn_in_node() {
    local pidfile=$1 log=$2 name=$3 init nsenter_pid child="" i
    shift 3
    init=$(init_pid) || die "the $GEN cluster node is not running"
    SPAWN_COMM=nsenter spawn_daemon "$pidfile.nsenter" "$log" \
        nsenter -t "$init" -m -u -n -p -r -w env -i PATH="$NODE_PATH" HOME=/root LANG=C.UTF-8 \
        "${NODE_ENV[@]}" "$name" "$@"
    read -r nsenter_pid _ <"$pidfile.nsenter"
    rm -f "$pidfile.nsenter"
    for i in $(seq 1 50); do
        child=$(pgrep -P "$nsenter_pid" | head -n 1 || true)
        [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null)" = "$name" ] && break
        child=""
        sleep 0.1
    done
    [ -n "$child" ] || { tail -n 20 "$log" >&2; die "$name did not start in the node (log above)"; }
    printf '%s %s\n' "$child" "$(proc_starttime "$child")" >"$pidfile"
}

node_root() {
    bash "$ROOT_SCRIPT" build "$SUITE" | tail -n 1
}

# Removes what a crashed run left: the holder (killing it kills the node's PID namespace), the
# network namespace and the veth, stale pid files.
node_cleanup() {
    local holder
    holder=$(pid_if_ours "$STATE_DIR/holder.pid" unshare || true)
    if [ -n "$holder" ]; then
        say "stopping the node's namespaces (holder $holder)"
        stop_pid "node holder" "$holder" 10
    fi
    ip netns delete "$NODE_NETNS" 2>/dev/null || true
    ip link delete "$NODE_VETH" 2>/dev/null || true
    rm -f "$STATE_DIR"/{holder,init,corosync,pacemakerd}.pid "$STATE_DIR"/*.pid.tmp "$STATE_DIR"/*.pid.nsenter
}

node_network() {
    ip netns add "$NODE_NETNS"
    ip link add "$NODE_VETH" type veth peer name eth0 netns "$NODE_NETNS"
    ip addr add "$NODE_HOST_ADDR/24" dev "$NODE_VETH"
    ip link set "$NODE_VETH" up
    ip -n "$NODE_NETNS" addr add "$NODE_ADDR/24" dev eth0
    ip -n "$NODE_NETNS" link set eth0 up
    ip -n "$NODE_NETNS" link set lo up
    # The test hosts (tests/support/netns.rs) live in /24s of 10.250.0.0/15 behind the host.
    ip -n "$NODE_NETNS" route add 10.250.0.0/15 via "$NODE_HOST_ADDR"
    # The local Kubernetes workers (scripts/local-k8s.sh) at 10.232.0.<n>: their remoted pods and, SNAT
    # to the worker's address, the controller pod reaching the remote CIB port.
    ip -n "$NODE_NETNS" route add 10.232.0.0/24 via "$NODE_HOST_ADDR"
    sysctl -qw net.ipv4.ip_forward=1
}

# The node's persistent directories, owned like the root's own (uid/gid of its hacluster).
node_dirs() {
    local root=$1 d
    # A root of other inputs means another installation: start the node afresh.
    if [ "$(cat "$NODE_DIR/root" 2>/dev/null)" != "$root" ]; then
        [ -d "$NODE_DIR" ] && say "new root $root: resetting $NODE_DIR"
        rm -rf --one-file-system "$NODE_DIR"
        mkdir -p "$NODE_DIR"
        for d in var/lib/pacemaker etc/pacemaker var/log/pacemaker; do
            mkdir -p "$NODE_DIR/${d//\//-}"
            cp -a "$root/$d/." "$NODE_DIR/${d//\//-}/"
        done
        # The root's random authkey is not the tests' (tests/support/keys.rs installs theirs).
        rm -f "$NODE_DIR/etc-pacemaker/authkey"
        mkdir -p "$NODE_DIR/etc-corosync"
        printf '%s\n' "$root" >"$NODE_DIR/root"
    fi
    one_node_corosync_conf "the one-node Pacemaker $GEN test cluster" "kubemaker-test-${GEN//./}" \
        "$NODE_NAME" "$NODE_ADDR" >"$NODE_DIR/etc-corosync/corosync.conf"
}

node_start() {
    local root version t0=$SECONDS
    root=$(node_root) || die "no $SUITE root (scripts/pacemaker-root.sh build $SUITE failed)"
    version=$(cat "$root/.kubemaker-root-ok")
    [ "$version" = "Pacemaker $GEN" ] || die "the $SUITE root has '$version', not Pacemaker $GEN"

    local cs_pid pm_pid
    cs_pid=$(our_pid corosync || true)
    pm_pid=$(our_pid pacemakerd || true)
    local want_env
    want_env=${CLUSTER_ENV[*]}
    if [ -n "$cs_pid" ] && [ -n "$pm_pid" ] && init_pid >/dev/null && dc_present; then
        if [ "$(cat "$STATE_DIR/pacemakerd.env" 2>/dev/null)" = "$want_env" ]; then
            set_cluster_options
            say "reusing the running $GEN test cluster (node $NODE_ADDR, corosync $cs_pid, pacemakerd $pm_pid)"
            return 0
        fi
        say "the running $GEN cluster has other PCMK_* settings: restarting it"
        node_stop
    fi
    node_cleanup
    say "starting the $GEN cluster node $NODE_NAME ($NODE_ADDR) from $root"
    node_network
    node_dirs "$root"
    SPAWN_COMM=unshare spawn_daemon "$STATE_DIR/holder.pid" "$STATE_DIR/node.log" \
        nsenter --net="/run/netns/$NODE_NETNS" \
        unshare --mount --uts --pid --kill-child --propagation private \
        bash "$INIT_SCRIPT" "$root" "$NODE_DIR" "$NODE_NAME"
    local holder init="" i
    holder=$(pid_if_ours "$STATE_DIR/holder.pid" unshare) || die "the node holder exited (see $STATE_DIR/node.log)"
    # PID 1 of the node is ready once it runs sh inside the root (after every mount).
    for i in $(seq 1 100); do
        init=$(pgrep -P "$holder" | head -n 1 || true)
        if [ -n "$init" ] && [ "$(cat "/proc/$init/comm" 2>/dev/null)" = sh ] &&
            [ -x "/proc/$init/root/usr/sbin/pacemakerd" ]; then
            break
        fi
        init=""
        sleep 0.1
    done
    [ -n "$init" ] || { tail -n 20 "$STATE_DIR/node.log" >&2; die "the node's namespaces did not come up (log above)"; }
    printf '%s %s\n' "$init" "$(proc_starttime "$init")" >"$STATE_DIR/init.pid"

    say "starting corosync in the node (log $STATE_DIR/corosync.log)"
    spawn_in_node "$STATE_DIR/corosync.pid" "$STATE_DIR/corosync.log" corosync -f
    for i in $(seq 1 100); do
        in_node timeout 5 corosync-cfgtool -s >/dev/null 2>&1 && break
        our_pid corosync >/dev/null || { tail -n 30 "$STATE_DIR/corosync.log" >&2; die "corosync exited (log above)"; }
        sleep 0.2
    done
    say "starting pacemakerd in the node (log $STATE_DIR/pacemakerd.log; daemons log to $NODE_DIR/var-log-pacemaker/pacemaker.log)"
    [ -z "$want_env" ] || say "pacemakerd settings: $want_env"
    printf '%s\n' "$want_env" >"$STATE_DIR/pacemakerd.env"
    NODE_ENV=("${CLUSTER_ENV[@]}")
    spawn_in_node "$STATE_DIR/pacemakerd.pid" "$STATE_DIR/pacemakerd.log" pacemakerd -f
    NODE_ENV=()
    rm -f "$STATE_DIR/remote-key-read"
    say "waiting (at most ${START_TIMEOUT} s) for a DC"
    wait_for_dc
    set_cluster_options
    say "$GEN cluster up after $((SECONDS - t0)) s (node $NODE_ADDR, corosync $(our_pid corosync), pacemakerd $(our_pid pacemakerd))"
}

node_stop() {
    local pm_pid cs_pid
    pm_pid=$(our_pid pacemakerd || true)
    if [ -n "$pm_pid" ]; then
        say "stopping pacemakerd ($pm_pid) in the $GEN node"
        stop_pid pacemakerd "$pm_pid" "$STOP_TIMEOUT"
    fi
    cs_pid=$(our_pid corosync || true)
    if [ -n "$cs_pid" ]; then
        say "stopping corosync ($cs_pid) in the $GEN node"
        stop_pid corosync "$cs_pid" 30
    fi
    node_cleanup
    rm -f "$STATE_DIR/remote-key-read"
    say "stopped the $GEN cluster"
}
