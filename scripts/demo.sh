#!/usr/bin/env bash
# kubemaker on one machine, as users run it: a throwaway Pacemaker cluster, a local Kubernetes
# cluster with two real kubelet worker nodes (scripts/local-k8s.sh), the kubemaker image built
# without Docker (scripts/build-image.sh), and the Helm chart installed on it: the controller as a
# Deployment, remoted as a DaemonSet on both workers, which auto-join the cluster as remote nodes.
#
#   scripts/demo.sh up            (make demo)        set it all up; shows the pods, crm_mon, RemoteNodes
#   scripts/demo.sh down          (make demo-down)   undo exactly what `up` did
#   scripts/demo.sh status        (make demo-status) what runs
#   scripts/demo.sh kubectl ARGS                     kubectl against the demo's Kubernetes
#
# Run as root on Debian 12 / Ubuntu. Both `up` and `down` are idempotent.
#
# What it shares: the cluster is scripts/test-cluster.sh's and the Kubernetes nodes are
# scripts/local-k8s.sh's, the ones the test suite uses. `up` reuses a running cluster, and `down`
# stops it only if `up` started it. Do not run the test suite while the demo is up: the tests reset
# the cluster, change the hacluster password and restart the local nodes. `up` and `down` hold the
# cluster lock (/var/tmp/kubemaker-test/cluster.lock) while they change the cluster.
#
# The machine-wide changes `up` makes and `down` reverts (only when they are still the demo's):
#   - hacluster gets a random password (stored in $DEMO_DIR/hacluster-password, mode 0600);
#   - /etc/pacemaker/authkey becomes the key the controller generated (the previous file is kept in
#     $DEMO_DIR and put back by `down`; Pacemaker keeps a key it used for 60 s, which `up` waits out).
# Left in place by `down`: the CIB's remote-tls-port (5989) on the throwaway cluster.
#
# Environment:
#   KUBEMAKER_DEMO_DIR        state folder (default /var/tmp/kubemaker-demo): keys, markers
#   CARGO_TARGET_DIR          cargo's target folder (default /var/tmp/kubemaker-cache/target)
#   KUBEMAKER_DEMO_SKIP_DEPS  1: do not run the dependency installers (they are idempotent but slow-ish)
#   KUBEMAKER_DEMO_TIMEOUT    seconds to wait for the nodes to become Ready (default 300)
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

DEMO_DIR=${KUBEMAKER_DEMO_DIR:-/var/tmp/kubemaker-demo}
TEST_DIR=/var/tmp/kubemaker-test
CLUSTER_LOCK=$TEST_DIR/cluster.lock
KEY_READ_MARKER=$TEST_DIR/cluster/remote-key-read   # shared with tests/support/keys.rs
CLUSTER_AUTHKEY=/etc/pacemaker/authkey
CIB_FILE=/var/lib/pacemaker/cib/cib.xml
CIB_TLS_PORT=5989
HOST_ADDR=10.232.0.1                   # scripts/local-k8s.sh's bridge: where pods reach the CIB port
WORKERS=(km-worker1 km-worker2)        # scripts/local-k8s.sh's default nodes
K8S_BIN=/var/tmp/kubemaker-cache/k8s/bin

NAMESPACE=kubemaker
RELEASE=kubemaker
AUTHKEY_SECRET=kubemaker-authkey       # the chart's authkey.secretName default
CREDENTIALS_SECRET=pacemaker-credentials
CLUSTER_NAME=demo                      # the PacemakerCluster
REMOTE_LABEL=kubemaker.io/remote-node  # the chart's remoted.nodeSelector, and the demo's autoJoin
READY_TIMEOUT=${KUBEMAKER_DEMO_TIMEOUT:-300}
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
    printf '       Undo everything with: make demo-down (scripts/demo.sh down)\n' >&2
    exit "$rc"
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
nodes_script() { bash "$REPO/scripts/local-k8s.sh" "$@" 8>&- 9>&-; }

# --- small helpers -----------------------------------------------------------------------------------
kc() { nodes_script kubectl --request-timeout=30s "$@"; }
apply() { kc apply --server-side --force-conflicts --field-manager=kubemaker-demo "$@"; }
helm_() {
    KUBECONFIG=$TEST_DIR/k8s-local/control-plane/admin.kubeconfig HELM_CACHE_HOME=$DEMO_DIR/helm/cache \
        HELM_CONFIG_HOME=$DEMO_DIR/helm/config HELM_DATA_HOME=$DEMO_DIR/helm/data "$K8S_BIN/helm" "$@"
}

