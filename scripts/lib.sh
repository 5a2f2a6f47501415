# shellcheck shell=bash
# Shared helpers for herd's benchmark scripts. Source it; don't run it.
#
# Servers are tracked by NAME in the associative arrays below. A server is
# started with `launch`, which puts it in its own session/process group
# (setsid), so `stop_server` can take down the master and every worker it
# forked, by id, without touching anything else on the machine.

# NAME -> pid of the server's root process (the master); also its pgid.
declare -gA SERVER_PID=()
# NAME -> TCP port it listens on (127.0.0.1).
declare -gA SERVER_PORT=()
# NAME -> file with the server's stdout+stderr.
declare -gA SERVER_LOG=()

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# Sleep that accepts fractions (coreutils sleep does).
nap() { sleep "${1:-0.05}"; }

# Milliseconds since the epoch, for deadlines.
now_ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }

# alive PID: true if PID exists and is not a zombie. (`kill -0` succeeds on
# zombies, and an exited child of ours stays a zombie until we `wait` it.)
alive() {
    local stat
    stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $stat && $stat != Z* ]]
}

# free_port: a TCP port on 127.0.0.1 that the kernel says is free right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# launch NAME LOGFILE CMD...: start CMD in the background in its own session,
# output to LOGFILE, and record it as server NAME.
launch() {
    local name=$1 logfile=$2
    shift 2
    # Without job control a background child is not a group leader, so setsid
    # execs CMD in place: $! is the server's pid and its pgid.
    setsid "$@" </dev/null >"$logfile" 2>&1 &
    SERVER_PID[$name]=$!
    SERVER_LOG[$name]=$logfile
    log "$name: started pid ${SERVER_PID[$name]}: $*"
}

# tree_pids PID: PID and all its descendants (by parent pid), one per line.
tree_pids() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            keep[root] = 1; n = 1
            # Repeat until no new descendant is found (tree depth is small).
            do {
                added = 0
                for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; added++ }
            } while (added)
            for (p in keep) if (p in parent) print p
        }'
}

