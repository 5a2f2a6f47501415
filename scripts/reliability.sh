#!/usr/bin/env bash
# Reliability runs for RELIABILITY.md (issue 6): loopback only, each bounded in time.
#
#   scripts/reliability.sh chaos          SIGKILL a random worker every 500 ms for 10 s under
#                                         Connection: close load; failures, kills, respawn times
#   scripts/reliability.sh fdlimit        herd under RLIMIT_NOFILE 256, 1,000 clients at once;
#                                         master CPU while it waits, then normal service
#   scripts/reliability.sh leaks          100,000 connections of mixed kinds; fds and RSS of
#                                         master and workers before and after
#   scripts/reliability.sh master-death   SIGKILL the master; time until every worker is gone
#   scripts/reliability.sh soak [SECS]    mixed load for SECS (600) seconds; RSS every 30 s;
#                                         a rolling reload every SOAK_RELOAD (60) seconds
#
# Uses the release binary (cargo build --release; CARGO_TARGET_DIR is honoured).
set -euo pipefail
SOAK_RELOAD=${SOAK_RELOAD:-60}
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

HERD=${HERD:-${CARGO_TARGET_DIR:-target}/release/herd}
[[ -x $HERD ]] || die "no $HERD: run cargo build --release"
OUT=${OUT:-$(mktemp -d /tmp/herd-reliability.XXXXXX)}
mkdir -p "$OUT"
trap stop_all EXIT
export RUST_LOG=${RUST_LOG:-info}

# start_herd NAME WORKERS [WRAPPER...]: herd serve on a free port (run under WRAPPER, e.g.
# prlimit); sets PORT and MASTER.
start_herd() {
    local name=$1 workers=$2
    shift 2
    launch "$name" "$OUT/$name.log" "$@" "$HERD" serve --listen 127.0.0.1:0 --app bench --workers "$workers"
    PORT=$(wait_log_port "$name" 'master listening on 127\.0\.0\.1:[0-9]+')
    SERVER_PORT[$name]=$PORT
    MASTER=${SERVER_PID[$name]}
    wait_port "$name" "$PORT"
}

# workers_of MASTER: the master's children.
workers_of() { ps -o pid= --ppid "$1" | tr -d ' '; }

# cpu_ticks PID: utime + stime in clock ticks (fields 14, 15 of /proc/PID/stat).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# json FILE KEY: a top-level number from herd load's JSON report.
json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
errors_json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"])' "$1"; }

chaos() {
    start_herd chaos 2
    "$HERD" load "http://127.0.0.1:$PORT/" --close -c 16 -d 12s --json >"$OUT/chaos.json" &
    local load=$! kills=0 victim
    nap 1
    for _ in $(seq 20); do
        nap 0.5
        victim=$(workers_of "$MASTER" | shuf -n1 || true)
        if [[ -n $victim ]]; then
            kill -KILL "$victim" 2>/dev/null && kills=$((kills + 1))
        fi
    done
    wait "$load"
    alive "$MASTER" || die "the master died"
    # Respawn: "worker N exited" -> the next "worker M is online", from the master's log.
    python3 - "$OUT/chaos.log" <<'EOF' >"$OUT/respawn.txt"
import re, sys, datetime
ts = lambda l: datetime.datetime.fromisoformat(re.match(r"\[(\S+)Z", l).group(1))
exits, respawn, forked, boot = [], [], {}, []
for line in open(sys.argv[1]):
    if " exited (" in line and "] worker " in line:
        exits.append(ts(line))
    elif m := re.search(r"fork: worker (\d+)", line):
        forked[m.group(1)] = ts(line)
    elif m := re.search(r"\] worker (\d+) is online", line):
        if m.group(1) in forked:
            boot.append((ts(line) - forked[m.group(1)]).total_seconds() * 1000)
        if exits:
            respawn.append((ts(line) - exits.pop(0)).total_seconds() * 1000)
def p50max(xs):
    xs = sorted(xs)
    return f"p50_ms={xs[len(xs)//2]:.2f} max_ms={xs[-1]:.2f}" if xs else "none"
print(f"respawns={len(respawn)} exit->online: {p50max(respawn)} (includes the crash-loop back-off);"
      f" fork->online: {p50max(boot[2:])}")
EOF
    local lost
    lost=$(grep -c "never read handed to other workers" "$OUT/chaos.log" || true)
    echo "chaos: requests=$(json "$OUT/chaos.json" requests) rps=$(json "$OUT/chaos.json" requests_per_sec)" \
        "errors=$(errors_json "$OUT/chaos.json") status=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$OUT/chaos.json")" \
        "killed=$kills recoveries_logged=$lost $(cat "$OUT/respawn.txt")"
    stop_server chaos
}

