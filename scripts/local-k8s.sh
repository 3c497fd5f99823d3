#!/usr/bin/env bash
# A real multi-node Kubernetes cluster on this one machine, for the node tests and `make demo`:
# the control plane of scripts/test-apiserver.sh (kube-apiserver, etcd, kube-controller-manager,
# kube-scheduler) on a bridge address, and worker nodes that are separate hosts as far as Kubernetes
# and Pacemaker can tell: each a network, mount and UTS namespace with its own address, running a
# real containerd + runc + kubelet + kube-proxy. Pods get addresses from a CNI bridge per node and reach
# the API server through the `kubernetes` Service. No registry: images are imported from OCI archives.
#
#   scripts/local-k8s.sh up [--nodes N] [--image FILE]... [--fresh]   start (or reuse) the control
#                                     plane and N workers (default 2), import the archives into every
#                                     node, wait until every node is Ready; --fresh: empty etcd first
#   scripts/local-k8s.sh down         stop the nodes and the control plane, remove namespaces and links
#   scripts/local-k8s.sh status       the processes and `kubectl get nodes`; exit 0 when all Ready
#   scripts/local-k8s.sh import FILE  import an OCI archive into every running node's containerd
#   scripts/local-k8s.sh kubectl ARGS kubectl against this cluster
#   scripts/local-k8s.sh env          `export KUBECONFIG=...` lines, as scripts/test-apiserver.sh env
#   scripts/local-k8s.sh node-ip NAME the node's address (e.g. for RemoteNodes and crm_mon)
#   scripts/local-k8s.sh power-off NAME  the machine loses power: its daemons and containers die at
#                                     once (SIGKILL, no graceful stop) and its network goes; what a
#                                     fence device does to it (tests/agents/fence)
#   scripts/local-k8s.sh power-on NAME   boots it again: network, containerd, kubelet, kube-proxy
#   scripts/local-k8s.sh power-status NAME  prints on or off
#
# Addresses: bridge km-k8s0 10.232.0.1/24 on the host (the API server listens there on port 6444, or
# KUBEMAKER_LOCAL_K8S_PORT); worker i is
# km-worker<i> at 10.232.0.(10+i) with pods in 10.233.<i>.0/24. Idempotent; a crashed run's leftovers
# (processes by pid file, namespaces, links, mounts live only inside the nodes' namespaces) are
# cleaned before starting. Every wait is bounded. State: /var/tmp/kubemaker-test/k8s-local.
set -euo pipefail
# The daemons create the files pods see (image snapshots, volumes): a caller's umask 077 would
# make an image's directories unreadable to non-root containers.
umask 022

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=/var/tmp/kubemaker-test/k8s-local
BIN=/var/tmp/kubemaker-cache/k8s/bin
BRIDGE=km-k8s0
HOST_IP=10.232.0.1
NET_PREFIX=10.232.0
POD_PREFIX=10.233
NODE_READY_TIMEOUT=${KUBEMAKER_NODE_READY_TIMEOUT:-180}
PAUSE_IMAGE=registry.k8s.io/pause:3.10
# The host paths a node keeps to itself (the chart's hostPaths among them: /run/resource-agents is
# also the host Pacemaker's).
NODE_PRIVATE_DIRS=(/run/containerd /var/lib/containerd /var/lib/kubelet /etc/cni/net.d /var/lib/cni
    /var/log/pods /var/log/containers /run/netns /run/resource-agents)

