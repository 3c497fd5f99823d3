#!/usr/bin/env bash
# kubemaker on one machine: a throwaway Pacemaker cluster, a local Kubernetes API server, the Helm
# chart, `kubemaker controller`, and one "worker" host (a network namespace running
# `kubemaker remoted`) that the controller joins to the cluster as a Pacemaker remote node.
#
#   scripts/demo.sh up       (make demo)       set it all up; prints crm_mon and the RemoteNode
#   scripts/demo.sh down     (make demo-down)  undo exactly what `up` did
#   scripts/demo.sh status                     what runs
#
# Run as root on Debian 12 / Ubuntu. Both `up` and `down` are idempotent.
#
# What it shares: the cluster is scripts/test-cluster.sh's and the API server scripts/test-apiserver.sh's,
# the same ones scripts/test.sh uses. `up` reuses them when they already run and `down` stops only the
# ones `up` started. Do not run the test suite while the demo is up: the tests reset the cluster,
# change the hacluster password and delete every RemoteNode. `up` and `down` hold the cluster lock
# (/var/tmp/kubemaker-test/cluster.lock) while they change the cluster, so they wait for a running test.
#
# The machine-wide changes `up` makes and `down` reverts (only when they are still the demo's):
#   - hacluster gets a random password (stored in $DEMO_DIR/hacluster-password, mode 0600);
#   - /etc/pacemaker/authkey becomes the key the controller generated (the previous file is kept in
#     $DEMO_DIR and put back by `down`).
# Left in place by `down`: the CIB's remote-tls-port (5989) on the throwaway cluster, the CRDs (Helm
# never deletes CRDs) and the namespace (without a controller-manager a deleted namespace would stay
# Terminating forever).
#
# Environment:
#   KUBEMAKER_DEMO_DIR        state folder (default /var/tmp/kubemaker-demo): pid files, logs, keys
#   CARGO_TARGET_DIR          cargo's target folder (default /var/tmp/kubemaker-cache/target)
#   KUBEMAKER_BIN             use this kubemaker binary instead of building one
#   KUBEMAKER_DEMO_SKIP_DEPS  1: do not run the dependency installers (they are idempotent but slow-ish)
#   KUBEMAKER_DEMO_SUBNET     first three octets of the worker's /24 (default 10.231.0: host .1, worker .2)
#   KUBEMAKER_DEMO_METRICS    controller's /healthz /readyz /metrics address (default 127.0.0.1:18080)
#   KUBEMAKER_DEMO_TIMEOUT    seconds to wait for the node to become Ready (default 240)
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

DEMO_DIR=${KUBEMAKER_DEMO_DIR:-/var/tmp/kubemaker-demo}
TEST_DIR=/var/tmp/kubemaker-test
CLUSTER_LOCK=$TEST_DIR/cluster.lock
KEY_READ_MARKER=$TEST_DIR/cluster/remote-key-read   # shared with tests/support/mod.rs
CLUSTER_AUTHKEY=/etc/pacemaker/authkey
CIB_FILE=/var/lib/pacemaker/cib/cib.xml
CIB_TLS_PORT=5989

NAMESPACE=kubemaker
RELEASE=kubemaker
CONTROLLER_SA=kubemaker-controller     # the chart's "<fullname>-controller" for release "kubemaker"
AUTHKEY_SECRET=kubemaker-authkey       # the chart's authkey.secretName default
CREDENTIALS_SECRET=pacemaker-credentials
LEASE=kubemaker-controller
CLUSTER_NAME=demo                      # the PacemakerCluster
NODE=demo-worker                       # the RemoteNode = the Pacemaker remote node's name
NETNS=kmdemo-worker                    # network namespace and the host end of its veth
SUBNET=${KUBEMAKER_DEMO_SUBNET:-10.231.0}
HOST_ADDR=$SUBNET.1
WORKER_ADDR=$SUBNET.2
METRICS_ADDR=${KUBEMAKER_DEMO_METRICS:-127.0.0.1:18080}
READY_TIMEOUT=${KUBEMAKER_DEMO_TIMEOUT:-240}
EXAMPLE=$REPO/examples/remotenode-demo.yaml
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/kubemaker-cache/target}

T0=$SECONDS
CURRENT_STEP="start"

ts() { printf '[demo %4ds]' $((SECONDS - T0)); }
step() { CURRENT_STEP=$*; printf '\n%s ==> %s\n' "$(ts)" "$*"; }
say() { printf '%s     %s\n' "$(ts)" "$*"; }
warn() { printf '%s     WARNING: %s\n' "$(ts)" "$*" >&2; }
die() {
    printf '\n%s ERROR: %s\n' "$(ts)" "$*" >&2
    exit 1
}

on_error() {
    local rc=$? line=$1 cmd=$2
    trap - ERR
    printf '\n%s ERROR: step "%s" failed: '%s' exited with %s (%s line %s).\n' "$(ts)" "$CURRENT_STEP" \
        "$cmd" "$rc" "${BASH_SOURCE[0]}" "$line" >&2
    printf '       Logs: %s/*.log. Undo everything with: make demo-down (scripts/demo.sh down)\n' "$DEMO_DIR" >&2
    exit "$rc"
}

# --- processes: "<pid> <starttime>" pid files, as in scripts/test-cluster.sh -----------------------
# shellcheck source=scripts/lib/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"

# The pid in $DEMO_DIR/<name>.pid if that process still runs (same pid, same start time).
our_pid() { pid_if_ours "$DEMO_DIR/$1.pid"; }