fdlimit() {
    start_herd fdlimit 2 prlimit --nofile=256:256
    local before after t0 t1 hz cpu
    hz=$(getconf CLK_TCK)
    # 1,000 clients send half a head at once and hold their connection for 6 s.
    python3 scripts/clients.py hold "$PORT" 1000 6 >"$OUT/hold.txt" &
    local clients=$!
    nap 2 # the clients connect; the workers fill up; the rest wait in the backlog
    before=$(cpu_ticks "$MASTER")
    t0=$(now_ms)
    nap 3
    after=$(cpu_ticks "$MASTER")
    t1=$(now_ms)
    cpu=$(python3 -c "print(f'{100 * ($after - $before) / $hz / (($t1 - $t0) / 1000):.1f}')")
    wait "$clients"
    alive "$MASTER" || die "the master died"
    "$HERD" load "http://127.0.0.1:$PORT/" -c 16 -d 3s --json >"$OUT/after.json"
    local full emfile
    full=$(grep -c "at its limit" "$OUT/fdlimit.log" || true)
    emfile=$(grep -c "accept: Too many open files" "$OUT/fdlimit.log" || true)
    echo "fdlimit: master_cpu_while_waiting=${cpu}% clients: $(cat "$OUT/hold.txt")" \
        "limit_warnings=$full emfile_warnings=$emfile" \
        "after: requests=$(json "$OUT/after.json" requests) errors=$(errors_json "$OUT/after.json")"
    stop_server fdlimit
}

# snapshot MASTER: "pid fds rss_kb" for the master and each worker.
snapshot() {
    local p
    for p in "$1" $(workers_of "$1"); do echo "$p $(fd_count "$p") $(rss_kb "$p")"; done
}

leaks() {
    start_herd leaks 2
    # Warm-up: first requests allocate buffers that are then reused.
    "$HERD" load "http://127.0.0.1:$PORT/" --close -c 16 -d 2s >/dev/null
    python3 scripts/clients.py mix "$PORT" 400 >/dev/null
    nap 3
    snapshot "$MASTER" >"$OUT/before.txt"
    "$HERD" load "http://127.0.0.1:$PORT/" --close -c 32 -d 12s --json >"$OUT/normal.json"
    "$HERD" load "http://127.0.0.1:$PORT/" -c 64 -d 3s --json >"$OUT/keepalive.json"
    python3 scripts/clients.py mix "$PORT" 25000 >"$OUT/mix.txt"
    # Lingering closes end within 2 s, timeouts within 10 s.
    nap 12
    snapshot "$MASTER" >"$OUT/after.txt"
    local normal ka
    normal=$(json "$OUT/normal.json" connections_opened)
    ka=$(json "$OUT/keepalive.json" connections_opened)
    echo "leaks: connections: close=$normal keepalive=$ka mix: $(cat "$OUT/mix.txt")" \
        "total=$((normal + ka + 25000))"
    paste "$OUT/before.txt" "$OUT/after.txt" |
        awk '{ printf "  pid %s fds %s -> %s  rss_kb %s -> %s (%+d)\n", $1, $2, $5, $3, $6, $6 - $3 }'
    stop_server leaks
}

master_death() {
    start_herd death 4
    "$HERD" load "http://127.0.0.1:$PORT/" -c 8 -d 1s >/dev/null
    local workers t0 t1 p
    workers=$(workers_of "$MASTER")
    t0=$(date +%s%N)
    kill -KILL "$MASTER"
    for p in $workers; do
        while alive "$p"; do nap 0.001; done
    done
    t1=$(date +%s%N)
    wait "$MASTER" 2>/dev/null || true
    unset "SERVER_PID[death]"
    local free=no
    python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', $PORT))" && free=yes
    echo "master-death: $(echo "$workers" | wc -w) workers gone $(((t1 - t0) / 1000000)) ms after the master's SIGKILL; port free again: $free"
}

soak() {
    local secs=${1:-600} i
    start_herd soak 2
    "$HERD" load "http://127.0.0.1:$PORT/" -c 32 -R 3000 -d "${secs}s" \
        --path-mix '90:/,5:/echo/x,5:/cost/200' --json >"$OUT/soak-ka.json" &
    local ka=$!
    "$HERD" load "http://127.0.0.1:$PORT/" --close -c 8 -R 1000 -d "${secs}s" --json >"$OUT/soak-close.json" &
    local cl=$!
    local reloads=0
    for ((i = 0; i <= secs; i += 30)); do
        echo "t=${i}s $(snapshot "$MASTER" | awk '{ printf "%s:%skB ", $1, $3 }')" >>"$OUT/soak-rss.txt"
        # A rolling reload every SOAK_RELOAD seconds (0: none), mid-load.
        if ((SOAK_RELOAD > 0 && i > 0 && i < secs && i % SOAK_RELOAD == 0)); then
            kill -HUP "$MASTER" && reloads=$((reloads + 1))
        fi
        ((i < secs)) && nap 30
    done
    wait "$ka" "$cl"
    echo "soak: $reloads reload(s) sent, $(grep -c 'reload done' "${SERVER_LOG[soak]}") completed"
    echo "soak: keepalive requests=$(json "$OUT/soak-ka.json" requests) errors=$(errors_json "$OUT/soak-ka.json")" \
        "close requests=$(json "$OUT/soak-close.json" requests) errors=$(errors_json "$OUT/soak-close.json")"
    cat "$OUT/soak-rss.txt"
    stop_server soak
}

case ${1:-} in
chaos) chaos ;;
fdlimit) fdlimit ;;
leaks) leaks ;;
master-death) master_death ;;
soak) soak "${2:-600}" ;;
*) die "usage: $0 chaos|fdlimit|leaks|master-death|soak [SECS]" ;;
esac
log "logs in $OUT"