say() { printf '[local-k8s] %s\n' "$*" >&2; }
die() { printf '[local-k8s] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/lib/procs.sh
source "$SCRIPTS/lib/procs.sh"

export KUBEMAKER_APISERVER_STATE_DIR=$STATE/control-plane KUBEMAKER_APISERVER_ADDRESS=$HOST_IP
export KUBEMAKER_APISERVER_NODES=1
# its own port, so the tests' API server (127.0.0.1:6443) and this one never take each other's
export KUBEMAKER_APISERVER_PORT=${KUBEMAKER_LOCAL_K8S_PORT:-6444}
control_plane() { bash "$SCRIPTS/test-apiserver.sh" "$@"; }
PKI=$STATE/control-plane/pki
KUBECONFIG_ADMIN=$STATE/control-plane/admin.kubeconfig
kc() { timeout 60 "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

node_name() { echo "km-worker$1"; }
node_ip() { echo "$NET_PREFIX.$((10 + $1))"; }
node_dir() { echo "$STATE/nodes/$(node_name "$1")"; }
node_netns() { echo "$(node_name "$1")"; }
node_pid() { pid_if_ours "$(node_dir "$1")/$2.pid" "${3:-$2}"; }
# Runs a command inside node i's namespaces (through its holder process).
in_node() { local i=$1 h; shift; h=$(node_pid "$i" holder sleep) || die "node $i is not up"; nsenter -t "$h" -m -n -u "$@"; }
known_nodes() { local d; for d in "$STATE"/nodes/km-worker*; do [ -d "$d" ] && echo "${d##*km-worker}"; done; return 0; }

# --- the network ------------------------------------------------------------------------------------
bridge_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
    fi
    local addrs
    addrs=$(ip addr show dev "$BRIDGE")
    grep -q " $HOST_IP/24" <<<"$addrs" || ip addr add "$HOST_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

node_network_up() { # i n
    local i=$1 n=$2 ns ip j
    ns=$(node_netns "$i"); ip=$(node_ip "$i")
    ip netns add "$ns"
    ip link add "km-n$i" type veth peer name eth0 netns "$ns"
    ip link set "km-n$i" master "$BRIDGE" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$HOST_IP"
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    # pods of the other nodes: straight to that node over the bridge; the host reaches them the same way
    for ((j = 1; j <= n; j++)); do
        [ "$j" -eq "$i" ] && continue
        ip -n "$ns" route replace "$POD_PREFIX.$j.0/24" via "$(node_ip "$j")"
    done
    ip route replace "$POD_PREFIX.$i.0/24" via "$ip"
}

# --- certificates -------------------------------------------------------------------------------------
client_cert() { # out-prefix subject
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
        -days 365 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"; chmod 0600 "$1.key"
}

kubeconfig_for() { # file cert-prefix
    local server
    server=$(sed -n 's/^ *server: //p' "$KUBECONFIG_ADMIN" | head -n 1)
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "$server", certificate-authority: "$PKI/ca.crt"}
users:
- name: me
  user: {client-certificate: "$2.crt", client-key: "$2.key"}
contexts:
- name: local
  context: {cluster: local, user: me}
current-context: local
EOF
}

# --- one node -------------------------------------------------------------------------------------------
write_node_config() { # i
    local i=$1 d name ip
    d=$(node_dir "$i"); name=$(node_name "$i"); ip=$(node_ip "$i")
    mkdir -p "$d/pki" "$d/fs"
    client_cert "$d/pki/kubelet" "/O=system:nodes/CN=system:node:$name"
    client_cert "$d/pki/kube-proxy" "/CN=system:kube-proxy"
    kubeconfig_for "$d/kubelet.kubeconfig" "$d/pki/kubelet"
    kubeconfig_for "$d/kube-proxy.kubeconfig" "$d/pki/kube-proxy"
    # restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE; without it every sandbox fails.
    cat >"$d/containerd.toml" <<EOF
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
EOF
    mkdir -p "$d/fs/etc/cni/net.d"
    cat >"$d/fs/etc/cni/net.d/10-kmpods.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "kmpods", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_PREFIX.$i.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
    cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
address: "$ip"
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
cgroupDriver: cgroupfs
cgroupRoot: /$name
failSwapOn: false
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# the node reports the whole machine's disk: keep the imported images and pods whatever the host uses
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
    # kubelet's cgroupRoot must exist in every v1 hierarchy; a distinct one per node
    local h
    for h in /sys/fs/cgroup/*/; do
        [ -d "$h" ] && mkdir -p "$h$name"
    done
}

# The holder: a process whose mount and UTS namespaces are the node's. A fresh sysfs shows the node's
# own network devices; the cgroup hierarchies are bound back over it; per-node folders hide the host's.
start_holder() { # i
    local i=$1 d name
    d=$(node_dir "$i"); name=$(node_name "$i")
    local binds="" p
    for p in "${NODE_PRIVATE_DIRS[@]}"; do binds+=" $p"; done
    SPAWN_COMM=sleep spawn_daemon "$d/holder.pid" "$d/holder.log" \
        nsenter --net="/run/netns/$(node_netns "$i")" unshare -m -u --propagation private bash -euc '
            d=$1 name=$2; shift 2
            mkdir -p "$d/cgroup-keep"
            mount --rbind /sys/fs/cgroup "$d/cgroup-keep"
            mount -t sysfs sysfs /sys
            mount --rbind "$d/cgroup-keep" /sys/fs/cgroup
            umount -l "$d/cgroup-keep"
            for p in "$@"; do mkdir -p "$d/fs$p" "$p"; mount --bind "$d/fs$p" "$p"; done
            mount --make-rshared /
            hostname "$name"
            exec sleep infinity' holder "$d" "$name" $binds
}

start_node_daemon() { # i name cmd...
    local i=$1 name=$2 d; shift 2
    d=$(node_dir "$i")
    node_pid "$i" "$name" >/dev/null && return 0
    SPAWN_COMM=$name spawn_daemon "$d/$name.pid" "$d/$name.log" \
        nsenter -t "$(node_pid "$i" holder sleep)" -m -n -u "$@"
}

node_up() { # i n
    local i=$1 n=$2 d name ip k
    d=$(node_dir "$i"); name=$(node_name "$i"); ip=$(node_ip "$i")
    if node_pid "$i" holder sleep >/dev/null; then
        say "$name: reusing ($ip)"
    else
        node_down "$i"   # leftovers of a crashed run
        say "$name: starting at $ip (pods $POD_PREFIX.$i.0/24, logs $d/)"
        write_node_config "$i"
        node_network_up "$i" "$n"
        start_holder "$i"
    fi
    start_node_daemon "$i" containerd containerd --config "$d/containerd.toml"
    for k in $(seq 1 100); do
        in_node "$i" ctr --timeout 2s version >/dev/null 2>&1 && break
        [ "$k" -eq 100 ] && { tail -n 20 "$d/containerd.log" >&2; die "$name: containerd not answering after 20 s"; }
        sleep 0.2
    done
    start_node_daemon "$i" kubelet "$BIN/kubelet" --config="$d/kubelet.yaml" \
        --kubeconfig="$d/kubelet.kubeconfig" --hostname-override="$name" --node-ip="$ip" \
        --node-labels=kubemaker.io/local-node=true
    start_node_daemon "$i" kube-proxy "$BIN/kube-proxy" --kubeconfig="$d/kube-proxy.kubeconfig" \
        --hostname-override="$name" --cluster-cidr="$POD_PREFIX.0.0/16" --proxy-mode=iptables \
        --conntrack-max-per-core=0 --metrics-bind-address=127.0.0.1:10249 \
        --healthz-bind-address=127.0.0.1:10256
}

# Stops node i's daemons (kubelet first, so it does not restart containers) and removes its network.
node_down() { # i
    local i=$1 d name p pid
    d=$(node_dir "$i"); name=$(node_name "$i")
    for p in kubelet kube-proxy; do
        pid=$(node_pid "$i" "$p" || true)
        [ -n "$pid" ] && stop_pid "$name $p" "$pid" 20
    done
    # the containers: each runc shim lives in the node's namespaces; containerd stops them on request
    if node_pid "$i" containerd >/dev/null; then
        local c
        for c in $(in_node "$i" ctr -n k8s.io tasks ls -q 2>/dev/null || true); do
            in_node "$i" ctr -n k8s.io tasks kill -s KILL "$c" >/dev/null 2>&1 || true
        done
        sleep 1
    fi
    # the shims (children of no one we track): those whose mount namespace is the node's
    local holder_mnt=""
    pid=$(node_pid "$i" holder sleep || true)
    [ -n "$pid" ] && holder_mnt=$(readlink "/proc/$pid/ns/mnt" || true)
    pid=$(node_pid "$i" containerd || true)
    [ -n "$pid" ] && stop_pid "$name containerd" "$pid" 20
    if [ -n "$holder_mnt" ]; then
        for p in $(pids_in_mnt_ns "$holder_mnt"); do
            [ "$(cat "/proc/$p/comm" 2>/dev/null)" = containerd-shim ] && kill -KILL "$p" 2>/dev/null || true
        done
    fi
    pid=$(node_pid "$i" holder sleep || true)
    [ -n "$pid" ] && stop_pid "$name holder" "$pid" 10
    rm -f "$d"/*.pid
    ip link del "km-n$i" 2>/dev/null || true
    ip netns del "$(node_netns "$i")" 2>/dev/null || true
    ip route del "$POD_PREFIX.$i.0/24" 2>/dev/null || true
    for p in /sys/fs/cgroup/*/"$name"; do
        [ -d "$p" ] && find "$p" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

pids_in_mnt_ns() { # mnt-ns link text
    local f p
    for f in /proc/[0-9]*/ns/mnt; do
        [ "$(readlink "$f" 2>/dev/null)" = "$1" ] || continue
        p=${f#/proc/}; echo "${p%%/*}"
    done
}

import_into_node() { # i file
    local out
    out=$(in_node "$1" timeout 300 ctr -n k8s.io images import --no-unpack=false "$2" 2>&1) ||
        die "$(node_name "$1"): importing $2 failed: $out"
}

wait_nodes_ready() { # n
    local n=$1 deadline=$((SECONDS + NODE_READY_TIMEOUT)) ready i next=$((SECONDS + 15))
    while :; do
        ready=0
        for ((i = 1; i <= n; i++)); do
            [ "$(kc get node "$(node_name "$i")" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] &&
                ready=$((ready + 1))
        done
        [ "$ready" -eq "$n" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            kc get nodes -o wide >&2 || true
            die "$ready of $n nodes Ready after $NODE_READY_TIMEOUT s; logs in $STATE/nodes/*/kubelet.log"
        fi
        for ((i = 1; i <= n; i++)); do
            node_pid "$i" kubelet >/dev/null || { tail -n 30 "$(node_dir "$i")/kubelet.log" >&2; die "$(node_name "$i"): kubelet exited (log above)"; }
        done
        [ "$SECONDS" -ge "$next" ] && { say "$ready of $n nodes Ready ($((deadline - SECONDS)) s left)"; next=$((SECONDS + 15)); }
        sleep 1
    done
}

# --- commands -----------------------------------------------------------------------------------------------
cmd_up() {
    local n=2 images=() i f t0=$SECONDS fresh=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --nodes) n=$2; shift 2 ;;
            --image) images+=("$2"); shift 2 ;;
            --fresh) fresh=(--fresh); shift ;;
            *) die "up: unknown argument $1" ;;
        esac
    done
    [[ "$n" =~ ^[1-9]$ ]] || die "--nodes takes 1 to 9"
    for f in "${images[@]}"; do [ -f "$f" ] || die "no such image archive: $f"; done
    for f in kubelet kube-proxy kube-controller-manager kube-scheduler; do
        [ -x "$BIN/$f" ] || die "$BIN/$f missing: run scripts/install-k8s-test-deps.sh"
    done
    mkdir -p "$STATE/nodes"
    exec 7>>"$STATE.lock"
    flock -w 600 7 || die "could not lock $STATE.lock within 600 s"
    # nodes beyond n (from an earlier, larger run) go
    for i in $(known_nodes); do [ "$i" -gt "$n" ] && { node_down "$i"; rm -rf "$(node_dir "$i")"; }; done
    bridge_up
    control_plane start "${fresh[@]}" 7>&-
    say "control plane ready after $((SECONDS - t0)) s"
    for ((i = 1; i <= n; i++)); do node_up "$i" "$n"; done
    for ((i = 1; i <= n; i++)); do
        for f in "${images[@]}"; do import_into_node "$i" "$f"; done
        # (listed into a variable first: grep -q closing the pipe early would fail it under pipefail)
        local listed
        listed=$(in_node "$i" ctr -n k8s.io images ls -q 2>/dev/null || true)
        grep -qx "$PAUSE_IMAGE" <<<"$listed" ||
            die "$(node_name "$i"): no $PAUSE_IMAGE in its containerd: pass the pause archive with --image (scripts/build-image.sh makes it)"
    done
    wait_nodes_ready "$n"
    # the role label, as on real workers (NodeRestriction keeps kubelets from setting it themselves)
    for ((i = 1; i <= n; i++)); do kc label node "$(node_name "$i")" node-role.kubernetes.io/worker= --overwrite >/dev/null; done
    say "$n nodes Ready after $((SECONDS - t0)) s"
}

cmd_import() {
    local f i
    for f in "$@"; do
        [ -f "$f" ] || die "no such image archive: $f"
        for i in $(known_nodes); do
            node_pid "$i" containerd >/dev/null || continue
            import_into_node "$i" "$f"
            say "$(node_name "$i"): imported $(basename "$f")"
        done
    done
}

cmd_down() {
    local i
    mkdir -p "$STATE"
    exec 7>>"$STATE.lock"
    flock -w 600 7 || die "could not lock $STATE.lock within 600 s"
    for i in $(known_nodes); do say "$(node_name "$i"): stopping"; node_down "$i"; done
    control_plane stop 7>&- || true
    ip link del "$BRIDGE" 2>/dev/null || true
    say "down"
}

# A power cut of node i: everything in it is killed, nothing stops gracefully (unlike node_down).
node_power_off() { # i
    local i=$1 d name holder_mnt="" p pid killed=() k
    d=$(node_dir "$i"); name=$(node_name "$i")
    pid=$(node_pid "$i" holder sleep || true)
    [ -n "$pid" ] && holder_mnt=$(readlink "/proc/$pid/ns/mnt" || true)
    for p in kubelet kube-proxy containerd; do
        pid=$(node_pid "$i" "$p" || true)
        [ -n "$pid" ] && killed+=("$pid")
    done
    if [ -n "$holder_mnt" ]; then
        for p in $(pids_in_mnt_ns "$holder_mnt"); do killed+=("$p"); done
    fi
    # the containers' processes: in the node's cgroups (kubelet's cgroupRoot /<name>)
    for p in $(find /sys/fs/cgroup/pids/"$name" -name cgroup.procs -exec cat {} + 2>/dev/null || true); do
        killed+=("$p")
    done
    for p in "${killed[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    # gone (reaped), not only dying, before node_down looks at them (at most 10 s)
    for k in $(seq 1 50); do
        pid=""
        for p in "${killed[@]}"; do [ -e "/proc/$p" ] && pid=$p; done
        [ -z "$pid" ] && break
        sleep 0.2
    done
    node_down "$i"   # removes the network and the cgroups
    # /run is a tmpfs on a real machine: a boot finds it empty (containerd's state, the resource
    # agents' state files)
    for p in "${NODE_PRIVATE_DIRS[@]}"; do
        case "$p" in /run/*) rm -rf "${d:?}/fs$p" ;; esac
    done
}

power_node_index() { # name
    [[ "$1" =~ ^km-worker([1-9])$ ]] || die "$1: not a node of this cluster (km-worker<N>)"
    [ -d "$(node_dir "${BASH_REMATCH[1]}")" ] || die "$1: no such node"
    echo "${BASH_REMATCH[1]}"
}

cmd_power() { # off|on|status name
    local i n
    i=$(power_node_index "$2")
    case "$1" in
        status) if node_pid "$i" holder sleep >/dev/null; then echo on; else echo off; fi; return 0 ;;
    esac
    exec 7>>"$STATE.lock"
    flock -w 600 7 || die "could not lock $STATE.lock within 600 s"
    case "$1" in
        off) node_power_off "$i"; say "$2: powered off" ;;
        on)
            n=$(known_nodes | sort -n | tail -n 1)
            node_up "$i" "$n"
            say "$2: powered on" ;;
    esac
}

cmd_status() {
    local i p rc=0
    control_plane status || rc=3
    for i in $(known_nodes); do
        printf '%s (%s):' "$(node_name "$i")" "$(node_ip "$i")"
        for p in holder:sleep containerd kubelet kube-proxy; do
            if node_pid "$i" "${p%%:*}" "${p##*:}" >/dev/null; then printf ' %s' "${p%%:*}"; else printf ' %s:DOWN' "${p%%:*}"; rc=3; fi
        done
        echo
    done
    [ "$rc" -eq 0 ] && kc get nodes -o wide
    return "$rc"
}

case "${1:-}" in
    up | down | import)
        [ "$(id -u)" -eq 0 ] || die "must run as root"
        c=$1; shift; "cmd_$c" "$@" ;;
    status) cmd_status ;;
    env) control_plane env ;;
    kubectl) shift; exec "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@" ;;
    power-off | power-on | power-status)
        [ "$(id -u)" -eq 0 ] || die "must run as root"
        [ -n "${2:-}" ] || die "$1 NAME"
        cmd_power "${1#power-}" "$2" ;;
    node-ip) [[ "${2:-}" =~ ^km-worker([1-9])$ ]] || die "node-ip km-worker<N>"; node_ip "${BASH_REMATCH[1]}" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
