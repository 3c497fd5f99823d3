#!/usr/bin/env bash
# End-to-end test of the real deployment on kind (Kubernetes in Docker): the image from the
# repository's Dockerfile, the Helm chart, the controller as a Deployment, remoted as a DaemonSet on a
# kind worker, and a Pacemaker cluster that the worker joins as a remote node.
#
#   tests/e2e/kind/run.sh            run it; everything it created is deleted at the end
#   KUBEMAKER_E2E_KEEP=1 tests/e2e/kind/run.sh    keep the kind cluster and the Pacemaker container
#
# Needs: docker (a working daemon), kind, kubectl, helm, and internet access for the base images
# (kindest/node, rust:1-bookworm, debian:bookworm-slim) and Debian packages. Not part of .ci/run:
# see README.md next to this file.
#
# The Pacemaker cluster: by default a one-node Pacemaker 2.1.5 cluster (Debian bookworm) in a
# privileged container on kind's Docker network, remote CIB port 5989 enabled, hacluster given a
# random password. To use an existing cluster instead, set all of:
#   KUBEMAKER_E2E_PCMK_ENDPOINTS   "host:port[,host:port...]" of the cluster's remote-tls-port
#   KUBEMAKER_E2E_PCMK_PASSWORD_FILE  file holding hacluster's password
#   KUBEMAKER_E2E_AUTHKEY_FILE     a copy of the cluster's /etc/pacemaker/authkey (adopted as the Secret)
# and make sure the cluster nodes can reach the kind worker's address on TCP 3121 (on the Docker
# host itself the kind network is routable).
#
# Other knobs: KUBEMAKER_E2E_CLUSTER (kind cluster name, default kubemaker-e2e),
# KUBEMAKER_E2E_IMAGE (default kubemaker:e2e), KUBEMAKER_E2E_TIMEOUT (s to wait for Ready, default 300).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
REPO=$PWD

