#!/usr/bin/env bash
# A throwaway Kubernetes API server (real kube-apiserver + etcd, no nodes, no controller-manager) on
# 127.0.0.1 for the end-to-end tests. Binaries come from scripts/install-k8s-test-deps.sh
# (/var/tmp/kubemaker-cache/k8s/bin), or from $KUBEBUILDER_ASSETS when it holds kube-apiserver and etcd.
#
#   scripts/test-apiserver.sh start [--fresh]  start it (or reuse the one this script started);
#                                              --fresh wipes etcd's data first (an empty cluster);
#                                              when only our kube-apiserver is gone and our etcd
#                                              still runs, starts just the kube-apiserver again
#                                              (same port, etcd's data kept)
#   scripts/test-apiserver.sh stop             stop it (only the processes this script started)
#   scripts/test-apiserver.sh kill-apiserver   SIGKILL our kube-apiserver (the pid in its pid file,
#                                              checked by start time), an abrupt crash; etcd and
#                                              the state stay, so `start` brings it back
#   scripts/test-apiserver.sh status           pids, URL, /readyz; exit 0 when ready, 3 when not
#   scripts/test-apiserver.sh env              prints `export ...` lines for eval "$(scripts/test-apiserver.sh env)":
#                                              KUBECONFIG, KUBEMAKER_APISERVER_URL, KUBEMAKER_APISERVER_CA,
#                                              KUBEMAKER_K8S_BIN, PATH (our kubectl/helm first), and
#                                              KUBECACHEDIR/HELM_*_HOME inside the state folder
#
# State lives in /var/tmp/kubemaker-test/apiserver/: pki/ (CA, serving cert for 127.0.0.1/localhost, an
# admin client cert in group system:masters, the service-account signing key), etcd-data/,
# admin.kubeconfig, ports, etcd.pid and kube-apiserver.pid ("<pid> <starttime>": the start time from
# /proc/<pid>/stat guards against pid reuse), etcd.log, kube-apiserver.log.
# Processes that this script did not start are never signalled; `start` refuses to run beside a
# kube-apiserver that it did not start on the chosen port, or beside anything using its data.
#
# What runs: authentication by client certificates and service-account tokens (TokenRequest works, so
# `kubectl create token` does), --authorization-mode=RBAC, default admission plugins. What does not:
# no controller-manager (namespaces stay Terminating after delete, no garbage collection, no
# `default` service accounts, no pods ever run), no scheduler, no kubelet.
#
# Profile (scripts/local-k8s.sh uses it for the node cluster; the defaults are the tests' API server):
#   KUBEMAKER_APISERVER_STATE_DIR   state folder (default /var/tmp/kubemaker-test/apiserver)
#   KUBEMAKER_APISERVER_ADDRESS     address to bind and advertise (default 127.0.0.1); another address
#                                   must already exist (local-k8s.sh makes a bridge for it)
#   KUBEMAKER_APISERVER_NODES=1     a control plane for real kubelets: also kube-controller-manager and
#                                   kube-scheduler, Node authorization + NodeRestriction, kubelet client
#                                   certificate, the `kubernetes` Service with endpoints (lease reconciler)
#
# Port: KUBEMAKER_APISERVER_PORT, else 6443, else (6443 taken by something that is not a kube-apiserver)
# the first free port from 16443; the kubeconfig and `env` name the port in use.
# Environment: KUBEMAKER_APISERVER_START_TIMEOUT (s, default 180) bounds the wait for /readyz.
# start/stop serialize through an flock on /var/tmp/kubemaker-test/apiserver.lock; a harness that holds
# that lock itself sets KUBEMAKER_APISERVER_LOCKED=1.
set -euo pipefail

