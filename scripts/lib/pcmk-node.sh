# shellcheck shell=bash
# Pacemaker cluster nodes of another generation (3.0.0 from Debian trixie, 3.0.3 from sid) for
# scripts/test-cluster.sh: each node runs corosync and pacemakerd from the generation's root
# (scripts/pacemaker-root.sh) in its own mount, UTS, network and PID namespaces
# (scripts/lib/pcmk-node-init.sh). A node's network namespace km-pc<NN> is joined to the host by the
# veth pair km-pc<NN> (host, 10.249.<NN>.1/24) / eth0 (node, 10.249.<NN>.2/24); the node routes the
# test hosts' 10.250.0.0/15, the local Kubernetes workers' 10.232.0.0/24 and the other test cluster
# nodes' 10.249.0.0/16 through the host, which forwards IPv4 (the test hosts route 10.249.0.0/16
# back, tests/support/netns.rs; the workers' default route is the host).
#
# Two layouts (CLUSTER_NODES, set by test-cluster.sh):
#   1  the one-node cluster: "node1" at 10.249.<SUBNET>.2, state directly in $STATE_DIR;
#   2  the two-node cluster: "node1" at 10.249.<SUBNET+10>.2 and "node2" at 10.249.<SUBNET+11>.2,
#      corosync with both members (two_node: 1), each node's state in $STATE_DIR/node<N>/.
# The functions act on the node select_node chose (node_start/node_stop/node_lose/node_restore
# take care of all of them).
#
# Sourced by test-cluster.sh after it set GEN, SUITE, SUBNET, CLUSTER_NODES, STATE_DIR and defined
# say/die, corosync_conf and lib/procs.sh. State of a node in its NODE_STATE directory:
# holder.pid (the `unshare` whose child is the node's PID 1), init.pid (that PID 1), corosync.pid and
# pacemakerd.pid (the daemons themselves), all "<pid> <starttime>"; node/ holds the node's
# persistent directories and its overlay's upper layer; corosync.log, pacemakerd.log, node.log.

NODE_PATH=/usr/sbin:/usr/bin:/sbin:/bin
INIT_SCRIPT=$(dirname "${BASH_SOURCE[0]}")/pcmk-node-init.sh
ROOT_SCRIPT=$(dirname "${BASH_SOURCE[0]}")/../pacemaker-root.sh
# The nodes of this cluster, by number.
NODE_NUMBERS=$(seq 1 "$CLUSTER_NODES")

# select_node N: the node the functions below act on (its name, addresses and state directory).
select_node() {
    local n=$1 subnet
    if [ "$CLUSTER_NODES" = 1 ]; then
        subnet=$SUBNET
        NODE_STATE=$STATE_DIR
    else
        subnet=$((SUBNET + 9 + n))
        NODE_STATE=$STATE_DIR/node$n
    fi
    NODE_NUMBER=$n
    NODE_NAME=node$n
    NODE_NETNS=km-pc$subnet
    NODE_VETH=km-pc$subnet
    NODE_HOST_ADDR=10.249.$subnet.1
    NODE_ADDR=10.249.$subnet.2
    NODE_DIR=$NODE_STATE/node
    mkdir -p "$NODE_STATE"
}
select_node 1

# node_addr N: the address of node N.
node_addr() { (select_node "$1" && echo "$NODE_ADDR"); }

init_pid() { pid_if_ours "$NODE_STATE/init.pid"; }

