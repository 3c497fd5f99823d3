# shellcheck shell=bash
# Process helpers shared by scripts/test-cluster.sh, scripts/test-apiserver.sh, scripts/local-k8s.sh
# and scripts/demo.sh.
# Source it after defining `say`. Pid files hold "<pid> <starttime>", so a recycled pid is never
# mistaken for a process a script started.

# Field 22 of /proc/<pid>/stat (start time in clock ticks). The command name (field 2) may contain
# spaces, so cut everything up to the last ')'; the 20th field after that is field 22.
proc_starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    # shellcheck disable=SC2086 # split the fields on purpose
    set -- $stat
    printf '%s\n' "${20}"
}

# pid_if_ours PIDFILE [COMM]: prints the pid in PIDFILE if that process still runs with the recorded
# start time (and, when given, the command name COMM).
pid_if_ours() {
    local file=$1 comm=${2:-} pid start
    [ -f "$file" ] || return 1
    read -r pid start <"$file" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    if [ -n "$comm" ]; then
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
    fi
    [ "$(proc_starttime "$pid" 2>/dev/null)" = "$start" ] || return 1
    printf '%s\n' "$pid"
}

# pids_named REGEX [EXCEPT_PID...]: pids whose command name (/proc/<pid>/comm, at most 15
# characters) matches the extended regex exactly, in this network namespace only: Pacemaker's IPC
# (abstract unix sockets) and loopback ports are per namespace, so daemons someone runs in a
# namespace of their own do not clash with ours.
MY_NETNS=$(readlink /proc/$$/ns/net)
pids_named() {
    local re=$1; shift
    local f p comm
    for f in /proc/[0-9]*/comm; do
        p=${f#/proc/}; p=${p%/comm}
        comm=$(cat "$f" 2>/dev/null) || continue
        [[ "$comm" =~ ^($re)$ ]] || continue
        [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$MY_NETNS" ] || continue
        case " $* " in *" $p "*) continue ;; esac
        printf '%s\n' "$p"
    done
}

# stop_pid NAME PID LIMIT: TERM, wait up to LIMIT seconds, then KILL one pid we started.
stop_pid() {
    local name=$1 pid=$2 limit=$3 deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$((SECONDS + limit))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name ($pid) did not stop within $limit s: KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
}

# spawn_daemon PIDFILE LOG CMD...: starts CMD detached (own session), output appended to LOG, and
# records "<pid> <starttime>" in PIDFILE. The inner shell writes its own pid and then execs CMD, so
# the pid is the daemon's. SPAWN_COMM names the process to expect when CMD execs another program
# (e.g. `nsenter ... containerd`); by default it is CMD's own name. Needs `die`.
spawn_daemon() {
    local pidfile=$1 log=$2 name; shift 2
    name=${SPAWN_COMM:-$(basename "$1")}; name=${name:0:15}   # comm holds at most 15 characters
    : >"$pidfile.tmp"
    printf '=== %s %s\n' "$(date -Is)" "$*" >>"$log"
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile.tmp" "$@" </dev/null >>"$log" 2>&1 7>&- 8>&- 9>&- &
    local pid="" i
    for i in $(seq 1 50); do
        read -r pid <"$pidfile.tmp" 2>/dev/null || true
        [ -n "$pid" ] && break
        sleep 0.1
    done
    [ -n "$pid" ] || die "could not start $1"
    for i in $(seq 1 50); do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] && break
        sleep 0.1
    done
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || { tail -n 20 "$log" >&2; die "$name exited at once (log above)"; }
    printf '%s %s\n' "$pid" "$(proc_starttime "$pid" || echo 0)" >"$pidfile"
    rm -f "$pidfile.tmp"
}