# tree_rss_kb PID: sum of VmRSS (kB) over PID and its descendants.
# Note: a plain sum counts pages shared between processes (the binary, and
# copy-on-write pages of forked workers) once per process.
tree_rss_kb() {
    local pid total=0 kb
    for pid in $(tree_pids "$1"); do
        # A process may exit between listing and reading; count it as 0.
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# tree_cpu_ticks PID: user + system CPU time, in clock ticks, over PID and its
# descendants (fields 14 and 15 of /proc/PID/stat; threads included).
tree_cpu_ticks() {
    local pid total=0 t
    for pid in $(tree_pids "$1"); do
        # The command name (field 2) may hold spaces: count fields after its ')'.
        t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true)
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# group_alive PGID: true if any live (non-zombie) process is in the group.
group_alive() {
    local pid
    for pid in $(pgrep -g "$1" 2>/dev/null || true); do
        alive "$pid" && return 0
    done
    return 1
}

# wait_port NAME PORT [TIMEOUT_S]: poll until 127.0.0.1:PORT accepts a TCP
# connection; fail early if the server died, or at the deadline.
wait_port() {
    local name=$1 port=$2 timeout=${3:-10}
    local pid=${SERVER_PID[$name]} deadline
    deadline=$(($(now_ms) + timeout * 1000))
    while :; do
        # bash's /dev/tcp: the subshell opens (connects) and closes fd 3.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        alive "$pid" || { show_log "$name"; die "$name exited before accepting on port $port"; }
        (($(now_ms) < deadline)) || { show_log "$name"; die "$name: port $port not accepting after ${timeout}s"; }
        nap 0.05
    done
}

# wait_log_port NAME REGEX [TIMEOUT_S]: poll the server's log until a line
# matches REGEX (an ERE whose match ends in :PORT), then print PORT.
wait_log_port() {
    local name=$1 regex=$2 timeout=${3:-10}
    local pid=${SERVER_PID[$name]} logfile=${SERVER_LOG[$name]} deadline m
    deadline=$(($(now_ms) + timeout * 1000))
    while :; do
        m=$(grep -oE "$regex" "$logfile" 2>/dev/null | tail -n1 || true)
        if [[ $m =~ :([0-9]+)$ ]]; then
            echo "${BASH_REMATCH[1]}"
            return 0
        fi
        alive "$pid" || { show_log "$name"; die "$name exited before logging its port"; }
        (($(now_ms) < deadline)) || { show_log "$name"; die "$name: no line matching '$regex' after ${timeout}s"; }
        nap 0.05
    done
}

# check_hello PORT [EXPECTED_BODY]: one plain GET (with curl, which decodes
# chunked bodies: Node's writeHead()+end() answers chunked); the status must
# be 200 and the body EXPECTED_BODY ("hello world" by default).
check_hello() {
    local port=$1 want=${2:-hello world} resp status body
    resp=$(curl -sS --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$port/") ||
        die "port $port: GET / failed"
    status=${resp##*$'\n'}
    body=${resp%$'\n'*}
    [[ $status == 200 ]] || die "port $port: expected status 200, got '$status'"
    [[ $body == "$want" ]] || die "port $port: expected body '$want', got '${body:0:80}'"
}

# run_wrk NAME OUTFILE WRK_ARGS...: run wrk against server NAME and, while it
# runs, sample the RSS of the server's process tree every RSS_INTERVAL seconds.
# Sets WRK_RPS (requests/s), WRK_ERRORS (wrk's error lines, or empty),
# WRK_PEAK_RSS_KB (largest sample; 0 if wrk ended before the first sample) and
# WRK_CPU_US (CPU µs the server's process tree spent per request during the run: a
# measure of its own cost that the load on the rest of the machine moves less than
# requests/s).
# shellcheck disable=SC2034 # the WRK_* results are read by the caller.
run_wrk() {
    local name=$1 out=$2
    shift 2
    local pid=${SERVER_PID[$name]} port=${SERVER_PORT[$name]} wpid kb
    WRK_PEAK_RSS_KB=0
    local ticks_before
    ticks_before=$(tree_cpu_ticks "$pid")
    wrk "$@" "http://127.0.0.1:$port/" >"$out" 2>&1 &
    wpid=$!
    WRK_PID=$wpid # so stop_all can end it if we are interrupted mid-run
    while alive "$wpid"; do
        nap "${RSS_INTERVAL:-1}"
        alive "$wpid" || break # only count samples taken while under load
        kb=$(tree_rss_kb "$pid")
        ((kb > WRK_PEAK_RSS_KB)) && WRK_PEAK_RSS_KB=$kb
    done
    wait "$wpid" || { cat "$out" >&2; die "$name: wrk failed"; }
    WRK_PID=
    WRK_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    [[ -n $WRK_RPS ]] || { cat "$out" >&2; die "$name: no Requests/sec in wrk output"; }
    local ticks requests
    ticks=$(($(tree_cpu_ticks "$pid") - ticks_before))
    requests=$(awk '/ requests in / { print $1 }' "$out")
    WRK_CPU_US=$(awk -v t="$ticks" -v n="${requests:-0}" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print 0 }')
    # "Socket errors: connect 0, read 3, ..." and "Non-2xx or 3xx responses: N".
    WRK_ERRORS=$(grep -E '^ *(Socket errors|Non-2xx)' "$out" | sed 's/^ *//' | paste -sd';' - || true)
    alive "$pid" || { show_log "$name"; die "$name died during the wrk run"; }
}

# show_log NAME: the tail of a server's log, to stderr.
show_log() {
    local f=${SERVER_LOG[$1]:-}
    [[ -n $f && -s $f ]] || return 0
    log "last lines of $1's log ($f):"
    tail -n 20 "$f" >&2
}

# stop_server NAME: SIGTERM the master, give the group STOP_TIMEOUT seconds to
# exit, then SIGKILL whatever is left in it; reap the master. Idempotent.
stop_server() {
    local name=$1 pid deadline p tree
    pid=${SERVER_PID[$name]:-}
    [[ -n $pid ]] || return 0
    # Its tree too, in case a worker left the process group.
    tree=$(tree_pids "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$(($(now_ms) + ${STOP_TIMEOUT:-5} * 1000))
    while group_alive "$pid" && (($(now_ms) < deadline)); do nap 0.05; done
    if group_alive "$pid"; then
        log "$name: still running after SIGTERM; sending SIGKILL to its process group"
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    for p in $tree; do
        if alive "$p"; then
            log "$name: process $p outlived its master; SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    wait "$pid" 2>/dev/null || true
    unset "SERVER_PID[$name]"
    log "$name: stopped"
}

# stop_all: stop a wrk run still going and every server still recorded (for
# the EXIT trap).
stop_all() {
    local name
    if [[ -n ${WRK_PID:-} ]] && alive "$WRK_PID"; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
    fi
    WRK_PID=
    for name in "${!SERVER_PID[@]}"; do stop_server "$name"; done
}