BASE_DIR=/var/tmp/kubemaker-test
STATE_DIR=${KUBEMAKER_APISERVER_STATE_DIR:-$BASE_DIR/apiserver}
ADDRESS=${KUBEMAKER_APISERVER_ADDRESS:-127.0.0.1}
WITH_NODES=${KUBEMAKER_APISERVER_NODES:-0}
PKI_DIR=$STATE_DIR/pki
ETCD_DATA=$STATE_DIR/etcd-data
KUBECONFIG_FILE=$STATE_DIR/admin.kubeconfig
PORTS_FILE=$STATE_DIR/ports
LOCK_FILE=$STATE_DIR.lock
BIN_DIR=/var/tmp/kubemaker-cache/k8s/bin
START_TIMEOUT=${KUBEMAKER_APISERVER_START_TIMEOUT:-180}
STOP_TIMEOUT=30
ETCD_PORT_RANGE="23790 23989"       # etcd client and peer ports are picked here (below the ephemeral range)
APISERVER_FALLBACK_RANGE="16443 16642"  # when 6443 is taken by something other than a kube-apiserver
SERVICE_CIDR=10.0.0.0/24            # never contacted: no kube-proxy, and --enable-aggregator-routing
SA_ISSUER=https://kubernetes.default.svc.cluster.local

say() { printf '[test-apiserver] %s\n' "$*" >&2; }
die() { printf '[test-apiserver] ERROR: %s\n' "$*" >&2; exit 1; }

take_lock() {
    [ "${KUBEMAKER_APISERVER_LOCKED:-}" = 1 ] && return 0
    mkdir -p "$BASE_DIR"
    exec 9>>"$LOCK_FILE"
    if ! flock -n 9; then
        say "waiting (at most 600 s) for $LOCK_FILE"
        flock -w 600 9 || die "could not lock $LOCK_FILE within 600 s"
    fi
}

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"

# The pid recorded in $STATE_DIR/<name>.pid if that process is still the one we started.
our_pid() { pid_if_ours "$STATE_DIR/$1.pid" "${1:0:15}"; }   # comm is at most 15 characters

# Local TCP ports in use (any state) in this network namespace.
used_ports() {
    local sl local_addr rest
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r sl local_addr rest; do
        [ "$sl" = "sl" ] && continue
        printf '%d\n' "0x${local_addr##*:}"
    done | sort -un
}

# Pids holding a listening socket on TCP port $1.
port_holders() {
    local port=$1 hex inodes f p
    hex=$(printf '%04X' "$port")
    inodes=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        awk -v h=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == h { print $10 }' | sort -u)
    [ -n "$inodes" ] || return 0
    for f in /proc/[0-9]*/fd/*; do
        case "$(readlink "$f" 2>/dev/null)" in
            socket:\[*\])
                local ino; ino=$(readlink "$f"); ino=${ino#socket:[}; ino=${ino%]}
                if grep -qx "$ino" <<<"$inodes"; then
                    p=${f#/proc/}; printf '%s\n' "${p%%/*}"
                fi ;;
        esac
    done | sort -u
}

# Listening TCP ports. A port left in TIME_WAIT by a stopped server is free again for a new one (Go's
# listeners set SO_REUSEADDR), so only listeners count.
listening_ports() {
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" { split($2, a, ":"); print a[2] }' |
        while read -r hex; do printf '%d\n' "0x$hex"; done | sort -un
}
port_free() { ! listening_ports | grep -qx "$1"; }

# First free port in [lo, hi] not among the ports given after them.
free_port() {
    local lo=$1 hi=$2 p used; shift 2
    used=$(used_ports)
    for ((p = lo; p <= hi; p++)); do
        grep -qx "$p" <<<"$used" && continue
        case " $* " in *" $p "*) continue ;; esac
        printf '%s\n' "$p"; return 0
    done
    return 1
}

resolve_bins() {
    if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
        APISERVER_BIN=$KUBEBUILDER_ASSETS/kube-apiserver
        ETCD_BIN=$KUBEBUILDER_ASSETS/etcd
    else
        APISERVER_BIN=$BIN_DIR/kube-apiserver
        ETCD_BIN=$BIN_DIR/etcd
    fi
    [ -x "$APISERVER_BIN" ] && [ -x "$ETCD_BIN" ] ||
        die "no kube-apiserver/etcd in $BIN_DIR: run scripts/install-k8s-test-deps.sh (or set KUBEBUILDER_ASSETS)"
}

load_ports() {
    ETCD_CLIENT_PORT=""; ETCD_PEER_PORT=""; APISERVER_PORT=""
    [ -f "$PORTS_FILE" ] || return 1
    # shellcheck disable=SC1090
    . "$PORTS_FILE"
    [ -n "$ETCD_CLIENT_PORT" ] && [ -n "$ETCD_PEER_PORT" ] && [ -n "$APISERVER_PORT" ]
}

curl_api() { # path [curl args...]
    local path=$1; shift
    curl -sS --max-time 5 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
        "$@" "https://$ADDRESS:$APISERVER_PORT$path"
}
apiserver_ready() { [ "$(curl_api /readyz 2>/dev/null)" = ok ]; }
etcd_healthy() { curl -fsS --max-time 3 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; }

# --- certificates and keys (openssl) ---------------------------------------------------------------
pki_valid() {
    local f
    for f in ca.crt ca.key apiserver.crt apiserver.key admin.crt admin.key kubelet-client.crt sa.key sa.pub; do
        [ -s "$PKI_DIR/$f" ] || return 1
    done
    # the serving certificate must name the address in use
    local san
    san=$(openssl x509 -noout -ext subjectAltName -in "$PKI_DIR/apiserver.crt" 2>/dev/null) || return 1
    grep -q "IP Address:$ADDRESS\b" <<<"$san" || return 1
    for f in ca apiserver admin; do
        openssl x509 -checkend 604800 -noout -in "$PKI_DIR/$f.crt" >/dev/null 2>&1 || return 1
    done
}

gen_pki() {
    local tmp=$PKI_DIR.partial
    rm -rf "$tmp"; mkdir -p "$tmp"; chmod 0700 "$tmp"
    (
        cd "$tmp"
        cat >openssl.cnf <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$ADDRESS,IP:${SERVICE_CIDR%.*/*}.1