# spawn NAME COMM CMD...: starts CMD detached (own session), output appended to $DEMO_DIR/NAME.log,
# and records its pid once the process's command name is COMM (after the exec chain).
spawn() {
    local name=$1 comm=$2 pidfile=$DEMO_DIR/$1.pid log=$DEMO_DIR/$1.log pid=""; shift 2
    : >"$pidfile.tmp"
    printf '=== %s %s\n' "$(date -Is)" "$*" >>"$log"
    # 8>&- 9>&-: the daemon must not inherit (and keep holding) our locks.
    # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile.tmp" "$@" </dev/null >>"$log" 2>&1 8>&- 9>&- &
    for _ in $(seq 1 50); do
        read -r pid <"$pidfile.tmp" 2>/dev/null || true
        [ -n "$pid" ] && break
        sleep 0.1
    done
    [ -n "$pid" ] || die "could not start $name ($*)"
    for _ in $(seq 1 50); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] && break
        sleep 0.1
    done
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$comm" ]; then
        tail -n 20 "$log" >&2
        rm -f "$pidfile.tmp"
        die "$name exited at once (log above, $log)"
    fi
    printf '%s %s\n' "$pid" "$(proc_starttime "$pid")" >"$pidfile"
    rm -f "$pidfile.tmp"
}

# stop_ours NAME LIMIT: TERM the process in NAME.pid (if still ours), wait up to LIMIT s, then KILL.
stop_ours() {
    local name=$1 limit=$2 pid deadline
    pid=$(our_pid "$name" || true)
    if [ -n "$pid" ]; then
        say "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + limit))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            warn "$name ($pid) did not stop within $limit s: KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$DEMO_DIR/$name.pid" "$DEMO_DIR/$name.pid.tmp"
}

# --- locks -----------------------------------------------------------------------------------------
take_demo_lock() {
    mkdir -p "$DEMO_DIR"
    chmod 0700 "$DEMO_DIR"
    exec 8>>"$DEMO_DIR/demo.lock"
    flock -n 8 || die "another scripts/demo.sh is running (lock $DEMO_DIR/demo.lock)"
}

# The test cluster's lock: tests hold it while they use the cluster. Held until this script exits.
CLUSTER_LOCKED=no
take_cluster_lock() {
    [ "$CLUSTER_LOCKED" = yes ] && return 0
    mkdir -p "$TEST_DIR"
    exec 9>>"$CLUSTER_LOCK"
    if ! flock -n 9; then
        say "waiting (at most 600 s) for $CLUSTER_LOCK: a test is using the cluster"
        flock -w 600 9 || die "could not lock $CLUSTER_LOCK within 600 s (is scripts/test.sh running?)"
    fi
    CLUSTER_LOCKED=yes
}

# Helper scripts run without our lock fds (their daemons must not inherit them); the cluster script
# is told that we hold the cluster lock.
cluster_script() { KUBEMAKER_CLUSTER_LOCKED=1 bash "$REPO/scripts/test-cluster.sh" "$@" 8>&- 9>&-; }
apiserver_script() { bash "$REPO/scripts/test-apiserver.sh" "$@" 8>&- 9>&-; }

# --- small helpers -----------------------------------------------------------------------------------
kc() { kubectl --request-timeout=30s "$@"; }
apply() { kc apply --server-side --force-conflicts --field-manager=kubemaker-demo "$@"; }

listening() { timeout 2 bash -c "</dev/tcp/$1/$2" 2>/dev/null; }

# `contains TEXT WORD...`: TEXT contains every WORD. (No `producer | grep -q`: with pipefail, grep
# quitting early makes the producer die of SIGPIPE and the pipeline fail.)
contains() {
    local text=$1 w; shift
    for w in "$@"; do [[ "$text" == *"$w"* ]] || return 1; done
}

netns_exists() { contains " $(ip netns list 2>/dev/null | awk '{print $1}' | tr '\n' ' ') " " $NETNS "; }

shadow_hash() { getent shadow hacluster | cut -d: -f2; }

# CIB_* variables for Pacemaker's tools and `kubemaker cib`, password from the 0600 file.
with_remote_cib() {
    CIB_server=127.0.0.1 CIB_port=$CIB_TLS_PORT CIB_encrypted=true CIB_user=hacluster \
        CIB_passwd="$(cat "$DEMO_DIR/hacluster-password")" "$@"
}

load_k8s_env() {
    local env
    env=$(apiserver_script env) || return 1
    eval "$env"
    export PATH
}

crm_node_line() {
    local xml
    xml=$(timeout 20 crm_mon -1 --output-as=xml 2>/dev/null || true)
    grep -o "<node name=\"$NODE\"[^>]*>" <<<"$xml" || true
}

rn_field() { kc get remotenode "$NODE" -o jsonpath="$1" 2>/dev/null || true; }

# ======================================================================================================
# up
# ======================================================================================================

install_deps() {
    step "dependencies (scripts/install-test-deps.sh, scripts/install-k8s-test-deps.sh)"
    if [ "${KUBEMAKER_DEMO_SKIP_DEPS:-}" = 1 ]; then
        say "KUBEMAKER_DEMO_SKIP_DEPS=1: skipped"
        return 0
    fi
    if [ -n "${KUBEMAKER_BIN:-}" ] && ! command -v cargo >/dev/null 2>&1; then
        # install-test-deps.sh insists on a Rust toolchain; with a ready binary we do not need one.
        warn "no cargo, but KUBEMAKER_BIN is set: installing only the Debian packages"
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            pacemaker corosync pacemaker-cli-utils resource-agents iproute2 procps
    else
        bash "$REPO/scripts/install-test-deps.sh" 8>&- 9>&-
    fi
    say "building (or reusing) kube-apiserver, etcd, kubectl and helm: a cold build takes tens of minutes"
    bash "$REPO/scripts/install-k8s-test-deps.sh" 8>&- 9>&-
    # scripts/test-apiserver.sh needs curl and openssl; a minimal system may lack them.
    local missing=()
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    for tool in flock setsid ip ss chpasswd base64 sha256sum; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
    done
}