listening() { timeout 2 bash -c "</dev/tcp/$1/$2" 2>/dev/null; }

# `contains TEXT WORD...`: TEXT contains every WORD. (No `producer | grep -q`: with pipefail, grep
# quitting early makes the producer die of SIGPIPE and the pipeline fail.)
contains() {
    local text=$1 w; shift
    for w in "$@"; do [[ "$text" == *"$w"* ]] || return 1; done
}

shadow_hash() { getent shadow hacluster | cut -d: -f2; }

# CIB_* variables for Pacemaker's tools, password from the 0600 file.
with_remote_cib() {
    CIB_server=127.0.0.1 CIB_port=$CIB_TLS_PORT CIB_encrypted=true CIB_user=hacluster \
        CIB_passwd="$(cat "$DEMO_DIR/hacluster-password")" "$@"
}

# ======================================================================================================
# up
# ======================================================================================================

install_deps() {
    step "dependencies (scripts/install-test-deps.sh, scripts/install-k8s-test-deps.sh)"
    if [ "${KUBEMAKER_DEMO_SKIP_DEPS:-}" = 1 ]; then
        say "KUBEMAKER_DEMO_SKIP_DEPS=1: skipped"
        return 0
    fi
    bash "$REPO/scripts/install-test-deps.sh" 8>&- 9>&-
    say "building (or reusing) the Kubernetes binaries: a cold build takes about 7 minutes on 2 cores"
    bash "$REPO/scripts/install-k8s-test-deps.sh" 8>&- 9>&-
    for tool in flock ip ss chpasswd base64 cmp; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
    done
}