KIND_CLUSTER=${KUBEMAKER_E2E_CLUSTER:-kubemaker-e2e}
IMAGE=${KUBEMAKER_E2E_IMAGE:-kubemaker:e2e}
PCMK_IMAGE=kubemaker-e2e-pacemaker:bookworm
PCMK_CONTAINER=$KIND_CLUSTER-pacemaker
NAMESPACE=kubemaker
RELEASE=kubemaker
CLUSTER_NAME=e2e
AUTHKEY_SECRET=kubemaker-authkey
CREDENTIALS_SECRET=pacemaker-credentials
READY_TIMEOUT=${KUBEMAKER_E2E_TIMEOUT:-300}
KEEP=${KUBEMAKER_E2E_KEEP:-0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kubemaker-kind.XXXXXX")
KUBECONFIG_FILE=$WORK/kubeconfig
export KUBECONFIG=$KUBECONFIG_FILE
EXTERNAL=0
[ -n "${KUBEMAKER_E2E_PCMK_ENDPOINTS:-}" ] && EXTERNAL=1

T0=$SECONDS
FAILURES=()
CREATED_KIND=0
CREATED_PCMK=0

ts() { printf '[kind-e2e %4ds]' $((SECONDS - T0)); }
step() { printf '\n%s ==> %s\n' "$(ts)" "$*"; }
say() { printf '%s     %s\n' "$(ts)" "$*"; }
die() { printf '\n%s ERROR: %s\n' "$(ts)" "$*" >&2; exit 1; }
fail() { printf '%s     FAIL: %s\n' "$(ts)" "$*" >&2; FAILURES+=("$*"); }

# wait_for DESCRIPTION TIMEOUT COMMAND...: retries COMMAND every 2 s until it succeeds.
wait_for() {
    local what=$1 limit=$2 deadline next=0; shift 2
    deadline=$((SECONDS + limit))
    say "waiting (at most $limit s) for $what"
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        if [ "$SECONDS" -ge "$next" ]; then
            [ "$next" -eq 0 ] || say "  still waiting for $what ($((deadline - SECONDS)) s left)"
            next=$((SECONDS + 15))
        fi
        sleep 2
    done
}

kc() { kubectl --request-timeout=30s "$@"; }
pcmk() { docker exec "$PCMK_CONTAINER" "$@"; }

cleanup() {
    local rc=$?
    set +e
    if [ "$KEEP" = 1 ]; then
        step "KUBEMAKER_E2E_KEEP=1: leaving kind cluster $KIND_CLUSTER and container $PCMK_CONTAINER running"
        say "KUBECONFIG=$KUBECONFIG_FILE; delete with: kind delete cluster --name $KIND_CLUSTER; docker rm -f $PCMK_CONTAINER"
    else
        step "teardown"
        [ "$CREATED_KIND" = 1 ] && kind delete cluster --name "$KIND_CLUSTER"
        [ "$CREATED_PCMK" = 1 ] && docker rm -f "$PCMK_CONTAINER" >/dev/null && say "removed container $PCMK_CONTAINER"
        rm -rf "$WORK"
    fi
    if [ "$rc" -ne 0 ]; then
        printf '\n%s FAILED (exit code %s)\n' "$(ts)" "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

diagnostics() {
    printf '\n--- kubectl get pods -A -o wide\n' >&2
    kc get pods -A -o wide >&2 || true
    printf '\n--- kubectl get pacemakerclusters,remotenodes -o wide\n' >&2
    kc get pacemakerclusters,remotenodes -o wide >&2 || true
    printf '\n--- kubectl describe remotenodes\n' >&2
    kc describe remotenodes >&2 || true
    printf '\n--- controller log (tail)\n' >&2
    kc logs -n "$NAMESPACE" deploy/$RELEASE-controller --tail=40 >&2 || true
    printf '\n--- remoted logs (tail)\n' >&2
    kc logs -n "$NAMESPACE" -l app.kubernetes.io/component=remoted --tail=20 --prefix >&2 || true
    if [ "$EXTERNAL" = 0 ]; then
        printf '\n--- crm_mon -1 in %s\n' "$PCMK_CONTAINER" >&2
        pcmk crm_mon -1 >&2 || true
    fi
}

# ----------------------------------------------------------------------------------------------------
step "prerequisites"
for tool in docker kind kubectl helm base64 openssl curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (see tests/e2e/kind/README.md)"
done
timeout 30 docker info >/dev/null 2>&1 || die "docker info failed: is the Docker daemon running and may this user use it?"
if [ "$EXTERNAL" = 1 ]; then
    [ -r "${KUBEMAKER_E2E_PCMK_PASSWORD_FILE:-}" ] || die "KUBEMAKER_E2E_PCMK_ENDPOINTS is set: KUBEMAKER_E2E_PCMK_PASSWORD_FILE must name a readable file"
    [ -s "${KUBEMAKER_E2E_AUTHKEY_FILE:-}" ] || die "KUBEMAKER_E2E_PCMK_ENDPOINTS is set: KUBEMAKER_E2E_AUTHKEY_FILE must name the cluster's authkey"
fi
if [[ " $(kind get clusters 2>/dev/null | tr '\n' ' ') " == *" $KIND_CLUSTER "* ]]; then
    die "kind cluster $KIND_CLUSTER already exists; delete it (kind delete cluster --name $KIND_CLUSTER) or set KUBEMAKER_E2E_CLUSTER"
fi
say "docker $(docker version --format '{{.Server.Version}}'), $(kind version), kubectl $(kubectl version --client -o json | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -n 1), helm $(helm version --short)"

# ----------------------------------------------------------------------------------------------------
step "image $IMAGE from the Dockerfile"
docker build -t "$IMAGE" "$REPO"

step "kind cluster $KIND_CLUSTER (one control plane, one worker)"
cat >"$WORK/kind.yaml" <<'EOF'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
EOF
CREATED_KIND=1
kind create cluster --name "$KIND_CLUSTER" --config "$WORK/kind.yaml" --kubeconfig "$KUBECONFIG_FILE" --wait 180s
kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"
WORKER=$(kc get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[0].metadata.name}')
[ -n "$WORKER" ] || die "no worker node in the kind cluster"
WORKER_IP=$(kc get node "$WORKER" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
say "worker $WORKER at $WORKER_IP"

# ----------------------------------------------------------------------------------------------------
if [ "$EXTERNAL" = 0 ]; then
    step "Pacemaker cluster: container $PCMK_CONTAINER on the kind network"
    mkdir -p "$WORK/pcmk"
    cat >"$WORK/pcmk/Dockerfile" <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        pacemaker corosync pacemaker-cli-utils resource-agents procps iproute2 login \
    && rm -rf /var/lib/apt/lists/*
COPY corosync.conf /etc/corosync/corosync.conf
COPY entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/bin/bash", "/entrypoint.sh"]
EOF
    cat >"$WORK/pcmk/corosync.conf" <<'EOF'
totem {
	version: 2
	cluster_name: kubemaker-e2e
	crypto_cipher: none
	crypto_hash: none
}
logging {
	to_stderr: yes
	to_logfile: no
	to_syslog: no
}
quorum {
	provider: corosync_votequorum
}
nodelist {
	node {
		name: node1
		nodeid: 1
		ring0_addr: 127.0.0.1
	}
}
EOF
    # A one-node cluster; remote-tls-port is a CIB root attribute read only when pacemaker-based
    # starts, so: start, set it, make sure it is on disk, restart Pacemaker.
    cat >"$WORK/pcmk/entrypoint.sh" <<'EOF'
set -euo pipefail
log() { echo "[pcmk-entrypoint] $*"; }
dc() { local x; x=$(timeout 15 crm_mon -1 --output-as=xml 2>/dev/null || true); [[ "$x" == *'<current_dc present="true"'* ]]; }
wait_dc() {
    for _ in $(seq 1 120); do dc && return 0; sleep 1; done
    log "no DC after 120 s"; exit 1
}
start_pacemaker() { pacemakerd -f & PCMK_PID=$!; wait_dc; }
stop_all() {
    log "stopping"
    kill -TERM "$PCMK_PID" 2>/dev/null || true; wait "$PCMK_PID" 2>/dev/null || true
    kill -TERM "$CS_PID" 2>/dev/null || true; wait "$CS_PID" 2>/dev/null || true
    exit 0
}
trap stop_all TERM INT
corosync -f & CS_PID=$!
for _ in $(seq 1 100); do timeout 5 corosync-cfgtool -s >/dev/null 2>&1 && break; sleep 0.2; done
start_pacemaker
crm_attribute --type crm_config --name stonith-enabled --update false
crm_attribute --type crm_config --name no-quorum-policy --update ignore
cibadmin --modify --xml-text '<cib remote-tls-port="5989"/>'
crm_attribute --type crm_config --name kubemaker-e2e-write --update true
crm_attribute --type crm_config --name kubemaker-e2e-write --delete
for _ in $(seq 1 100); do
    root=$(head -c 4096 /var/lib/pacemaker/cib/cib.xml 2>/dev/null || true)
    [[ "${root%%>*}" == *'remote-tls-port="5989"'* ]] && break
    sleep 0.2
done
log "restarting Pacemaker so that pacemaker-based listens on 5989"
kill -TERM "$PCMK_PID"; wait "$PCMK_PID" || true
start_pacemaker
for _ in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5989) 2>/dev/null && break; sleep 1; done
(exec 3<>/dev/tcp/127.0.0.1/5989) 2>/dev/null || { log "port 5989 not open"; exit 1; }
touch /run/kubemaker-e2e-ready
log "ready"
wait "$PCMK_PID"
EOF
    docker build -t "$PCMK_IMAGE" "$WORK/pcmk"
    docker rm -f "$PCMK_CONTAINER" >/dev/null 2>&1 || true
    CREATED_PCMK=1
    # privileged: corosync locks memory and raises its scheduling priority; Pacemaker's daemons use
    # shared memory for IPC. It is a throwaway container on a test machine.
    docker run -d --name "$PCMK_CONTAINER" --hostname node1 --network kind --privileged "$PCMK_IMAGE" >/dev/null
    if ! wait_for "Pacemaker in $PCMK_CONTAINER (DC elected, port 5989 open)" 300 pcmk test -f /run/kubemaker-e2e-ready; then
        docker logs --tail 40 "$PCMK_CONTAINER" >&2 || true
        die "the Pacemaker container did not come up"
    fi
    PCMK_IP=$(docker inspect -f '{{(index .NetworkSettings.Networks "kind").IPAddress}}' "$PCMK_CONTAINER")
    ENDPOINTS="$PCMK_IP:5989"
    openssl rand -hex 16 >"$WORK/password"
    chmod 0600 "$WORK/password"
    printf 'hacluster:%s\n' "$(cat "$WORK/password")" | docker exec -i "$PCMK_CONTAINER" chpasswd
    PASSWORD_FILE=$WORK/password
    say "Pacemaker at $ENDPOINTS; hacluster has a random password"
else
    step "Pacemaker cluster: external, $KUBEMAKER_E2E_PCMK_ENDPOINTS"
    ENDPOINTS=$KUBEMAKER_E2E_PCMK_ENDPOINTS
    PASSWORD_FILE=$KUBEMAKER_E2E_PCMK_PASSWORD_FILE
fi

# ----------------------------------------------------------------------------------------------------
step "helm install $RELEASE charts/kubemaker -n $NAMESPACE --create-namespace"
helm install "$RELEASE" "$REPO/charts/kubemaker" -n "$NAMESPACE" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never

step "Secrets and PacemakerCluster $CLUSTER_NAME"
kc create secret generic "$CREDENTIALS_SECRET" -n "$NAMESPACE" --from-literal=username=hacluster \
    --from-literal=password="$(tr -d '\n' <"$PASSWORD_FILE")" >/dev/null
if [ "$EXTERNAL" = 1 ]; then
    say "adopting the cluster's authkey: Secret $AUTHKEY_SECRET from $KUBEMAKER_E2E_AUTHKEY_FILE"
    kc create secret generic "$AUTHKEY_SECRET" -n "$NAMESPACE" --from-file=authkey="$KUBEMAKER_E2E_AUTHKEY_FILE" >/dev/null
fi
{
    printf 'apiVersion: kubemaker.io/v1alpha1\nkind: PacemakerCluster\nmetadata:\n  name: %s\nspec:\n' "$CLUSTER_NAME"
    printf '  tlsMode: anonymous\n  credentialsSecretRef:\n    name: %s\n  authkeySecretName: %s\n' "$CREDENTIALS_SECRET" "$AUTHKEY_SECRET"
    printf '  remoteNodeDefaults:\n    port: 3121\n  endpoints:\n'
    IFS=, read -ra eps <<<"$ENDPOINTS"
    for ep in "${eps[@]}"; do printf '    - host: %s\n      port: %s\n' "${ep%:*}" "${ep##*:}"; done
} | kc apply -f -

step "controller Deployment"
if ! kc rollout status -n "$NAMESPACE" deploy/$RELEASE-controller --timeout=180s; then
    fail "the controller Deployment is not available after 180 s (its readinessProbe is /readyz)"
fi
pf_ok=0
kc port-forward -n "$NAMESPACE" deploy/$RELEASE-controller 18080:metrics >"$WORK/port-forward.log" 2>&1 &
PF_PID=$!
for _ in $(seq 1 20); do
    if [ "$(curl -s --max-time 2 http://127.0.0.1:18080/healthz 2>/dev/null || true)" = ok ]; then pf_ok=1; break; fi
    sleep 1
done
if [ "$pf_ok" = 1 ]; then
    say "/healthz ok; /readyz: $(curl -s --max-time 2 http://127.0.0.1:18080/readyz || true)"
    curl -s --max-time 2 http://127.0.0.1:18080/metrics | grep -E '^kubemaker_(leader|cib_connected)' || fail "no kubemaker_leader / kubemaker_cib_connected metrics"
else
    fail "/healthz not reachable through kubectl port-forward on port metrics"
fi
kill "$PF_PID" 2>/dev/null || true

if ! wait_for "the authkey Secret $AUTHKEY_SECRET" 120 kc get secret "$AUTHKEY_SECRET" -n "$NAMESPACE"; then
    diagnostics; die "no authkey Secret"
fi
if [ "$EXTERNAL" = 0 ]; then
    say "installing the controller's key as /etc/pacemaker/authkey in $PCMK_CONTAINER"
    kc get secret "$AUTHKEY_SECRET" -n "$NAMESPACE" -o jsonpath='{.data.authkey}' | base64 -d |
        docker exec -i "$PCMK_CONTAINER" sh -c 'cat >/etc/pacemaker/authkey && chown hacluster:haclient /etc/pacemaker/authkey && chmod 0640 /etc/pacemaker/authkey'
fi
if ! wait_for "PacemakerCluster $CLUSTER_NAME Connection=Connected" 120 \
    sh -c "[ \"\$(kubectl get pacemakercluster $CLUSTER_NAME -o jsonpath='{.status.connection}')\" = Connected ]"; then
    diagnostics; die "the controller did not connect to the CIB at $ENDPOINTS"
fi

# ----------------------------------------------------------------------------------------------------
step "remoted on $WORKER and RemoteNode $WORKER (from examples/remotenode-k8s-worker.yaml)"
kc label node "$WORKER" kubemaker.io/remote-node=true --overwrite
if ! kc rollout status -n "$NAMESPACE" ds/$RELEASE-remoted --timeout=180s; then
    diagnostics; die "the remoted DaemonSet did not become ready on $WORKER"
fi
# The example's name, node and cluster become this run's; the address comes from the Node's InternalIP.
sed -e "s/^  name: worker2$/  name: $WORKER/" -e "s/^  kubernetesNode: worker2$/  kubernetesNode: $WORKER/" \
    -e "s/^    name: production$/    name: $CLUSTER_NAME/" -e '/^  address:/d' \
    "$REPO/examples/remotenode-k8s-worker.yaml" >"$WORK/remotenode.yaml"
grep -q "name: $WORKER" "$WORK/remotenode.yaml" || die "examples/remotenode-k8s-worker.yaml changed shape; update the sed above"
kc apply -f "$WORK/remotenode.yaml"

step "waiting (at most $READY_TIMEOUT s) for RemoteNode $WORKER to become Ready"
if kc wait --for=condition=Ready "remotenode/$WORKER" --timeout="${READY_TIMEOUT}s"; then
    say "Ready"
else
    diagnostics
    die "RemoteNode $WORKER is not Ready after $READY_TIMEOUT s"
fi
kc get remotenodes -o wide
if [ "$EXTERNAL" = 0 ]; then
    pcmk crm_mon -1
    mon=$(pcmk crm_mon -1 --output-as=xml || true)
    if grep -o "<node name=\"$WORKER\"[^>]*>" <<<"$mon" | grep -q 'online="true"'; then
        say "crm_mon: $WORKER is online"
    else
        fail "crm_mon does not show $WORKER online"
    fi
fi
[ "$(kc get remotenode "$WORKER" -o jsonpath='{.status.address}')" = "$WORKER_IP" ] ||
    fail "status.address is not the Node's InternalIP $WORKER_IP"

step "delete RemoteNode $WORKER: the finalizer takes it out of the CIB"
kc delete remotenode "$WORKER" --timeout=180s || fail "RemoteNode $WORKER was not deleted within 180 s"
if [ "$EXTERNAL" = 0 ]; then
    resources=$(pcmk cibadmin -Q -o resources || true)
    if [[ "$resources" == *"id=\"$WORKER\""* ]]; then
        fail "the connection resource $WORKER is still in the CIB after the RemoteNode was deleted"
    else
        say "the CIB has no resource $WORKER any more"
    fi
fi

# ----------------------------------------------------------------------------------------------------
if [ "${#FAILURES[@]}" -gt 0 ]; then
    printf '\n%s %d check(s) failed:\n' "$(ts)" "${#FAILURES[@]}" >&2
    printf '  - %s\n' "${FAILURES[@]}" >&2
    exit 1
fi
printf '\n%s all checks passed\n' "$(ts)"