# in_node CMD...: runs CMD inside the node (all its namespaces, its root) with a clean environment.
in_node() {
    local init
    init=$(init_pid) || { echo "the $GEN cluster node $NODE_NAME is not running" >&2; return 1; }
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
    init=$(init_pid) || die "the $GEN cluster node $NODE_NAME is not running"
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

# Removes what a crashed run left of the selected node: the holder (killing it kills the node's PID
# namespace), the network namespace and the veth, stale pid files.
node_cleanup() {
    local holder
    holder=$(pid_if_ours "$NODE_STATE/holder.pid" unshare || true)
    if [ -n "$holder" ]; then
        say "stopping $NODE_NAME's namespaces (holder $holder)"
        # unshare ignores TERM while it waits for its child: only the KILL after 1 s ends it.
        stop_pid "node holder" "$holder" 1
    fi
    ip netns delete "$NODE_NETNS" 2>/dev/null || true
    ip link delete "$NODE_VETH" 2>/dev/null || true
    rm -f "$NODE_STATE"/{holder,init,corosync,pacemakerd}.pid "$NODE_STATE"/*.pid.tmp "$NODE_STATE"/*.pid.nsenter
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
    # The other members of a two-node cluster, each in a /24 of its own behind the host.
    ip -n "$NODE_NETNS" route add 10.249.0.0/16 via "$NODE_HOST_ADDR"
    sysctl -qw net.ipv4.ip_forward=1
}

# The corosync.conf of this cluster: one node, or both nodes with two_node (quorum with one of
# the two left).
node_corosync_conf() {
    local cluster_name=kubemaker-test-${GEN//./} n addrs=()
    if [ "$CLUSTER_NODES" = 1 ]; then
        corosync_conf "the one-node Pacemaker $GEN test cluster" "$cluster_name" "$NODE_ADDR"
        return
    fi
    for n in $NODE_NUMBERS; do addrs+=("$(node_addr "$n")"); done
    corosync_conf "the two-node Pacemaker $GEN test cluster" "$cluster_name-2n" "${addrs[@]}"
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
    node_corosync_conf >"$NODE_DIR/etc-corosync/corosync.conf"
}

# Whether every node of the cluster runs (holder, corosync, pacemakerd).
nodes_running() {
    local n
    for n in $NODE_NUMBERS; do
        select_node "$n"
        our_pid corosync >/dev/null && our_pid pacemakerd >/dev/null && init_pid >/dev/null || {
            select_node 1
            return 1
        }
    done
    select_node 1
}

# Whether crm_mon (on the selected node) shows a DC and every node of the cluster online.
members_online() {
    local xml n
    xml=$(crm_mon_xml) || return 1
    grep -q '<current_dc present="true"' <<<"$xml" || return 1
    for n in $NODE_NUMBERS; do
        grep -Eq "<node name=\"node$n\"[^>]* online=\"true\"" <<<"$xml" || return 1
    done
}

# wait_members_online: waits (START_TIMEOUT) until the selected node sees a DC and every member
# online; dies if the selected node's daemons exit.
wait_members_online() {
    local deadline=$((SECONDS + START_TIMEOUT)) next_note=$((SECONDS + 10))
    while [ "$SECONDS" -lt "$deadline" ]; do
        members_online && return 0
        our_pid corosync >/dev/null || { tail -n 30 "$NODE_STATE/corosync.log" >&2; die "corosync of $NODE_NAME exited (log above)"; }
        our_pid pacemakerd >/dev/null || { tail -n 30 "$NODE_STATE/pacemakerd.log" >&2; die "pacemakerd of $NODE_NAME exited (log above)"; }
        if [ "$SECONDS" -ge "$next_note" ]; then
            say "still waiting for a DC and $CLUSTER_NODES node(s) online ($((deadline - SECONDS)) s left)"
            next_note=$((SECONDS + 10))
        fi
        sleep 1
    done
    die "no DC with $CLUSTER_NODES node(s) online after ${START_TIMEOUT} s; see $STATE_DIR/**/corosync.log, pacemakerd.log and node/var-log-pacemaker/pacemaker.log"
}

# node_boot ROOT: starts the selected node (network, namespaces, corosync, pacemakerd with
# CLUSTER_ENV's settings) after removing its leftovers; does not wait for the cluster.
node_boot() {
    local root=$1 holder init="" i
    node_cleanup
    say "starting the $GEN cluster node $NODE_NAME ($NODE_ADDR) from $root"
    node_network
    node_dirs "$root"
    SPAWN_COMM=unshare spawn_daemon "$NODE_STATE/holder.pid" "$NODE_STATE/node.log" \
        nsenter --net="/run/netns/$NODE_NETNS" \
        unshare --mount --uts --pid --kill-child --propagation private \
        bash "$INIT_SCRIPT" "$root" "$NODE_DIR" "$NODE_NAME"
    holder=$(pid_if_ours "$NODE_STATE/holder.pid" unshare) || die "the node holder exited (see $NODE_STATE/node.log)"
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
    [ -n "$init" ] || { tail -n 20 "$NODE_STATE/node.log" >&2; die "$NODE_NAME's namespaces did not come up (log above)"; }
    printf '%s %s\n' "$init" "$(proc_starttime "$init")" >"$NODE_STATE/init.pid"

    say "starting corosync in $NODE_NAME (log $NODE_STATE/corosync.log)"
    spawn_in_node "$NODE_STATE/corosync.pid" "$NODE_STATE/corosync.log" corosync -f
    for i in $(seq 1 100); do
        in_node timeout 5 corosync-cfgtool -s >/dev/null 2>&1 && break
        our_pid corosync >/dev/null || { tail -n 30 "$NODE_STATE/corosync.log" >&2; die "corosync exited (log above)"; }
        sleep 0.2
    done
    say "starting pacemakerd in $NODE_NAME (log $NODE_STATE/pacemakerd.log; daemons log to $NODE_DIR/var-log-pacemaker/pacemaker.log)"
    NODE_ENV=("${CLUSTER_ENV[@]}")
    spawn_in_node "$NODE_STATE/pacemakerd.pid" "$NODE_STATE/pacemakerd.log" pacemakerd -f
    NODE_ENV=()
}

node_start() {
    local root version t0=$SECONDS n
    root=$(node_root) || die "no $SUITE root (scripts/pacemaker-root.sh build $SUITE failed)"
    version=$(cat "$root/.kubemaker-root-ok")
    [ "$version" = "Pacemaker $GEN" ] || die "the $SUITE root has '$version', not Pacemaker $GEN"

    local want_env
    want_env=${CLUSTER_ENV[*]}
    if nodes_running && members_online; then
        if [ "$(cat "$STATE_DIR/pacemakerd.env" 2>/dev/null)" = "$want_env" ]; then
            set_cluster_options
            say "reusing the running $GEN test cluster ($(cluster_summary))"
            return 0
        fi
        say "the running $GEN cluster has other PCMK_* settings: restarting it"
        node_stop
    fi
    # Whatever runs of a half-started (or crashed) cluster goes first: its nodes start together.
    for n in $NODE_NUMBERS; do
        select_node "$n"
        node_cleanup
    done
    [ -z "$want_env" ] || say "pacemakerd settings: $want_env"
    printf '%s\n' "$want_env" >"$STATE_DIR/pacemakerd.env"
    for n in $NODE_NUMBERS; do
        select_node "$n"
        node_boot "$root"
    done
    select_node 1
    rm -f "$STATE_DIR/remote-key-read"
    say "waiting (at most ${START_TIMEOUT} s) for a DC"
    wait_members_online
    set_cluster_options
    say "$GEN cluster up after $((SECONDS - t0)) s ($(cluster_summary))"
}

# The nodes' addresses and daemons, for messages.
cluster_summary() {
    local n out=""
    for n in $NODE_NUMBERS; do
        select_node "$n"
        out+="${out:+; }$NODE_NAME $NODE_ADDR, corosync $(our_pid corosync || echo -), pacemakerd $(our_pid pacemakerd || echo -)"
    done
    select_node 1
    printf '%s\n' "$out"
}

# Stops the selected node's daemons (pacemakerd cleanly first) and removes its namespaces.
node_stop_daemons() {
    local pm_pid cs_pid
    pm_pid=$(our_pid pacemakerd || true)
    if [ -n "$pm_pid" ]; then
        say "stopping pacemakerd ($pm_pid) in the $GEN node $NODE_NAME"
        stop_pid pacemakerd "$pm_pid" "$STOP_TIMEOUT"
    fi
    cs_pid=$(our_pid corosync || true)
    if [ -n "$cs_pid" ]; then
        say "stopping corosync ($cs_pid) in the $GEN node $NODE_NAME"
        stop_pid corosync "$cs_pid" 30
    fi
    node_cleanup
}

node_stop() {
    local n
    # The last node first: in a two-node cluster the survivor (node1) then has nothing to recover.
    for n in $(printf '%s\n' $NODE_NUMBERS | sort -rn); do
        select_node "$n"
        node_stop_daemons
    done
    select_node 1
    rm -f "$STATE_DIR/remote-key-read"
    say "stopped the $GEN cluster"
}

# node_lose N: node N fails abruptly, like a power cut: its link goes down first (so not even a
# FIN or RST of its dying connections reaches anyone), then every process of it is killed (SIGKILL
# of the holder; the kernel kills the node's PID namespace with its PID 1). The network namespace
# and its veth stay, down, until node_restore.
node_lose() {
    select_node "$1"
    local holder
    holder=$(pid_if_ours "$NODE_STATE/holder.pid" unshare) || die "$NODE_NAME is not running"
    ip link set "$NODE_VETH" down
    kill -KILL "$holder"
    local i
    for i in $(seq 1 50); do
        [ -z "$(init_pid || true)" ] && break
        sleep 0.1
    done
    [ -z "$(init_pid || true)" ] || die "$NODE_NAME's processes are still running 5 s after SIGKILL of its holder"
    rm -f "$NODE_STATE"/{holder,init,corosync,pacemakerd}.pid
    say "lost $NODE_NAME ($NODE_ADDR): link down, holder $holder and every process of the node killed"
}

# node_restore N: starts node N again (fresh namespaces, the same persistent directories) and
# waits until it has rejoined: a DC and every node online, seen from node N.
node_restore() {
    local root t0=$SECONDS
    root=$(node_root) || die "no $SUITE root (scripts/pacemaker-root.sh build $SUITE failed)"
    select_node "$1"
    if nodes_running && (select_node "$1" && members_online); then
        say "$NODE_NAME is up and a member already"
        return 0
    fi
    select_node "$1"
    local want_env
    want_env=$(cat "$STATE_DIR/pacemakerd.env" 2>/dev/null || true)
    [ "$want_env" = "${CLUSTER_ENV[*]}" ] || die "the cluster runs with PCMK_* settings '$want_env', not '${CLUSTER_ENV[*]}'"
    node_stop_daemons
    node_boot "$root"
    say "waiting (at most ${START_TIMEOUT} s) for $NODE_NAME to rejoin"
    wait_members_online
    say "$NODE_NAME rejoined after $((SECONDS - t0)) s"
}
