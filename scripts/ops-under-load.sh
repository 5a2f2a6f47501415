#!/usr/bin/env bash
# Reload and upgrade under load: `herd load` runs against `herd serve` while the master is
# sent SIGHUP (rolling reload) or SIGUSR2 (binary upgrade) every INTERVAL seconds. Prints,
# per run, the requests answered, their statuses and the client-side errors, next to a
# baseline run with no signals. Zero errors and only 200s is the requirement.
#
#   scripts/ops-under-load.sh [DURATION_S] [INTERVAL_S]      (defaults: 20 1)
#
# Needs only herd itself (release build). Everything listens on 127.0.0.1; every loop is
# bounded by DURATION_S.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DURATION=${1:-20}
INTERVAL=${2:-1}
WORKERS=${WORKERS:-2}
CONNS=${CONNS:-32}
HERD=${HERD:-target/release/herd}
[[ -x $HERD ]] || die "$HERD missing: cargo build --release"
DIR=$(mktemp -d)
trap 'stop_all 2>/dev/null || true; rm -rf "$DIR"' EXIT

# run NAME SIGNAL LOAD_FLAGS...: one server, one load run, SIGNAL every INTERVAL s (or none).
run() {
    local name=$1 sig=$2
    shift 2
    local pidfile=$DIR/$name.pid port end master sent=0
    launch "$name" "$DIR/$name.log" "$HERD" serve --listen 127.0.0.1:0 --workers "$WORKERS" \
        --app bench --pid-file "$pidfile"
    port=$(wait_log_port "$name" 'master listening on 127\.0\.0\.1:[0-9]+')
    "$HERD" load "http://127.0.0.1:$port/worker" -c "$CONNS" -d "${DURATION}s" --json "$@" \
        >"$DIR/$name.json" &
    local load=$!
    end=$(($(now_ms) + (DURATION - 1) * 1000))
    if [[ $sig != none ]]; then
        nap 1
        while (($(now_ms) < end)); do
            master=$(cat "$pidfile")
            kill "-$sig" "$master"
            sent=$((sent + 1))
            nap "$INTERVAL"
        done
    fi
    wait "$load"
    local done_reloads upgrades
    done_reloads=$(grep -c 'reload done' "$DIR/$name.log" || true)
    upgrades=$(grep -c 'drains and exits' "$DIR/$name.log" || true)
    # After upgrades the master is a new process in the same process group: stop it
    # gracefully first, then let stop_server sweep the group by its original id.
    master=$(cat "$pidfile")
    kill -TERM "$master"
    end=$(($(now_ms) + 10000))
    while alive "$master" && (($(now_ms) < end)); do nap 0.05; done
    stop_server "$name"
    python3 - "$DIR/$name.json" "$name" "$sig" "$sent" "$done_reloads" "$upgrades" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
name, sig, sent, reloads, upgrades = sys.argv[2:]
print(f"| {name} | {sig} x{sent} | {reloads} | {upgrades} | {r['requests']} | "
      f"{r['requests_per_sec']:.0f} | {r['status']} | {r['errors'] or '{}'} | "
      f"{r['latency_us']['p99']} |")
PY
}

echo "| run | signals sent | reloads done | upgrades done | requests | req/s | statuses | errors | p99 µs |"
echo "|---|---|---|---|---|---|---|---|---|"
run keepalive-baseline none
run keepalive-reload HUP
run close-reload HUP --close
run keepalive-upgrade USR2
run close-upgrade USR2 --close
