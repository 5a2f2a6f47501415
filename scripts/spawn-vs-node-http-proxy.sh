#!/usr/bin/env bash
# The design document's last program, two ways, in one run: three instances of one Node
# server (tests/node/hello.js) behind a round-robin proxy.
#
#   * seed:  the seed's node-http-proxy program (scripts/peers/node-http-proxy.js) over three
#            instances started by hand (`PORT=… node hello.js`), as the article leaves it;
#   * herd:  `herd proxy --workers 2 --spawn 3 --spawn-port BASE -- node hello.js`, herd
#            starting and supervising the same three instances itself.
#
# wrk -t1 -c64 -d${DURATION}s keep-alive on each, ROUNDS interleaved rounds, medians.
#
#   scripts/spawn-vs-node-http-proxy.sh [DURATION_S] [ROUNDS]   (defaults: 10 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DURATION=${1:-10}
ROUNDS=${2:-3}
HERD=${HERD:-target/release/herd}
[[ -x $HERD ]] || die "$HERD missing: cargo build --release"
PEERS=scripts/peers
if [[ ! -d $PEERS/node_modules/http-proxy ]]; then
    (cd "$PEERS" && npm ci --no-audit --no-fund >&2)
fi
DIR=$(mktemp -d)
trap 'stop_all 2>/dev/null || true; rm -rf "$DIR"' EXIT

urls=()
for i in 0 1 2; do
    port=$(free_port)
    PORT=$port launch "instance$i" "$DIR/instance$i.log" node tests/node/hello.js
    wait_port "instance$i" "$port" 30
    urls+=("http://127.0.0.1:$port")
done
seed_port=$(free_port)
PORT=$seed_port launch seed "$DIR/seed.log" node "$PEERS/node-http-proxy.js" "${urls[@]}"
wait_port seed "$seed_port" 30
# Three consecutive ports below the ephemeral range for herd's own instances.
base=$((20000 + RANDOM % 12000))
RUST_LOG=info launch herd "$DIR/herd.log" "$HERD" proxy --listen 127.0.0.1:0 --workers 2 \
    --spawn 3 --spawn-port "$base" -- node tests/node/hello.js
herd_port=$(wait_log_port herd 'master listening on 127\.0\.0\.1:[0-9]+' 30)
for _ in $(seq 1 100); do grep -q 'master ready' "$DIR/herd.log" && break; nap 0.1; done

declare -A rps=()
for round in $(seq 1 "$ROUNDS"); do
    for name in seed herd; do
        port=seed_port
        [[ $name == herd ]] && port=herd_port
        r=$(wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:${!port}/" | awk '/^Requests\/sec:/ {print $2}')
        rps[$name]="${rps[$name]:-} $r"
        log "round $round: $name $r req/s"
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "## Three instances behind a round-robin proxy: the seed's node-http-proxy vs herd proxy --spawn 3"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); node $(node --version); wrk -t1 -c64 -d${DURATION}s keep-alive, median of $ROUNDS interleaved rounds."
echo
echo "| proxy | req/s (median) | rounds |"
echo "|---|---:|---|"
for name in seed herd; do
    echo "| $name | $(echo "${rps[$name]}" | median) | ${rps[$name]# } |"
done