build() {
    step "kubemaker binary"
    local src
    if [ -n "${KUBEMAKER_BIN:-}" ]; then
        src=$KUBEMAKER_BIN
        say "KUBEMAKER_BIN=$src"
    else
        command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH (install Rust from https://rustup.rs, or set KUBEMAKER_BIN)"
        say "cargo build --release --locked --bin kubemaker (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        nice -n 10 cargo build --release --locked --bin kubemaker
        src=$CARGO_TARGET_DIR/release/kubemaker
    fi
    [ -x "$src" ] || die "$src is not an executable"
    "$src" controller --help >/dev/null 2>&1 || die "$src has no \`controller\` subcommand (too old a build?)"
    # A copy: a rebuild while the demo runs must not swap the binary under the daemons.
    mkdir -p "$DEMO_DIR/bin"
    if ! cmp -s "$src" "$DEMO_DIR/bin/kubemaker"; then
        if our_pid controller >/dev/null || our_pid remoted >/dev/null; then
            say "the binary changed: the running controller and remoted keep the old one until \`make demo-down\`"
        else
            install -m 0755 "$src" "$DEMO_DIR/bin/kubemaker.tmp"
            mv -f "$DEMO_DIR/bin/kubemaker.tmp" "$DEMO_DIR/bin/kubemaker"
        fi
    fi
    BIN=$DEMO_DIR/bin/kubemaker
    say "using $BIN ($("$BIN" --version 2>/dev/null || echo kubemaker))"
}

start_cluster() {
    step "Pacemaker cluster (scripts/test-cluster.sh start)"
    take_cluster_lock
    if cluster_script status >/dev/null 2>&1; then
        if [ -f "$DEMO_DIR/started-cluster" ]; then
            say "already running (the demo started it: make demo-down stops it)"
        else
            say "a test cluster is already running: reusing it (make demo-down will leave it running)"
        fi
    else
        cluster_script start
        touch "$DEMO_DIR/started-cluster"
    fi
}

enable_remote_cib() {
    step "remote CIB port $CIB_TLS_PORT and the hacluster password"
    contains " $(id -nG hacluster) " " haclient " || usermod -a -G haclient hacluster

    # A random password, unless the current one is still the one the demo set.
    [ -f "$DEMO_DIR/hacluster-shadow.orig" ] || { umask 077; shadow_hash >"$DEMO_DIR/hacluster-shadow.orig"; }
    if [ -s "$DEMO_DIR/hacluster-password" ] && [ -f "$DEMO_DIR/hacluster-shadow.demo" ] &&
        [ "$(shadow_hash)" = "$(cat "$DEMO_DIR/hacluster-shadow.demo")" ]; then
        say "hacluster: keeping the password the demo set ($DEMO_DIR/hacluster-password)"
    else
        local pw
        pw="kmdemo-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
        (umask 077; printf '%s' "$pw" >"$DEMO_DIR/hacluster-password")
        printf 'hacluster:%s\n' "$pw" | chpasswd || die "chpasswd failed for hacluster"
        unset pw
        (umask 077; shadow_hash >"$DEMO_DIR/hacluster-shadow.demo")
        say "hacluster: set a random password, stored in $DEMO_DIR/hacluster-password (mode 0600)"
    fi

    # remote-tls-port is an attribute of the CIB root, read by pacemaker-based only at start-up
    # (shared/docs/cib-access.md); what counts is the copy on disk.
    on_disk() {
        local root
        root=$(head -c 4096 "$CIB_FILE" 2>/dev/null || true)
        contains "${root%%>*}" "remote-tls-port=\"$CIB_TLS_PORT\""
    }
    local configured=1
    if ! on_disk; then
        configured=0
        say "cibadmin --modify --xml-text '<cib remote-tls-port=\"$CIB_TLS_PORT\"/>'"
        timeout 30 cibadmin --modify --xml-text "<cib remote-tls-port=\"$CIB_TLS_PORT\"/>"
        # A root-attribute change alone is not written to disk; a configuration change is.
        timeout 30 crm_attribute --type crm_config --name kubemaker-demo-write --update true >/dev/null
        timeout 30 crm_attribute --type crm_config --name kubemaker-demo-write --delete >/dev/null
        local deadline=$((SECONDS + 20))
        until on_disk; do
            [ "$SECONDS" -lt "$deadline" ] || die "the CIB with remote-tls-port was not written to $CIB_FILE within 20 s"
            sleep 0.2
        done
    fi
    if [ "$configured" = 0 ] || ! listening 127.0.0.1 "$CIB_TLS_PORT"; then
        say "restarting the cluster so that pacemaker-based opens port $CIB_TLS_PORT"
        cluster_script stop
        cluster_script start
        local deadline=$((SECONDS + 60))
        until listening 127.0.0.1 "$CIB_TLS_PORT"; do
            [ "$SECONDS" -lt "$deadline" ] || die "pacemaker-based did not open port $CIB_TLS_PORT within 60 s after a restart"
            sleep 0.5
        done
    fi
    say "port $CIB_TLS_PORT is open; checking a remote login (crm_mon over the remote CIB port)"
    local out="" deadline=$((SECONDS + 30))
    while :; do
        out=$(with_remote_cib timeout 20 crm_mon -1 --output-as=xml 2>&1 || true)
        contains "$out" '<current_dc present="true"' && break
        [ "$SECONDS" -lt "$deadline" ] || {
            printf '%s\n' "$out" | tail -n 5 >&2
            die "cannot log in to the remote CIB port as hacluster (crm_mon output above)"
        }
        sleep 2
    done
    say "remote CIB login as hacluster works"
}

start_apiserver() {
    step "Kubernetes API server (scripts/test-apiserver.sh start)"
    if apiserver_script status >/dev/null 2>&1; then
        if [ -f "$DEMO_DIR/started-apiserver" ]; then
            say "already running (the demo started it: make demo-down stops it)"
        else
            say "a test API server is already running: reusing it (make demo-down will leave it running)"
        fi
    else
        apiserver_script start
        touch "$DEMO_DIR/started-apiserver"
    fi
    load_k8s_env || die "scripts/test-apiserver.sh env failed"
    say "KUBECONFIG=$KUBECONFIG ($KUBEMAKER_APISERVER_URL)"
    command -v helm >/dev/null || die "helm not found (scripts/install-k8s-test-deps.sh builds it)"
    command -v kubectl >/dev/null || die "kubectl not found (scripts/install-k8s-test-deps.sh builds it)"
}

helm_install() {
    step "helm install $RELEASE charts/kubemaker -n $NAMESPACE --create-namespace"
    if helm status "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1; then
        say "release $RELEASE exists: helm upgrade"
        helm upgrade "$RELEASE" "$REPO/charts/kubemaker" -n "$NAMESPACE" --timeout 2m >/dev/null
    else
        # The release's cluster-scoped objects may exist without Helm's ownership annotations, e.g.
        # from `kubectl apply -f manifests/kubemaker.yaml` (tests/operator_crds.rs does that on this
        # API server). Take those over; refuse to touch another Helm release's.
        local take=() kind owner
        for kind in clusterrole clusterrolebinding; do
            owner=$(kc get "$kind" "$CONTROLLER_SA" -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-name}/{.metadata.annotations.meta\.helm\.sh/release-namespace}' 2>/dev/null) || continue
            case "$owner" in
                /) take=(--take-ownership)
                   say "$kind $CONTROLLER_SA exists outside Helm (applied from manifests/?): the release takes it over" ;;
                "$RELEASE/$NAMESPACE") ;;
                *) die "$kind $CONTROLLER_SA belongs to Helm release ${owner%/*} in namespace ${owner#*/}; uninstall that release first" ;;
            esac
        done
        helm install "$RELEASE" "$REPO/charts/kubemaker" -n "$NAMESPACE" --create-namespace --timeout 2m "${take[@]}" >/dev/null
        touch "$DEMO_DIR/installed-release"
    fi
    kc get crd remotenodes.kubemaker.io pacemakerclusters.kubemaker.io >/dev/null ||
        die "the CRDs are missing after helm install"
    kc wait --for=condition=Established --timeout=60s crd/remotenodes.kubemaker.io crd/pacemakerclusters.kubemaker.io >/dev/null
    kc get serviceaccount "$CONTROLLER_SA" -n "$NAMESPACE" >/dev/null ||
        die "the chart did not create ServiceAccount $NAMESPACE/$CONTROLLER_SA"
    say "installed: CRDs, RBAC, ServiceAccounts, the controller Deployment and the remoted DaemonSet."
    say "NOTE: this API server has no kubelet, scheduler or controller-manager, so the Deployment and"
    say "      DaemonSet never run a pod here. The demo runs the same binary as local processes instead:"
    say "      the controller under the chart's ServiceAccount, remoted in a network namespace."
}