[v3_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
        ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
        ec ca.key
        openssl req -x509 -new -key ca.key -subj "/CN=kubemaker-test-ca" -days 3650 \
            -config openssl.cnf -extensions v3_ca -out ca.crt
        sign() { # name subject extensions days
            ec "$1.key"
            openssl req -new -key "$1.key" -subj "$2" -config openssl.cnf -out "$1.csr"
            openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
                -days "$4" -extfile openssl.cnf -extensions "$3" -out "$1.crt" 2>/dev/null
            rm -f "$1.csr"
        }
        sign apiserver "/CN=kube-apiserver" v3_server 365
        sign admin "/O=system:masters/CN=kubemaker-admin" v3_client 365
        # for kubectl logs/exec: the API server's identity towards the kubelets
        sign kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" v3_client 365
        # the service-account token signing key pair
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
        openssl pkey -in sa.key -pubout -out sa.pub
        openssl verify -CAfile ca.crt apiserver.crt admin.crt >/dev/null
        chmod 0600 ./*.key
    ) || die "generating certificates with openssl failed"
    rm -rf "$PKI_DIR"
    mv "$tmp" "$PKI_DIR"
}

write_kubeconfig() {
    local b64ca b64crt b64key
    b64ca=$(base64 -w0 "$PKI_DIR/ca.crt")
    b64crt=$(base64 -w0 "$PKI_DIR/admin.crt")
    b64key=$(base64 -w0 "$PKI_DIR/admin.key")
    umask 077
    cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kubemaker-test
  cluster:
    server: https://$ADDRESS:$APISERVER_PORT
    certificate-authority-data: $b64ca
users:
- name: kubemaker-admin
  user:
    client-certificate-data: $b64crt
    client-key-data: $b64key
contexts:
- name: kubemaker-test
  context:
    cluster: kubemaker-test
    user: kubemaker-admin
current-context: kubemaker-test
EOF
    mv -f "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

# --- processes ---------------------------------------------------------------------------------------
DAEMONS="kube-scheduler kube-controller-manager kube-apiserver etcd"   # in stop order

stop_ours() {
    local name pid
    for name in $DAEMONS; do
        pid=$(our_pid "$name" || true)
        if [ -n "$pid" ]; then
            say "stopping $name ($pid)"
            stop_pid "$name" "$pid" "$STOP_TIMEOUT"
        fi
        rm -f "$STATE_DIR/$name.pid" "$STATE_DIR/$name.pid.tmp"
    done
}

cleanup_stale() {
    local name
    for name in $DAEMONS; do
        if [ -f "$STATE_DIR/$name.pid" ] && ! our_pid "$name" >/dev/null; then
            say "removing stale $STATE_DIR/$name.pid (process gone)"
            rm -f "$STATE_DIR/$name.pid"
        fi
        rm -f "$STATE_DIR/$name.pid.tmp"
    done
}

# Foreign etcd/kube-apiserver processes whose command line names our state folder.
foreign_users_of_state() {
    local name p ours
    for name in etcd kube-apiserver; do
        ours=$(our_pid "$name" || true)
        for p in $(pids_named "$name" $ours); do
            tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "$STATE_DIR" && printf '%s(%s) ' "$name" "$p"
        done
    done
    return 0
}

wait_etcd() {
    local deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ]; do
        etcd_healthy && return 0
        our_pid etcd >/dev/null || { tail -n 30 "$STATE_DIR/etcd.log" >&2; die "etcd exited (log above)"; }
        sleep 0.5
    done
    die "etcd not healthy after 60 s; see $STATE_DIR/etcd.log"
}

wait_apiserver() {
    local deadline=$((SECONDS + START_TIMEOUT)) next_note=$((SECONDS + 10)) failing
    while [ "$SECONDS" -lt "$deadline" ]; do
        apiserver_ready && return 0
        our_pid kube-apiserver >/dev/null || { tail -n 40 "$STATE_DIR/kube-apiserver.log" >&2; die "kube-apiserver exited (log above)"; }
        our_pid etcd >/dev/null || { tail -n 30 "$STATE_DIR/etcd.log" >&2; die "etcd exited (log above)"; }
        if [ "$SECONDS" -ge "$next_note" ]; then
            failing=$(curl_api '/readyz?verbose' 2>&1 | grep -E '^\[-\]|curl:' | cut -c1-60 | tr '\n' ' ' || true)
            say "still waiting for /readyz ($((deadline - SECONDS)) s left) ${failing:+: $failing}"
            next_note=$((SECONDS + 10))
        fi
        sleep 1
    done
    die "kube-apiserver not ready after ${START_TIMEOUT} s; see $STATE_DIR/kube-apiserver.log"
}

choose_ports() {
    local want_api=${KUBEMAKER_APISERVER_PORT:-6443} holders h comm others=""
    # reuse the ports of the last run when they are free (etcd's data remembers its peer URL)
    load_ports || true
    if [ -z "$ETCD_CLIENT_PORT" ] || ! port_free "$ETCD_CLIENT_PORT"; then
        ETCD_CLIENT_PORT=$(free_port $ETCD_PORT_RANGE) || die "no free port in $ETCD_PORT_RANGE for etcd"
    fi
    if [ -z "$ETCD_PEER_PORT" ] || [ "$ETCD_PEER_PORT" = "$ETCD_CLIENT_PORT" ] || ! port_free "$ETCD_PEER_PORT"; then
        ETCD_PEER_PORT=$(free_port $ETCD_PORT_RANGE "$ETCD_CLIENT_PORT") || die "no free port in $ETCD_PORT_RANGE for etcd"
    fi
    APISERVER_PORT=$want_api
    if ! port_free "$APISERVER_PORT"; then
        holders=$(port_holders "$APISERVER_PORT" | tr '\n' ' ')
        for h in $holders; do
            comm=$(cat "/proc/$h/comm" 2>/dev/null || echo '?')
            others+="$comm($h) "
            [ "$comm" = kube-apiserver ] &&
                die "port $APISERVER_PORT is held by a kube-apiserver that this script did not start (pid $h); not touching it. Set KUBEMAKER_APISERVER_PORT to a free port to run beside it."
        done
        others=${others% }
        [ -z "${KUBEMAKER_APISERVER_PORT:-}" ] ||
            die "port $APISERVER_PORT is in use (${others:-by a socket not listening}); set KUBEMAKER_APISERVER_PORT to a free port"
        APISERVER_PORT=$(free_port $APISERVER_FALLBACK_RANGE "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT") ||
            die "port $want_api is in use (${others:-by a socket not listening}) and $APISERVER_FALLBACK_RANGE has no free port"
        say "port $want_api is in use (${others:-by a socket not listening}): using $APISERVER_PORT instead"
    fi
    [ "$APISERVER_PORT" != "$ETCD_CLIENT_PORT" ] && [ "$APISERVER_PORT" != "$ETCD_PEER_PORT" ] ||
        die "KUBEMAKER_APISERVER_PORT=$APISERVER_PORT clashes with etcd's ports"
    printf 'ETCD_CLIENT_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\n' \
        "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" >"$PORTS_FILE"
}

# kube-apiserver on $ADDRESS:$APISERVER_PORT against our etcd (ports loaded or chosen already).
spawn_apiserver() {
    local node_flags=(--authorization-mode=RBAC --endpoint-reconciler-type=none)
    if [ "$WITH_NODES" = 1 ]; then
        # kubelets authenticate as system:node:<name>; logs/exec reach them on their InternalIP; the
        # `kubernetes` Service gets this address as its endpoint (the default lease reconciler).
        node_flags=(--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction
            --kubelet-client-certificate="$PKI_DIR/kubelet-client.crt" --kubelet-client-key="$PKI_DIR/kubelet-client.key"
            --kubelet-preferred-address-types=InternalIP)
    fi
    say "starting kube-apiserver on https://$ADDRESS:$APISERVER_PORT (log $STATE_DIR/kube-apiserver.log)"
    spawn_daemon "$STATE_DIR/kube-apiserver.pid" "$STATE_DIR/kube-apiserver.log" "$APISERVER_BIN" \
        --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --bind-address="$ADDRESS" \
        --advertise-address="$ADDRESS" \
        --secure-port="$APISERVER_PORT" \
        --cert-dir="$STATE_DIR/cert-dir" \
        --tls-cert-file="$PKI_DIR/apiserver.crt" \
        --tls-private-key-file="$PKI_DIR/apiserver.key" \
        --client-ca-file="$PKI_DIR/ca.crt" \
        --service-account-issuer="$SA_ISSUER" \
        --service-account-key-file="$PKI_DIR/sa.pub" \
        --service-account-signing-key-file="$PKI_DIR/sa.key" \
        --service-cluster-ip-range="$SERVICE_CIDR" \
        "${node_flags[@]}" \
        --allow-privileged=true \
        --enable-aggregator-routing=true \
        --profiling=false
}

cmd_start() {
    local fresh=0
    [ "${1:-}" = --fresh ] && fresh=1
    take_lock
    mkdir -p "$STATE_DIR"
    cleanup_stale
    resolve_bins
    local etcd_pid kas_pid foreign
    etcd_pid=$(our_pid etcd || true)
    kas_pid=$(our_pid kube-apiserver || true)

    if [ -n "$etcd_pid" ] && [ -n "$kas_pid" ] && load_ports && apiserver_ready; then
        if [ "$fresh" -eq 0 ]; then
            [ -s "$KUBECONFIG_FILE" ] || write_kubeconfig
            say "reusing the running API server https://$ADDRESS:$APISERVER_PORT (etcd $etcd_pid, kube-apiserver $kas_pid)"
            [ "$WITH_NODES" = 1 ] && start_controllers
            [ -z "${KUBEMAKER_APISERVER_PORT:-}" ] || [ "$KUBEMAKER_APISERVER_PORT" = "$APISERVER_PORT" ] ||
                say "note: it listens on $APISERVER_PORT, not on KUBEMAKER_APISERVER_PORT=$KUBEMAKER_APISERVER_PORT (stop it first to move it)"
            return 0
        fi
        say "--fresh: restarting with empty etcd data"
    fi
    # Only the kube-apiserver is gone (it crashed or was killed) and our etcd is healthy: start just
    # the kube-apiserver again on the same port, so etcd's data and every client's kubeconfig stay.
    if [ "$fresh" -eq 0 ] && [ -n "$etcd_pid" ] && [ -z "$kas_pid" ] && load_ports && etcd_healthy &&
        port_free "$APISERVER_PORT" && pki_valid && [ -z "$(foreign_users_of_state)" ]; then
        local t1=$SECONDS
        [ -s "$KUBECONFIG_FILE" ] || write_kubeconfig
        say "etcd ($etcd_pid) runs but kube-apiserver does not: starting only kube-apiserver"
        spawn_apiserver
        say "waiting (at most ${START_TIMEOUT} s) for https://$ADDRESS:$APISERVER_PORT/readyz"
        wait_apiserver
        [ "$WITH_NODES" = 1 ] && start_controllers
        say "kube-apiserver ready after $((SECONDS - t1)) s (etcd $etcd_pid, kube-apiserver $(our_pid kube-apiserver))"
        return 0
    fi
    # Half up, not ready, or --fresh: start both anew (only our own processes are stopped).
    [ -z "$etcd_pid$kas_pid" ] || stop_ours

    foreign=$(foreign_users_of_state)
    [ -z "$foreign" ] || die "processes not started by this script use $STATE_DIR: $foreign; stop them yourself (by pid)"

    pki_valid || { say "generating certificates and keys in $PKI_DIR (openssl)"; gen_pki; }
    if [ "$fresh" -eq 1 ] && [ -d "$ETCD_DATA" ]; then
        say "--fresh: removing $ETCD_DATA"
        rm -rf "$ETCD_DATA"
    fi
    choose_ports
    write_kubeconfig

    local t0=$SECONDS
    say "starting etcd on 127.0.0.1:$ETCD_CLIENT_PORT (data $ETCD_DATA, log $STATE_DIR/etcd.log)"
    spawn_daemon "$STATE_DIR/etcd.pid" "$STATE_DIR/etcd.log" "$ETCD_BIN" \
        --name=kubemaker-test \
        --data-dir="$ETCD_DATA" \
        --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="kubemaker-test=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync \
        --log-level=warn
    wait_etcd

    spawn_apiserver
    say "waiting (at most ${START_TIMEOUT} s) for https://$ADDRESS:$APISERVER_PORT/readyz"
    wait_apiserver
    [ "$WITH_NODES" = 1 ] && start_controllers
    say "API server ready after $((SECONDS - t0)) s (etcd $(our_pid etcd), kube-apiserver $(our_pid kube-apiserver)); KUBECONFIG=$KUBECONFIG_FILE"
}

# kube-controller-manager (DaemonSet, Deployment, namespace, garbage collector, token controllers)
# and kube-scheduler, both as the admin user, serving only on loopback.
start_controllers() {
    local pid name
    pid=$(our_pid kube-controller-manager || true)
    if [ -z "$pid" ]; then
        say "starting kube-controller-manager (log $STATE_DIR/kube-controller-manager.log)"
        spawn_daemon "$STATE_DIR/kube-controller-manager.pid" "$STATE_DIR/kube-controller-manager.log" \
            "$BIN_DIR/kube-controller-manager" \
            --kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE" \
            --authorization-kubeconfig="$KUBECONFIG_FILE" \
            --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
            --service-account-private-key-file="$PKI_DIR/sa.key" --root-ca-file="$PKI_DIR/ca.crt" \
            --use-service-account-credentials=true \
            --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
            --service-cluster-ip-range="$SERVICE_CIDR" --allocate-node-cidrs=false \
            --controllers='*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller'
    fi
    pid=$(our_pid kube-scheduler || true)
    if [ -z "$pid" ]; then
        say "starting kube-scheduler (log $STATE_DIR/kube-scheduler.log)"
        spawn_daemon "$STATE_DIR/kube-scheduler.pid" "$STATE_DIR/kube-scheduler.log" "$BIN_DIR/kube-scheduler" \
            --kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE" \
            --authorization-kubeconfig="$KUBECONFIG_FILE" \
            --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false
    fi
    sleep 2
    for name in kube-controller-manager kube-scheduler; do
        our_pid "$name" >/dev/null || { tail -n 30 "$STATE_DIR/$name.log" >&2; die "$name exited (log above)"; }
    done
}

cmd_stop() {
    take_lock
    stop_ours
    say "stopped"
}

# SIGKILL to our kube-apiserver only (pid and start time from its pid file), as a crash would end
# it; etcd keeps running. Waits (at most 10 s) until it is gone.
cmd_kill_apiserver() {
    take_lock
    local pid i gone=0
    pid=$(our_pid kube-apiserver || true)
    [ -n "$pid" ] || die "no kube-apiserver started by this script runs"
    say "SIGKILL to kube-apiserver ($pid); etcd ($(our_pid etcd || echo 'not running')) stays"
    kill -KILL "$pid" 2>/dev/null || true
    # gone, or a zombie its parent has not reaped yet (its sockets are closed already)
    for i in $(seq 1 100); do
        if ! our_pid kube-apiserver >/dev/null ||
            [ "$(sed -e 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]; then
            gone=1; break
        fi
        sleep 0.1
    done
    [ "$gone" = 1 ] || die "kube-apiserver ($pid) still runs 10 s after SIGKILL"
    rm -f "$STATE_DIR/kube-apiserver.pid"
    say "kube-apiserver killed"
}

cmd_status() {
    local etcd_pid kas_pid foreign
    etcd_pid=$(our_pid etcd || true)
    kas_pid=$(our_pid kube-apiserver || true)
    printf 'etcd:           %s\n' "${etcd_pid:-not running (ours)}"
    printf 'kube-apiserver: %s\n' "${kas_pid:-not running (ours)}"
    foreign=$(pids_named kube-apiserver $kas_pid | tr '\n' ' ')
    [ -z "$foreign" ] || printf 'foreign kube-apiserver pids: %s\n' "$foreign"
    if [ -n "$kas_pid" ] && load_ports; then
        printf 'url:            https://%s:%s (etcd http://127.0.0.1:%s)\n' "$ADDRESS" "$APISERVER_PORT" "$ETCD_CLIENT_PORT"
        printf 'kubeconfig:     %s\n' "$KUBECONFIG_FILE"
        if apiserver_ready; then
            printf 'readyz:         ok\n'
            return 0
        fi
        printf 'readyz:         not ready\n'
    fi
    return 3
}

cmd_env() {
    load_ports || die "not started yet: run $0 start"
    local bin=$BIN_DIR
    [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ] &&
        [ -x "$KUBEBUILDER_ASSETS/kubectl" ] && bin=$KUBEBUILDER_ASSETS:$BIN_DIR
    printf 'export KUBECONFIG=%s\n' "$KUBECONFIG_FILE"
    printf 'export KUBEMAKER_APISERVER_URL=https://%s:%s\n' "$ADDRESS" "$APISERVER_PORT"
    printf 'export KUBEMAKER_APISERVER_CA=%s\n' "$PKI_DIR/ca.crt"
    printf 'export KUBEMAKER_K8S_BIN=%s\n' "$BIN_DIR"
    printf 'export PATH="%s:$PATH"\n' "$bin"
    # keep kubectl's discovery cache and helm's files in the state folder, not in $HOME
    printf 'export KUBECACHEDIR=%s\n' "$STATE_DIR/kube-cache"
    printf 'export HELM_CACHE_HOME=%s HELM_CONFIG_HOME=%s HELM_DATA_HOME=%s\n' \
        "$STATE_DIR/helm/cache" "$STATE_DIR/helm/config" "$STATE_DIR/helm/data"
}

case "${1:-}" in
    start) shift; [ "$(id -u)" -eq 0 ] || die "must run as root"; cmd_start "$@" ;;
    stop) [ "$(id -u)" -eq 0 ] || die "must run as root"; cmd_stop ;;
    kill-apiserver) [ "$(id -u)" -eq 0 ] || die "must run as root"; cmd_kill_apiserver ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 start [--fresh]|stop|kill-apiserver|status|env" >&2; exit 2 ;;
esac
