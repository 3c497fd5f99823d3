#!/usr/bin/env bash
# A throwaway Pacemaker cluster for the integration tests, of the generation that KUBEMAKER_PACEMAKER
# names:
#   unset or 2.1.5   Debian 12's packages installed on this machine, node1 on 127.0.0.1;
#   3.0.0 / 3.0.3    Debian trixie's / sid's packages from a cached root (scripts/pacemaker-root.sh),
#                    node1 in namespaces of its own at 10.249.30.2 / 10.249.33.2 (scripts/lib/pcmk-node.sh).
# Only one generation's one-node cluster runs at a time: `start` first stops the others this script
# started.
#
# KUBEMAKER_CLUSTER_NODES=2 (3.x only) is another cluster of that generation, beside the one-node
# one (it stops nothing else): node1 and node2, each in namespaces of its own (3.0.0: 10.249.40.2 and
# 10.249.41.2; 3.0.3: 10.249.43.2 and 10.249.44.2), corosync with both members (two_node: 1), for
# the node-loss tests; state in /var/tmp/kubemaker-test/cluster-<version>-2nodes/node<N>/.
#
#   scripts/test-cluster.sh start    start it (or reuse the one this script started before)
#   scripts/test-cluster.sh stop     stop it (only the processes this script started)
#   scripts/test-cluster.sh status   print whether it runs and who is DC
#   scripts/test-cluster.sh lose N   two-node only: node N fails like a power cut (its link down,
#                                    then all its processes SIGKILLed)
#   scripts/test-cluster.sh restore N  two-node only: start node N again; returns once it rejoined
#
# KUBEMAKER_CLUSTER_ENV="PCMK_x=... PCMK_y=..." (3.x only) starts pacemakerd with those settings, as
# /etc/default/pacemaker would on a real node; a running cluster with other settings is restarted.
#
# State lives in /var/tmp/kubemaker-test/cluster/ (cluster-<version>/ for 3.x): corosync.pid and pacemakerd.pid ("<pid> <starttime>",
# the start time from /proc/<pid>/stat guards against pid reuse), corosync.log, pacemakerd.log.
# Daemons that this script did not start are never signalled: `start` refuses to run beside them.
#
# start/stop/lose/restore serialize with the test harness through an flock on
# /var/tmp/kubemaker-test/cluster.lock, so `stop` never pulls the cluster from under a running test.
# The Rust harness holds that lock itself and sets KUBEMAKER_CLUSTER_LOCKED=1 when it calls this script.
set -euo pipefail

BASE_DIR=/var/tmp/kubemaker-test
GEN=${KUBEMAKER_PACEMAKER:-2.1.5}
CLUSTER_NODES=${KUBEMAKER_CLUSTER_NODES:-1}
ALL_GENERATIONS="2.1.5 3.0.0 3.0.3"
# state_dir VERSION [NODES]: where a generation's cluster (of NODES nodes, default 1) keeps its pid
# files and logs.
state_dir() {
    if [ "$1" = 2.1.5 ]; then
        echo "$BASE_DIR/cluster"
    elif [ "${2:-1}" = 1 ]; then
        echo "$BASE_DIR/cluster-$1"
    else
        echo "$BASE_DIR/cluster-$1-${2}nodes"
    fi
}
case "$GEN" in
    2.1.5) ;;
    3.0.0) SUITE=trixie SUBNET=30 ;;
    3.0.3) SUITE=sid SUBNET=33 ;;
    *) printf '[test-cluster] ERROR: KUBEMAKER_PACEMAKER=%s: not one of %s\n' "$GEN" "$ALL_GENERATIONS" >&2; exit 2 ;;
esac
case "$CLUSTER_NODES" in
    1) ;;
    2) [ "$GEN" != 2.1.5 ] || { printf '[test-cluster] ERROR: KUBEMAKER_CLUSTER_NODES=2 is for the 3.x generations only\n' >&2; exit 2; } ;;
    *) printf '[test-cluster] ERROR: KUBEMAKER_CLUSTER_NODES=%s: 1 or 2\n' "$CLUSTER_NODES" >&2; exit 2 ;;