build_images() {
    step "the kubemaker and pause images (scripts/build-image.sh; no Docker, cached by their inputs)"
    local out
    out=$(bash "$REPO/scripts/build-image.sh" 8>&- 9>&-) || die "scripts/build-image.sh failed"
    IMAGE=$(awk '$1 == "image:" {print $2}' <<<"$out")
    IMAGE_FILE=$(awk '$1 == "image:" {print $3}' <<<"$out")
    PAUSE_FILE=$(awk '$1 == "pause:" {print $3}' <<<"$out")
    [ -f "$IMAGE_FILE" ] && [ -f "$PAUSE_FILE" ] || die "build-image.sh printed no image archives: $out"
    IMAGE_TAG=${IMAGE##*:}
    say "$IMAGE ($(du -h "$IMAGE_FILE" | cut -f1) archive)"
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
    [ -f "$DEMO_DIR/hacluster-shadow.orig" ] || (umask 077; shadow_hash >"$DEMO_DIR/hacluster-shadow.orig")
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

start_nodes() {
    step "Kubernetes: control plane and ${#WORKERS[@]} kubelet workers (scripts/local-k8s.sh up)"
    nodes_script up --nodes "${#WORKERS[@]}" --image "$PAUSE_FILE" --image "$IMAGE_FILE"
    touch "$DEMO_DIR/started-nodes"
}

helm_install() {
    step "helm install $RELEASE charts/kubemaker -n $NAMESPACE --set image.tag=$IMAGE_TAG"
    kc create namespace "$NAMESPACE" --dry-run=client -o yaml | apply -f - >/dev/null
    # remoted needs privileged pods (host network, host PID, host paths), as the README says.
    kc label namespace "$NAMESPACE" pod-security.kubernetes.io/enforce=privileged --overwrite >/dev/null
    if helm_ status "$RELEASE" -n "$NAMESPACE" >/dev/null 2>&1; then
        say "release $RELEASE exists: helm upgrade"
        helm_ upgrade "$RELEASE" "$REPO/charts/kubemaker" -n "$NAMESPACE" --set "image.tag=$IMAGE_TAG" --timeout 2m >/dev/null
    else
        helm_ install "$RELEASE" "$REPO/charts/kubemaker" -n "$NAMESPACE" --set "image.tag=$IMAGE_TAG" --timeout 2m >/dev/null
    fi
    kc wait --for=condition=Established --timeout=60s crd/remotenodes.kubemaker.io crd/pacemakerclusters.kubemaker.io >/dev/null
    say "waiting (at most 180 s) for the controller Deployment"
    kc -n "$NAMESPACE" rollout status deployment/"$RELEASE"-controller --timeout=180s
}

create_cluster_objects() {
    step "credentials Secret $NAMESPACE/$CREDENTIALS_SECRET and PacemakerCluster $CLUSTER_NAME (autoJoin)"
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
    - host: $HOST_ADDR
      port: $CIB_TLS_PORT
  tlsMode: anonymous
  credentialsSecretRef:
    name: $CREDENTIALS_SECRET
  authkeySecretName: $AUTHKEY_SECRET
  remoteNodeDefaults:
    monitor: {interval: 10s, timeout: 15s}
  autoJoin:
    nodeSelector: {$REMOTE_LABEL: "true"}
EOF
}

fetch_authkey() {
    step "PacemakerCluster $CLUSTER_NAME connected; authkey Secret $NAMESPACE/$AUTHKEY_SECRET"
    local deadline=$((SECONDS + 120)) conn=""
    while :; do
        conn=$(kc get pacemakercluster "$CLUSTER_NAME" -o jsonpath='{.status.connection}' 2>/dev/null || true)
        [ "$conn" = Connected ] && break
        [ "$SECONDS" -lt "$deadline" ] || {
            kc get pacemakercluster "$CLUSTER_NAME" -o jsonpath='{.status.message}{"\n"}' >&2 || true
            kc -n "$NAMESPACE" logs deployment/"$RELEASE"-controller --tail=20 >&2 || true
            die "PacemakerCluster $CLUSTER_NAME is ${conn:-without status} after 120 s (message and controller log above)"
        }
        sleep 1
    done
    say "the controller pod is connected to the CIB at $HOST_ADDR:$CIB_TLS_PORT"
    local b64=""
    deadline=$((SECONDS + 60))
    until b64=$(kc get secret "$AUTHKEY_SECRET" -n "$NAMESPACE" -o jsonpath='{.data.authkey}' 2>/dev/null) && [ -n "$b64" ]; do
        [ "$SECONDS" -lt "$deadline" ] || die "no authkey Secret after 60 s"
        sleep 1
    done
    (umask 077; base64 -d <<<"$b64" >"$DEMO_DIR/authkey.tmp")
    unset b64
    mv -f "$DEMO_DIR/authkey.tmp" "$DEMO_DIR/authkey"
    say "$(stat -c %s "$DEMO_DIR/authkey") bytes, saved to $DEMO_DIR/authkey (mode 0600)"
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

label_workers() {
    step "labelling the workers $REMOTE_LABEL=true: remoted pods start, auto-join makes RemoteNodes"
    # From now on a remote connection may read the key at any time (see tests/support/keys.rs).
    mkdir -p "$(dirname "$KEY_READ_MARKER")" && echo active >"$KEY_READ_MARKER"
    local node
    for node in "${WORKERS[@]}"; do
        kc label node "$node" "$REMOTE_LABEL=true" --overwrite >/dev/null
    done
}

wait_ready() {
    step "waiting (at most $READY_TIMEOUT s) for ${WORKERS[*]}: online in crm_mon, Ready in Kubernetes"
    local deadline=$((SECONDS + READY_TIMEOUT)) next=0 mon node ready missing
    while :; do
        mon=$(timeout 20 crm_mon -1 --output-as=xml 2>/dev/null || true)
        missing=()
        for node in "${WORKERS[@]}"; do
            ready=$(kc get remotenode "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
            if ! contains "$mon" "<node name=\"$node\" id=\"$node\" online=\"true\"" || [ "$ready" != True ]; then
                missing+=("$node")
            fi
        done
        if [ "${#missing[@]}" -eq 0 ]; then
            say "all online in Pacemaker and Ready in Kubernetes"
            break
        fi
        if [ "$SECONDS" -ge "$next" ]; then
            say "not yet: ${missing[*]} ($((deadline - SECONDS)) s left)"
            next=$((SECONDS + 10))
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            kc get pods -A -o wide >&2 || true
            kc describe remotenodes >&2 || true
            timeout 20 crm_mon -1 >&2 || true
            die "${missing[*]} not online and Ready after $READY_TIMEOUT s (diagnostics above)"
        fi
        sleep 2
    done
}

show() {
    step "result"
    printf '\n$ scripts/demo.sh kubectl get pods -A -o wide\n'
    kc get pods -A -o wide || true
    printf '\n$ crm_mon -1\n'
    timeout 20 crm_mon -1 || true
    printf '\n$ scripts/demo.sh kubectl get pacemakerclusters,remotenodes\n'
    kc get pacemakerclusters,remotenodes -o wide || true
    cat <<EOF

The demo is up ($((SECONDS - T0)) s). Try:
  scripts/demo.sh kubectl get remotenodes -w
  scripts/demo.sh kubectl -n $NAMESPACE exec ds/$RELEASE-remoted -- crm_mon -1   # Pacemaker's tools in a remoted pod
  scripts/demo.sh kubectl -n $NAMESPACE delete pod -l app.kubernetes.io/component=remoted \\
      --field-selector spec.nodeName=km-worker2   # the node leaves cleanly; its replacement rejoins
  crm_mon -1                                      # the cluster's view
Stop everything: make demo-down (scripts/demo.sh down)
EOF
}

cmd_up() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, Pacemaker, /etc/pacemaker/authkey): sudo $0 up"
    take_demo_lock
    trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
    say "state folder $DEMO_DIR"
    install_deps
    build_images
    start_cluster
    enable_remote_cib
    start_nodes
    helm_install
    create_cluster_objects
    fetch_authkey
    install_cluster_authkey
    label_workers
    wait_ready
    show
}

# ======================================================================================================
# down
# ======================================================================================================

cmd_down() {
    [ "$(id -u)" -eq 0 ] || die "must run as root: sudo $0 down"
    if [ -z "$(ls -A "$DEMO_DIR" 2>/dev/null)" ]; then
        say "the demo is not up (no state in $DEMO_DIR): nothing to do"
        return 0
    fi
    take_demo_lock
    trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
    # Tests hold the cluster lock while they run; do not pull the demo's nodes from under one.
    take_cluster_lock

    step "the remote nodes out of the CIB, then the release (the README's uninstall steps)"
    if nodes_script status >/dev/null 2>&1; then
        kc label nodes --all "$REMOTE_LABEL-" >/dev/null || true
        say "waiting (at most 240 s) for the controller to take the RemoteNodes out of the CIB"
        kc delete remotenodes --all --wait=true --timeout=240s >/dev/null ||
            warn "RemoteNodes still there after 240 s; check crm_mon"
        kc delete pacemakerclusters "$CLUSTER_NAME" --ignore-not-found --wait=true --timeout=60s >/dev/null || true
        if helm_ uninstall "$RELEASE" -n "$NAMESPACE" --wait --timeout 2m >/dev/null 2>&1; then
            say "uninstalled"
        fi
    else
        say "the local Kubernetes nodes are not running: nothing to delete there"
    fi
    if [ -f "$DEMO_DIR/started-nodes" ]; then
        step "Kubernetes nodes (scripts/local-k8s.sh down)"
        nodes_script down
    fi

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
            # The demo's remote connection may have read the key until now (see tests/support/keys.rs).
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

    step "cluster (stopped only if the demo started it)"
    if [ -f "$DEMO_DIR/started-cluster" ]; then
        cluster_script stop
    else
        say "cluster: not started by the demo, left as it is"
    fi

    step "state folder $DEMO_DIR"
    # The lock file goes with it; our open fd keeps the lock until we exit.
    find "$DEMO_DIR" -mindepth 1 -delete
    rmdir "$DEMO_DIR" 2>/dev/null || true
    say "removed"
    printf '\n%s the demo is down\n' "$(ts)"
}

cmd_status() {
    printf 'state folder: %s%s\n' "$DEMO_DIR" "$([ -n "$(ls -A "$DEMO_DIR" 2>/dev/null)" ] || echo ' (empty: the demo is down)')"
    printf 'cluster:      %s\n' "$(cluster_script status 2>/dev/null | tr '\n' ' ' || true)"
    if nodes_script status >/dev/null 2>&1; then
        kc get pods -A -o wide 2>/dev/null || true
        kc get remotenodes 2>/dev/null || true
    else
        printf 'Kubernetes:   the local nodes are not running\n'
    fi
    printf '\n'
    timeout 20 crm_mon -1 2>/dev/null || true
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    kubectl) shift; nodes_script kubectl "$@" ;;
    *) echo "usage: $0 up|down|status|kubectl ARGS..." >&2; exit 2 ;;
esac