create_cluster_objects() {
    step "credentials Secret $NAMESPACE/$CREDENTIALS_SECRET and PacemakerCluster $CLUSTER_NAME"
    # Built locally and sent on stdin: the password is neither printed nor put on a command line;
    # server-side apply keeps it out of a last-applied annotation.
    kc create secret generic "$CREDENTIALS_SECRET" -n "$NAMESPACE" --from-literal=username=hacluster \
        --from-file=password="$DEMO_DIR/hacluster-password" --dry-run=client -o yaml | apply -f - >/dev/null
    apply -f - <<EOF
apiVersion: kubemaker.io/v1alpha1
kind: PacemakerCluster
metadata:
  name: $CLUSTER_NAME
spec:
  endpoints:
    - host: 127.0.0.1
      port: $CIB_TLS_PORT
  tlsMode: anonymous
  credentialsSecretRef:
    name: $CREDENTIALS_SECRET
  authkeySecretName: $AUTHKEY_SECRET
EOF
}

start_controller() {
    step "kubemaker controller as ServiceAccount $NAMESPACE/$CONTROLLER_SA"
    local pid
    pid=$(our_pid controller || true)
    if [ -n "$pid" ] && [ "$(curl -s --max-time 3 "http://$METRICS_ADDR/healthz" || true)" = ok ]; then
        say "already running (pid $pid)"
    else
        [ -z "$pid" ] || stop_ours controller 30
        local port=${METRICS_ADDR##*:}
        if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null || true)" ]; then
            die "port $port (KUBEMAKER_DEMO_METRICS=$METRICS_ADDR) is taken; choose another with KUBEMAKER_DEMO_METRICS"
        fi
        say "kubectl create token $CONTROLLER_SA -n $NAMESPACE --duration=24h -> $DEMO_DIR/controller.kubeconfig"
        local token
        token=$(kc create token "$CONTROLLER_SA" -n "$NAMESPACE" --duration=24h) || die "kubectl create token failed"
        [ -n "$token" ] || die "kubectl create token printed nothing"
        (
            umask 077
            cat >"$DEMO_DIR/controller.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: demo
  cluster:
    server: $KUBEMAKER_APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$KUBEMAKER_APISERVER_CA")
users:
- name: $CONTROLLER_SA
  user:
    token: $token
contexts:
- name: demo
  context:
    cluster: demo
    user: $CONTROLLER_SA
    namespace: $NAMESPACE
current-context: demo
EOF
        )
        unset token
        # Only what the controller should see: the ServiceAccount's kubeconfig, not the admin one.
        spawn controller kubemaker env -u KUBEMAKER_NAMESPACE -u KUBEMAKER_POD_NAME \
            KUBECONFIG="$DEMO_DIR/controller.kubeconfig" RUST_LOG="${RUST_LOG:-info}" \
            "$BIN" controller --namespace "$NAMESPACE" --identity kubemaker-demo \
            --metrics-addr "$METRICS_ADDR"
        say "started (pid $(our_pid controller)), log $DEMO_DIR/controller.log"
    fi
    say "waiting (at most 60 s) for http://$METRICS_ADDR/healthz and the leader Lease"
    local deadline=$((SECONDS + 60))
    while :; do
        our_pid controller >/dev/null || { tail -n 30 "$DEMO_DIR/controller.log" >&2; die "the controller exited (log above)"; }
        if [ "$(curl -s --max-time 3 "http://$METRICS_ADDR/healthz" || true)" = ok ] &&
            contains "$(printf '\n'; curl -s --max-time 3 "http://$METRICS_ADDR/metrics" || true)" $'\nkubemaker_leader 1'; then
            break
        fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$DEMO_DIR/controller.log" >&2; die "the controller is not healthy and leading after 60 s (log above)"; }
        sleep 1
    done
    say "healthy and leading (Lease $NAMESPACE/$LEASE); waiting (at most 20 s) for /readyz"
    deadline=$((SECONDS + 20))
    until [ "$(curl -s --max-time 3 "http://$METRICS_ADDR/readyz" || true)" = ok ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            warn "/readyz still answers: $(curl -s --max-time 3 "http://$METRICS_ADDR/readyz" || true); going on, the next steps show whether the controller reconciles"
            return 0
        fi
        sleep 1
    done
    say "ready"
}

fetch_authkey() {
    step "authkey Secret $NAMESPACE/$AUTHKEY_SECRET (created by the controller)"
    local deadline=$((SECONDS + 60)) b64=""
    while :; do
        b64=$(kc get secret "$AUTHKEY_SECRET" -n "$NAMESPACE" -o jsonpath='{.data.authkey}' 2>/dev/null || true)
        [ -n "$b64" ] && break
        our_pid controller >/dev/null || { tail -n 30 "$DEMO_DIR/controller.log" >&2; die "the controller exited (log above)"; }
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$DEMO_DIR/controller.log" >&2; die "no authkey Secret after 60 s (controller log above)"; }
        sleep 1
    done
    (umask 077; base64 -d <<<"$b64" >"$DEMO_DIR/authkey.tmp")
    unset b64
    mv -f "$DEMO_DIR/authkey.tmp" "$DEMO_DIR/authkey"
    say "$(stat -c %s "$DEMO_DIR/authkey") bytes, saved to $DEMO_DIR/authkey (mode 0600)"

    say "waiting (at most 60 s) for PacemakerCluster $CLUSTER_NAME to report Connection=Connected"
    deadline=$((SECONDS + 60))
    local conn=""
    while :; do
        conn=$(kc get pacemakercluster "$CLUSTER_NAME" -o jsonpath='{.status.connection}' 2>/dev/null || true)
        [ "$conn" = Connected ] && break
        [ "$SECONDS" -lt "$deadline" ] || {
            kc get pacemakercluster "$CLUSTER_NAME" -o jsonpath='{.status.message}{"\n"}' >&2 || true
            tail -n 20 "$DEMO_DIR/controller.log" >&2
            die "PacemakerCluster $CLUSTER_NAME is ${conn:-without status} after 60 s (message and controller log above)"
        }
        sleep 1
    done
    say "the controller is connected to the CIB"
}

# When may the cluster's controller last have read /etc/pacemaker/authkey (epoch seconds)? Pacemaker
# caches the key for 60 s after a remote connection read it. Empty: not since pacemakerd started.
key_last_read() {
    local now
    now=$(date +%s)
    local resources
    resources=$(timeout 20 cibadmin -Q -o resources 2>/dev/null || true)
    if contains "$resources" 'type="remote"' || contains "$resources" 'name="remote-node"'; then
        echo "$now"; return   # a remote connection is configured: it may read the key any time
    fi
    [ -f "$KEY_READ_MARKER" ] || return 0
    local m
    m=$(tr -d ' \n' <"$KEY_READ_MARKER")
    if [[ "$m" =~ ^[0-9]+$ ]]; then echo "$m"; else echo "$now"; fi
}

install_cluster_authkey() {
    step "the key into the cluster's $CLUSTER_AUTHKEY (hacluster:haclient 0640)"
    if cmp -s "$DEMO_DIR/authkey" "$CLUSTER_AUTHKEY"; then
        say "already installed"
    else
        if [ ! -e "$DEMO_DIR/cluster-authkey.orig" ] && [ ! -e "$DEMO_DIR/cluster-authkey.none" ]; then
            if [ -e "$CLUSTER_AUTHKEY" ]; then
                stat -c '%a %U %G' "$CLUSTER_AUTHKEY" >"$DEMO_DIR/cluster-authkey.meta"
                install -m 0600 "$CLUSTER_AUTHKEY" "$DEMO_DIR/cluster-authkey.orig"
                say "kept the previous $CLUSTER_AUTHKEY in $DEMO_DIR/cluster-authkey.orig (make demo-down puts it back)"
            else
                touch "$DEMO_DIR/cluster-authkey.none"
            fi
        fi
        local last
        last=$(key_last_read)
        mkdir -p "$(dirname "$CLUSTER_AUTHKEY")"
        install -o hacluster -g haclient -m 0640 "$DEMO_DIR/authkey" "$CLUSTER_AUTHKEY.kmdemo.tmp"
        mv -f "$CLUSTER_AUTHKEY.kmdemo.tmp" "$CLUSTER_AUTHKEY"
        say "installed"
        if [ -n "$last" ]; then
            local ready=$((last + 61)) now
            now=$(date +%s)
            if [ "$ready" -gt "$now" ]; then
                say "the key changed and Pacemaker caches the old one for 60 s after a remote connection used it:"
                while [ "$(date +%s)" -lt "$ready" ]; do
                    say "  waiting, $((ready - $(date +%s))) s left"
                    sleep $(( (ready - $(date +%s)) < 10 ? (ready - $(date +%s)) : 10 ))
                done
            fi
        fi
    fi
    cmp -s "$DEMO_DIR/authkey" "$CLUSTER_AUTHKEY" || die "$CLUSTER_AUTHKEY does not hold the Secret's key"
}

create_worker() {
    step "worker host: network namespace $NETNS ($WORKER_ADDR), veth $NETNS ($HOST_ADDR)"
    [[ "$SUBNET" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "KUBEMAKER_DEMO_SUBNET=$SUBNET is not three octets like 10.231.0"
    if netns_exists &&
        contains "$(ip -o -4 addr show dev "$NETNS" 2>/dev/null || true)" " $HOST_ADDR/24" &&
        contains "$(ip -n "$NETNS" -o -4 addr show dev eth0 2>/dev/null || true)" " $WORKER_ADDR/24"; then
        say "already there"
        return 0
    fi
    # Someone else's address in the subnet: do not touch it, ask for another subnet.
    local others
    others=$(ip -o -4 addr show | awk -v s=" $SUBNET." -v me="$NETNS" 'index($0, s) { split($2, d, "@"); if (d[1] != me) print d[1] }')
    [ -z "$others" ] || die "subnet $SUBNET.0/24 is in use on: $others; pick another with KUBEMAKER_DEMO_SUBNET (e.g. 10.232.0)"
    ip netns delete "$NETNS" 2>/dev/null || true
    ip link delete "$NETNS" 2>/dev/null || true
    ip netns add "$NETNS"
    ip link add "$NETNS" type veth peer name eth0 netns "$NETNS"
    ip addr add "$HOST_ADDR/24" dev "$NETNS"
    ip link set "$NETNS" up
    ip -n "$NETNS" addr add "$WORKER_ADDR/24" dev eth0
    ip -n "$NETNS" link set eth0 up
    ip -n "$NETNS" link set lo up
    say "created"
}

start_remoted() {
    step "kubemaker remoted in $NETNS (listens on $WORKER_ADDR:3121)"
    local pid keysum
    keysum=$(sha256sum "$DEMO_DIR/authkey" | cut -d' ' -f1)
    pid=$(our_pid remoted || true)
    if [ -n "$pid" ] && [ "$(cat "$DEMO_DIR/remoted.keysum" 2>/dev/null)" = "$keysum" ]; then
        say "already running (pid $pid)"
    else
        [ -z "$pid" ] || stop_ours remoted 60
        spawn remoted kubemaker ip netns exec "$NETNS" env PCMK_authkey_location="$DEMO_DIR/authkey" \
            "$BIN" remoted
        printf '%s\n' "$keysum" >"$DEMO_DIR/remoted.keysum"
        say "started (pid $(our_pid remoted)), log $DEMO_DIR/remoted.log"
    fi
    local deadline=$((SECONDS + 30))
    until contains "$(ip netns exec "$NETNS" ss -Hltn 'sport = :3121' 2>/dev/null || true)" ":3121"; do
        our_pid remoted >/dev/null || { tail -n 20 "$DEMO_DIR/remoted.log" >&2; die "remoted exited (log above)"; }
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 20 "$DEMO_DIR/remoted.log" >&2; die "remoted does not listen on 3121 after 30 s (log above)"; }
        sleep 0.2
    done
    listening "$WORKER_ADDR" 3121 || die "cannot reach $WORKER_ADDR:3121 from the cluster's side of the veth"
    say "listening; reachable from the cluster at $WORKER_ADDR:3121"
}

apply_remotenode() {
    step "RemoteNode $NODE (examples/remotenode-demo.yaml, address $WORKER_ADDR)"
    [ -f "$EXAMPLE" ] || die "$EXAMPLE is missing"
    # From now on a remote connection may read the key at any time (see tests/support/mod.rs).
    mkdir -p "$(dirname "$KEY_READ_MARKER")" && echo active >"$KEY_READ_MARKER"
    sed -e "s/^\([[:space:]]*address:\).*/\1 $WORKER_ADDR/" "$EXAMPLE" | apply -f -
}

wait_ready() {
    step "waiting (at most $READY_TIMEOUT s) for $NODE: online in crm_mon, Ready in Kubernetes"
    local deadline=$((SECONDS + READY_TIMEOUT)) next=0 line online ready conds state
    while :; do
        line=$(crm_node_line)
        online=no
        contains "$line" 'online="true"' && online=yes
        ready=$(rn_field '{.status.conditions[?(@.type=="Ready")].status}')
        if [ "$online" = yes ] && [ "$ready" = True ]; then
            say "online in Pacemaker and Ready in Kubernetes"
            break
        fi
        if [ "$SECONDS" -ge "$next" ]; then
            conds=$(rn_field '{range .status.conditions[*]}{.type}={.status}/{.reason} {end}')
            state=$(rn_field '{.status.pacemakerState}')
            say "crm_mon: ${line:+$NODE online=$online}${line:-no node $NODE yet}; RemoteNode: state=${state:-?} ${conds:-no conditions yet} ($((deadline - SECONDS)) s left)"
            next=$((SECONDS + 5))
        fi
        our_pid controller >/dev/null || { tail -n 30 "$DEMO_DIR/controller.log" >&2; die "the controller exited (log above)"; }
        our_pid remoted >/dev/null || { tail -n 30 "$DEMO_DIR/remoted.log" >&2; die "remoted exited (log above)"; }
        if [ "$SECONDS" -ge "$deadline" ]; then
            printf '\n--- kubectl describe remotenode %s\n' "$NODE" >&2
            kc describe remotenode "$NODE" >&2 || true
            printf '\n--- crm_mon -1\n' >&2
            timeout 20 crm_mon -1 >&2 || true
            printf '\n--- controller log (tail)\n' >&2
            tail -n 25 "$DEMO_DIR/controller.log" >&2 || true
            printf '\n--- remoted log (tail)\n' >&2
            tail -n 15 "$DEMO_DIR/remoted.log" >&2 || true
            die "$NODE is not online and Ready after $READY_TIMEOUT s (diagnostics above)"
        fi
        sleep 1
    done
}

show() {
    step "result"
    printf '\n$ crm_mon -1\n'
    timeout 20 crm_mon -1 || true
    printf '\n$ kubectl get pacemakerclusters\n'
    kc get pacemakerclusters || true
    printf '\n$ kubectl get remotenodes -o wide\n'
    kc get remotenodes -o wide || true
    cat <<EOF

The demo is up ($((SECONDS - T0)) s). Try:
  export KUBECONFIG=$KUBECONFIG PATH=$KUBEMAKER_K8S_BIN:\$PATH
  kubectl get remotenodes -w                  # or: kubectl describe remotenode $NODE
  crm_mon -1                                  # the cluster's view; ip netns exec $NETNS crm_mon -1 on the worker
  curl -s http://$METRICS_ADDR/metrics | grep ^kubemaker_
  tail -f $DEMO_DIR/controller.log $DEMO_DIR/remoted.log
  kubectl delete remotenode $NODE             # the finalizer stops and removes it from the CIB
Stop everything: make demo-down (scripts/demo.sh down)
EOF
}

cmd_up() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, Pacemaker, /etc/pacemaker/authkey): sudo $0 up"
    take_demo_lock
    trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
    say "state folder $DEMO_DIR"
    install_deps
    build
    start_cluster
    enable_remote_cib
    start_apiserver
    helm_install
    create_cluster_objects
    start_controller
    fetch_authkey
    install_cluster_authkey
    create_worker
    start_remoted
    apply_remotenode
    wait_ready
    show
}

# ======================================================================================================
# down
# ======================================================================================================

# Deletes the RemoteNode and waits for the controller's finalizer to take it out of the CIB. Without a
# working controller: remove it from the CIB with `kubemaker cib remove`, then drop the finalizer.
delete_remotenode() {
    kc get remotenode "$NODE" >/dev/null 2>&1 || return 0
    say "kubectl delete remotenode $NODE (the controller's finalizer stops it and removes it from the CIB)"
    kc delete remotenode "$NODE" --wait=false >/dev/null || true
    if our_pid controller >/dev/null; then
        local deadline=$((SECONDS + 120)) next=0
        while kc get remotenode "$NODE" >/dev/null 2>&1; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                warn "$NODE still exists after 120 s"
                break
            fi
            if [ "$SECONDS" -ge "$next" ]; then
                say "  waiting for the finalizer ($((deadline - SECONDS)) s left)"
                next=$((SECONDS + 10))
            fi
            sleep 1
        done
    fi
    if kc get remotenode "$NODE" >/dev/null 2>&1; then
        if [ -x "$DEMO_DIR/bin/kubemaker" ] && [ -s "$DEMO_DIR/hacluster-password" ] && listening 127.0.0.1 "$CIB_TLS_PORT"; then
            say "removing $NODE from the CIB with kubemaker cib remove"
            with_remote_cib timeout 180 "$DEMO_DIR/bin/kubemaker" cib remove "$NODE" ||
                warn "kubemaker cib remove $NODE failed; check crm_mon"
        fi
        say "dropping the finalizer of $NODE"
        kc patch remotenode "$NODE" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null || true
    fi
}

cmd_down() {
    [ "$(id -u)" -eq 0 ] || die "must run as root: sudo $0 down"
    local had_state=no k8s=no
    [ -n "$(ls -A "$DEMO_DIR" 2>/dev/null)" ] && had_state=yes
    if [ "$had_state" = no ]; then
        if netns_exists; then
            say "no state folder $DEMO_DIR, but a leftover network namespace $NETNS: deleting it"
            ip netns delete "$NETNS" || true
            ip link delete "$NETNS" 2>/dev/null || true
        fi
        say "the demo is not up (no state in $DEMO_DIR): nothing to do"
        return 0
    fi
    take_demo_lock
    trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
    # Tests hold the cluster lock while they run; do not pull the demo's node from under one.
    take_cluster_lock

    step "Kubernetes objects"
    if apiserver_script status >/dev/null 2>&1 && load_k8s_env; then
        k8s=yes
        delete_remotenode
        say "deleting PacemakerCluster $CLUSTER_NAME"
        kc delete pacemakercluster "$CLUSTER_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    else
        say "no test API server running: nothing to delete there"
    fi

    step "processes the demo started"
    stop_ours controller 30
    stop_ours remoted 120
    say "done"

    if [ "$k8s" = yes ]; then
        step "helm uninstall $RELEASE -n $NAMESPACE, Secrets, Lease"
        if kc get pacemakercluster "$CLUSTER_NAME" >/dev/null 2>&1; then
            kc patch pacemakercluster "$CLUSTER_NAME" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
        fi
        kc delete secret "$CREDENTIALS_SECRET" "$AUTHKEY_SECRET" -n "$NAMESPACE" --ignore-not-found >/dev/null 2>&1 || true
        kc delete lease "$LEASE" -n "$NAMESPACE" --ignore-not-found >/dev/null 2>&1 || true
        if [ ! -f "$DEMO_DIR/installed-release" ]; then
            say "release $RELEASE was there before the demo: left installed"
        elif helm status "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1; then
            helm uninstall "$RELEASE" -n "$NAMESPACE" --timeout 2m >/dev/null && say "uninstalled"
        else
            say "release not installed"
        fi
        say "kept: the CRDs (Helm never deletes them) and namespace $NAMESPACE (no controller-manager here to finish deleting it)"
    fi

    step "worker network namespace $NETNS"
    if netns_exists; then
        ip netns delete "$NETNS" && say "deleted"
    else
        say "not there"
    fi
    ip link delete "$NETNS" 2>/dev/null || true

    step "the cluster's authkey and the hacluster password"
    if [ -f "$DEMO_DIR/cluster-authkey.orig" ] || [ -f "$DEMO_DIR/cluster-authkey.none" ]; then
        if [ -f "$DEMO_DIR/authkey" ] && cmp -s "$DEMO_DIR/authkey" "$CLUSTER_AUTHKEY"; then
            if [ -f "$DEMO_DIR/cluster-authkey.orig" ]; then
                local mode owner group
                read -r mode owner group <"$DEMO_DIR/cluster-authkey.meta" || { mode=640; owner=root; group=haclient; }
                install -m "$mode" -o "$owner" -g "$group" "$DEMO_DIR/cluster-authkey.orig" "$CLUSTER_AUTHKEY.kmdemo.tmp"
                mv -f "$CLUSTER_AUTHKEY.kmdemo.tmp" "$CLUSTER_AUTHKEY"
                say "put the previous $CLUSTER_AUTHKEY back"
            else
                rm -f "$CLUSTER_AUTHKEY"
                say "removed $CLUSTER_AUTHKEY (there was none before the demo)"
            fi
            # The demo's remote connection may have read the key until now (see tests/support/mod.rs).
            if [ -d "$(dirname "$KEY_READ_MARKER")" ]; then date +%s >"$KEY_READ_MARKER"; fi
        else
            say "$CLUSTER_AUTHKEY is not the demo's key any more: left alone"
        fi
    else
        say "authkey: the demo did not change it"
    fi
    if [ -f "$DEMO_DIR/hacluster-shadow.orig" ] && [ -f "$DEMO_DIR/hacluster-shadow.demo" ]; then
        if [ "$(shadow_hash)" = "$(cat "$DEMO_DIR/hacluster-shadow.demo")" ]; then
            if printf 'hacluster:%s\n' "$(cat "$DEMO_DIR/hacluster-shadow.orig")" | chpasswd -e; then
                say "restored hacluster's previous password"
            else
                warn "could not restore hacluster's previous password"
            fi
        else
            say "hacluster's password is not the demo's any more: left alone"
        fi
    else
        say "hacluster: the demo did not change the password"
    fi

    step "cluster and API server (stopped only if the demo started them)"
    if [ -f "$DEMO_DIR/started-cluster" ]; then
        cluster_script stop
    else
        say "cluster: not started by the demo, left as it is"
    fi
    if [ -f "$DEMO_DIR/started-apiserver" ]; then
        apiserver_script stop
    else
        say "API server: not started by the demo, left as it is"
    fi

    step "state folder $DEMO_DIR"
    # The lock file goes with it; our open fd keeps the lock until we exit.
    find "$DEMO_DIR" -mindepth 1 -delete
    rmdir "$DEMO_DIR" 2>/dev/null || true
    say "removed"
    printf '\n%s the demo is down\n' "$(ts)"
}

cmd_status() {
    local pid
    printf 'state folder: %s%s\n' "$DEMO_DIR" "$([ -n "$(ls -A "$DEMO_DIR" 2>/dev/null)" ] || echo ' (empty: the demo is down)')"
    local name
    for name in controller remoted; do
        pid=$(our_pid "$name" || true)
        if [ -n "$pid" ]; then
            printf '%-13s pid %s, log %s\n' "$name:" "$pid" "$DEMO_DIR/$name.log"
        else
            printf '%-13s not running\n' "$name:"
        fi
    done
    printf 'netns:        %s\n' "$(netns_exists && echo "$NETNS" || echo none)"
    printf 'cluster:      %s\n' "$(cluster_script status 2>/dev/null | tr '\n' ' ' || true)"
    if apiserver_script status >/dev/null 2>&1 && load_k8s_env; then
        printf 'KUBECONFIG:   %s\n' "$KUBECONFIG"
        kc get remotenodes 2>/dev/null || true
    else
        printf 'API server:   not running\n'
    fi
    printf '\n'
    timeout 20 crm_mon -1 2>/dev/null || true
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
