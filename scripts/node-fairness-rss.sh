#!/usr/bin/env bash
# herd as the primary of Node.js workers, against Node's own primary, the same program
# (tests/node/worker_id.js, 4 workers), the same wrk load (Connection: close):
#
#   * fairness: connections per worker, from herd's /status and from the workers' answers
#     under Node (each response is its worker's id; a Lua script of wrk's counts them),
#     and Jain's index (sum x)^2 / (n sum x^2): 1.0 is perfectly even;
#   * the primary's own RSS under load (the master process alone, not its workers).
#
#   scripts/node-fairness-rss.sh [DURATION_S] [WORKERS]   (defaults: 10 4)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DURATION=${1:-10}
WORKERS=${2:-4}
HERD=${HERD:-target/release/herd}
[[ -x $HERD ]] || die "$HERD missing: cargo build --release"
DIR=$(mktemp -d)
trap 'stop_all 2>/dev/null || true; rm -rf "$DIR"' EXIT

# wrk counts the bodies (worker ids) it got: one line "id count" per worker at the end.
cat >"$DIR/count.lua" <<'LUA'
counts = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() counts = {} end
function response(status, headers, body) counts[body] = (counts[body] or 0) + 1 end
function done()
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for id, n in pairs(c) do io.write(string.format("worker %s %d\n", id, n)) end
  end
end
LUA

# measure NAME PORT PID: wrk under load, the primary's peak RSS, the per-worker counts.
measure() {
    local name=$1 port=$2 pid=$3 wpid kb peak=0
    wrk -t1 -c64 -d"${DURATION}s" -H 'Connection: close' -s "$DIR/count.lua" \
        "http://127.0.0.1:$port/" >"$DIR/$name.wrk" 2>&1 &
    wpid=$!
    while alive "$wpid"; do
        nap 1
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        ((kb > peak)) && peak=$kb
    done
    wait "$wpid"
    python3 - "$DIR/$name.wrk" "$name" "$peak" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
name, peak = sys.argv[2], int(sys.argv[3])
counts = [int(n) for n in re.findall(r"^worker \S+ (\d+)$", text, re.M)]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
jain = sum(counts) ** 2 / (len(counts) * sum(c * c for c in counts)) if counts else 0
print(f"| {name} | {float(rps):.0f} | {' / '.join(map(str, sorted(counts)))} | {jain:.4f} | {peak / 1024:.1f} |")
PY
}

echo "## Node.js workers: herd's primary and Node's, $WORKERS workers, wrk -t1 -c64 -d${DURATION}s, Connection: close"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), node $(node --version)."
echo
echo "| primary | req/s | responses per worker | Jain | primary's RSS MB |"
echo "|---|---:|---|---:|---:|"
port=$(free_port)
PORT=$port WORKERS=$WORKERS launch node "$DIR/node.log" node tests/node/primary.js tests/node/worker_id.js
wait_port node "$port" 30
nap 1
measure "Node's own (round-robin)" "$port" "${SERVER_PID[node]}"
stop_server node
RUST_LOG=info PORT=0 launch herd "$DIR/herd.log" "$HERD" run --workers "$WORKERS" -- node tests/node/worker_id.js
port=$(wait_log_port herd 'master listening on 127\.0\.0\.1:[0-9]+' 30)
nap 1
measure "herd run (round-robin)" "$port" "${SERVER_PID[herd]}"
stop_server herd