esac
STATE_DIR=$(state_dir "$GEN" "$CLUSTER_NODES")
LOCK_FILE=$BASE_DIR/cluster.lock
COROSYNC_CONF=/etc/corosync/corosync.conf
START_TIMEOUT=${KUBEMAKER_CLUSTER_START_TIMEOUT:-120}
STOP_TIMEOUT=${KUBEMAKER_CLUSTER_STOP_TIMEOUT:-90}

say() { printf '[test-cluster] %s\n' "$*"; }
die() { printf '[test-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
mkdir -p "$STATE_DIR"

take_lock() {
    if [ "${KUBEMAKER_CLUSTER_LOCKED:-}" = 1 ]; then
        return 0
    fi
    exec 9>>"$LOCK_FILE"
    if ! flock -n 9; then
        say "waiting (at most 600 s) for $LOCK_FILE: a test is using the cluster"
        flock -w 600 9 || die "could not lock $LOCK_FILE within 600 s"
    fi
}

# shellcheck source=scripts/lib/procs.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"

# The directory of the node lib/pcmk-node.sh selects (3.x); none for 2.1.5.
NODE_STATE=
# The pid recorded in <state>/<name>.pid if that process is still the one we started (<state> is
# $STATE_DIR, or for 3.x the directory of the node lib/pcmk-node.sh selected).
our_pid() { pid_if_ours "${NODE_STATE:-$STATE_DIR}/$1.pid" "$1"; }

# cluster_tool CMD...: a Pacemaker tool against this generation's cluster, killed after
# TOOL_TIMEOUT (60) s; for 3.x inside the node, with the root's tools.
cluster_tool() {
    if [ "$GEN" = 2.1.5 ]; then
        timeout "${TOOL_TIMEOUT:-60}" "$@"
    else
        in_node timeout "${TOOL_TIMEOUT:-60}" "$@"
    fi
}
if [ "$GEN" != 2.1.5 ]; then
    # shellcheck source=scripts/lib/pcmk-node.sh
    source "$(dirname "${BASH_SOURCE[0]}")/lib/pcmk-node.sh"
fi

crm_mon_xml() { TOOL_TIMEOUT=15 cluster_tool crm_mon -1 --output-as=xml 2>/dev/null; }

dc_present() { crm_mon_xml | grep -q '<current_dc present="true"'; }

# spawn_daemon (lib/procs.sh) starts corosync and pacemakerd detached and records their pids.

# corosync_conf COMMENT CLUSTER_NAME ADDR...: the corosync.conf of a cluster without crypto, logging
# to stderr, whose members node1, node2, ... have the addresses ADDR... in that order; with two
# members, two_node: 1 (quorum with one of them left). Used for the host's 2.1.5 cluster and the 3.x
# clusters of lib/pcmk-node.sh.
corosync_conf() {
    local comment=$1 cluster_name=$2 n=0 addr two_node=""
    shift 2
    [ "$#" -ne 2 ] || two_node=$'\n\ttwo_node: 1'
    cat <<CONF
# Written by kubemaker's scripts/test-cluster.sh: $comment.
totem {
	version: 2
	cluster_name: $cluster_name
	crypto_cipher: none
	crypto_hash: none
}
logging {
	to_stderr: yes
	to_logfile: no
	to_syslog: no
}
quorum {
	provider: corosync_votequorum$two_node
}
nodelist {
CONF
    for addr in "$@"; do
        n=$((n + 1))
        printf '\tnode {\n\t\tname: node%s\n\t\tnodeid: %s\n\t\tring0_addr: %s\n\t}\n' "$n" "$n" "$addr"
    done
    printf '}\n'
}

# The package's corosync.conf is exactly what we want: one node "node1" on 127.0.0.1, no crypto.
corosync_conf_ok() {
    [ -f "$COROSYNC_CONF" ] || return 1
    local active
    active=$(sed -e 's/#.*//' "$COROSYNC_CONF")
    [ "$(grep -c 'ring0_addr:' <<<"$active")" -eq 1 ] || return 1
    grep -Eq 'ring0_addr:[[:space:]]*127\.0\.0\.1[[:space:]]*$' <<<"$active" || return 1
    grep -Eq 'name:[[:space:]]*node1[[:space:]]*$' <<<"$active" || return 1
}

ensure_corosync_conf() {
    if corosync_conf_ok; then
        return 0
    fi
    if [ -n "$(pids_named corosync)" ] || [ -n "$(pids_named pacemakerd)" ]; then
        die "$COROSYNC_CONF is not the one-node test config, and a cluster is running: not touching it"
    fi
    if [ -f "$COROSYNC_CONF" ]; then
        local backup
        backup="$COROSYNC_CONF.kubemaker-backup.$(date +%Y%m%d%H%M%S)"
        cp -p "$COROSYNC_CONF" "$backup"
        say "saved the existing $COROSYNC_CONF as $backup"
    fi
    mkdir -p "$(dirname "$COROSYNC_CONF")"
    corosync_conf "a one-node test cluster on loopback" kubemaker-test 127.0.0.1 >"$COROSYNC_CONF"
    say "wrote a one-node $COROSYNC_CONF"
}

# Corosync needs /etc/corosync/authkey only when totem encryption or hashing is on
# (the package's config has crypto_cipher/crypto_hash "none").
ensure_corosync_authkey() {
    local crypto
    crypto=$(sed -e 's/#.*//' "$COROSYNC_CONF" |
        grep -E '^[[:space:]]*(crypto_cipher|crypto_hash|secauth):' |
        grep -Ev ':[[:space:]]*(none|off)[[:space:]]*$' || true)
    if [ -n "$crypto" ] && [ ! -s /etc/corosync/authkey ]; then
        say "corosync.conf enables crypto: generating /etc/corosync/authkey"
        corosync-keygen -l >/dev/null
    fi
}

cleanup_stale() {
    local name
    for name in corosync pacemakerd; do
        if [ -f "$STATE_DIR/$name.pid" ] && ! our_pid "$name" >/dev/null; then
            say "removing stale $STATE_DIR/$name.pid (process gone)"
            rm -f "$STATE_DIR/$name.pid"
        fi
        rm -f "$STATE_DIR/$name.pid.tmp"
    done
}

set_cluster_options() {
    cluster_tool crm_attribute --type crm_config --name stonith-enabled --update false >/dev/null
    cluster_tool crm_attribute --type crm_config --name no-quorum-policy --update ignore >/dev/null
}

wait_for_dc() {
    local deadline=$((SECONDS + START_TIMEOUT)) next_note=$((SECONDS + 10))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if dc_present; then
            return 0
        fi
        our_pid corosync >/dev/null || { tail -n 30 "$STATE_DIR/corosync.log" >&2; die "corosync exited (log above)"; }
        our_pid pacemakerd >/dev/null || { tail -n 30 "$STATE_DIR/pacemakerd.log" >&2; die "pacemakerd exited (log above)"; }
        if [ "$SECONDS" -ge "$next_note" ]; then
            say "still waiting for a DC ($((deadline - SECONDS)) s left)"
            next_note=$((SECONDS + 10))
        fi
        sleep 1
    done
    die "no DC after ${START_TIMEOUT} s; see $STATE_DIR/corosync.log, $STATE_DIR/pacemakerd.log, /var/log/pacemaker/pacemaker.log"
}

# Stops the clusters of the other generations that this script started (one runs at a time).
stop_other_generations() {
    local g
    for g in $ALL_GENERATIONS; do
        [ "$g" != "$GEN" ] || continue
        compgen -G "$(state_dir "$g")/*.pid" >/dev/null || continue
        say "stopping the $g test cluster first (one generation at a time)"
        KUBEMAKER_PACEMAKER=$g KUBEMAKER_CLUSTER_LOCKED=1 bash "${BASH_SOURCE[0]}" stop
    done
}

# Test addresses no test host holds (10.250.N.2 and 10.251.N.2 of tests/support/netns.rs, the 3.x nodes'
# 10.249.N.2) fail at once with "no route to host" and never leave the machine by the default
# route; the hosts' and nodes' own /24 routes are more specific.
fence_test_networks() {
    local net
    for net in 10.250.0.0/15 10.249.0.0/16; do
        ip route replace unreachable "$net" || die "cannot add the unreachable route for $net"
    done
}

cmd_start() {
    take_lock
    fence_test_networks
    # The two-node cluster runs beside whatever else runs.
    [ "$CLUSTER_NODES" != 1 ] || stop_other_generations
    cleanup_stale
    if [ "$GEN" != 2.1.5 ]; then
        node_start
        return
    fi
    [ -z "${KUBEMAKER_CLUSTER_ENV:-}" ] || die "KUBEMAKER_CLUSTER_ENV (PCMK_* settings) is for the 3.x test clusters only"
    local cs_pid pm_pid
    cs_pid=$(our_pid corosync || true)
    pm_pid=$(our_pid pacemakerd || true)

    # Refuse to run beside daemons we did not start.
    local foreign_cs foreign_pm
    foreign_cs=$(pids_named corosync $cs_pid)
    foreign_pm=$(pids_named pacemakerd $pm_pid)
    if [ -n "$foreign_cs" ] || [ -n "$foreign_pm" ]; then
        die "a cluster not started by this script is running (corosync pids: ${foreign_cs:-none}; pacemakerd pids: ${foreign_pm:-none}). Stop it yourself; this script never signals processes it did not start."
    fi

    if [ -n "$cs_pid" ] && [ -n "$pm_pid" ] && dc_present; then
        set_cluster_options
        say "reusing running test cluster (corosync $cs_pid, pacemakerd $pm_pid)"
        return 0
    fi

    if [ -z "$pm_pid" ]; then
        local orphans
        orphans=$(pids_named 'pacemaker-(based|fence|execd|attrd|sched|contr)' | tr '\n' ' ')
        if [ -n "$orphans" ]; then
            die "Pacemaker subdaemons run without our pacemakerd (pids: $orphans), probably left by a crashed run or started by someone else. Stop them yourself (by pid) and retry."
        fi
    fi

    ensure_corosync_conf
    ensure_corosync_authkey
    id hacluster >/dev/null 2>&1 || die "user hacluster is missing; install the pacemaker package"

    local t0=$SECONDS
    if [ -z "$cs_pid" ]; then
        say "starting corosync (log $STATE_DIR/corosync.log)"
        printf '=== %s corosync -f\n' "$(date -Is)" >>"$STATE_DIR/corosync.log"
        spawn_daemon "$STATE_DIR/corosync.pid" "$STATE_DIR/corosync.log" corosync -f
        # pacemakerd needs corosync's CPG; give it a moment (bounded) to come up.
        for _ in $(seq 1 100); do
            timeout 5 corosync-cfgtool -s >/dev/null 2>&1 && break
            our_pid corosync >/dev/null || { tail -n 30 "$STATE_DIR/corosync.log" >&2; die "corosync exited (log above)"; }
            sleep 0.2
        done
    fi
    if [ -z "$pm_pid" ]; then
        say "starting pacemakerd (log $STATE_DIR/pacemakerd.log; the daemons also log to /var/log/pacemaker/pacemaker.log)"
        printf '=== %s pacemakerd -f\n' "$(date -Is)" >>"$STATE_DIR/pacemakerd.log"
        spawn_daemon "$STATE_DIR/pacemakerd.pid" "$STATE_DIR/pacemakerd.log" pacemakerd -f
        # A fresh controller has no cached Pacemaker Remote key (see tests/support/keys.rs).
        rm -f "$STATE_DIR/remote-key-read"
    fi
    say "waiting (at most ${START_TIMEOUT} s) for a DC"
    wait_for_dc
    set_cluster_options
    say "cluster up after $((SECONDS - t0)) s (corosync $(our_pid corosync), pacemakerd $(our_pid pacemakerd))"
}

cmd_stop() {
    take_lock
    if [ "$GEN" != 2.1.5 ]; then
        node_stop
        return
    fi
    local pm_pid cs_pid children
    pm_pid=$(our_pid pacemakerd || true)
    if [ -n "$pm_pid" ]; then
        # The subdaemons pacemakerd spawned are ours too; remember them in case pacemakerd needs a KILL.
        children=$(pgrep -P "$pm_pid" -d ' ' || true)
        say "stopping pacemakerd ($pm_pid)"
        stop_pid pacemakerd "$pm_pid" "$STOP_TIMEOUT"
        local c
        for c in $children; do
            if kill -0 "$c" 2>/dev/null && [ "$(ps -o ppid= -p "$c" | tr -d ' ')" != "$pm_pid" ]; then
                stop_pid "$(cat "/proc/$c/comm" 2>/dev/null || echo subdaemon)" "$c" 10
            fi
        done
    fi
    rm -f "$STATE_DIR/pacemakerd.pid"
    cs_pid=$(our_pid corosync || true)
    if [ -n "$cs_pid" ]; then
        say "stopping corosync ($cs_pid)"
        stop_pid corosync "$cs_pid" 30
    fi
    rm -f "$STATE_DIR/corosync.pid" "$STATE_DIR/remote-key-read"
    say "stopped"
}

# lose N / restore N: the two-node cluster's node N fails abruptly / comes back (lib/pcmk-node.sh).
cmd_node() {
    local action=$1 n=${2:-}
    [ "$CLUSTER_NODES" = 2 ] || die "$action is for the two-node cluster (KUBEMAKER_CLUSTER_NODES=2)"
    [[ "$n" =~ ^[12]$ ]] || die "usage: $0 $action 1|2"
    take_lock
    if [ "$action" = lose ]; then node_lose "$n"; else node_restore "$n"; fi
}

cmd_status() {
    if [ "$GEN" != 2.1.5 ]; then
        local n dc
        for n in $NODE_NUMBERS; do
            select_node "$n"
            printf '%s (%s): corosync %s, pacemakerd %s\n' "$NODE_NAME" "$NODE_ADDR" \
                "$(our_pid corosync || echo 'not running (ours)')" "$(our_pid pacemakerd || echo 'not running (ours)')"
        done
        printf 'generation: %s, %s node(s)\n' "$GEN" "$CLUSTER_NODES"
        for n in $NODE_NUMBERS; do
            select_node "$n"
            our_pid pacemakerd >/dev/null || continue
            dc=$(crm_mon_xml | grep -o '<current_dc present="true"[^>]*' | grep -o 'name="[^"]*"' || true)
            printf 'DC:         %s (seen from %s)\n' "${dc:-none yet}" "$NODE_NAME"
            [ -n "$dc" ] && return 0
        done
        return 3
    fi
    local cs_pid pm_pid
    cs_pid=$(our_pid corosync || true)
    pm_pid=$(our_pid pacemakerd || true)
    printf 'corosync:   %s\n' "${cs_pid:-not running (ours)}"
    printf 'pacemakerd: %s\n' "${pm_pid:-not running (ours)}"
    printf 'generation: %s\n' "$GEN"
    local foreign
    [ "$GEN" = 2.1.5 ] || foreign=""
    [ "$GEN" != 2.1.5 ] || foreign=$(pids_named corosync $cs_pid; pids_named pacemakerd $pm_pid)
    [ -z "$foreign" ] || printf 'foreign cluster processes: %s\n' "$(echo $foreign)"
    if [ -n "$cs_pid" ] && [ -n "$pm_pid" ]; then
        local dc
        dc=$(crm_mon_xml | grep -o '<current_dc present="true"[^>]*' | grep -o 'name="[^"]*"' || true)
        printf 'DC:         %s\n' "${dc:-none yet}"
        [ -n "$dc" ] && return 0
    fi
    return 3
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    lose | restore) cmd_node "$1" "${2:-}" ;;
    *) echo "usage: $0 start|stop|status|lose N|restore N" >&2; exit 2 ;;
esac
