#!/usr/bin/env bash
# proxy-large-bodies.sh: 1 GB bodies through `herd proxy`, and the memory it took.
#
# Starts scripts/peers/bulk-backend.py as the target and `herd proxy --workers 1` in front
# of it, then with curl: uploads SIZE_MB MiB with Content-Length and chunked, downloads
# SIZE_MB MiB with Content-Length and chunked, checks every byte count, and reports each
# transfer's time and the proxy worker's peak RSS (VmHWM) after all four.
#
# Environment: SIZE_MB (default 1024), HERD_BIN (default: cargo build --release).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

SIZE_MB=${SIZE_MB:-1024}
{ [[ $SIZE_MB =~ ^[0-9]+$ ]] && ((SIZE_MB > 0)); } || die "SIZE_MB must be a whole number > 0"
BYTES=$((SIZE_MB * 1024 * 1024))
HERD_BIN=${HERD_BIN:-}
if [[ -z $HERD_BIN ]]; then
    (cd "$REPO_ROOT" && cargo build --release >&2)
    HERD_BIN=$REPO_ROOT/target/release/herd
fi
{ have curl && have python3; } || die "needs curl and python3"

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/herd-large.XXXXXX")
trap 'stop_all; rm -rf -- "$WORK_DIR"' EXIT

port=$(free_port)
launch backend "$WORK_DIR/backend.log" python3 "$SCRIPT_DIR/peers/bulk-backend.py" "$port"
wait_port backend "$port" 10
RUST_LOG=info launch proxy "$WORK_DIR/proxy.log" \
    "$HERD_BIN" proxy --listen 127.0.0.1:0 --workers 1 --target "http://127.0.0.1:$port"
SERVER_PORT[proxy]=$(wait_log_port proxy 'master listening on 127\.0\.0\.1:[0-9]+' 30)
wait_log_port proxy 'worker 1 listening on 127\.0\.0\.1:[0-9]+' 30 >/dev/null
url=http://127.0.0.1:${SERVER_PORT[proxy]}
worker=$(grep -oE 'fork: worker 1 \(pid [0-9]+' "$WORK_DIR/proxy.log" | grep -oE '[0-9]+$')

# A sparse file of SIZE_MB: read as zeros, costs no disk.
truncate -s "$BYTES" "$WORK_DIR/body"

# transfer NAME EXPECTED CURL_ARGS...: runs curl, checks the byte count it reports.
transfer() {
    local name=$1 expected=$2 start end got
    shift 2
    start=$(now_ms)
    got=$(curl -sS --fail --max-time 600 "$@")
    end=$(now_ms)
    [[ $got == "$expected" ]] || die "$name: expected $expected bytes, got '$got'"
    awk -v n="$name" -v ms=$((end - start)) -v mb="$SIZE_MB" \
        'BEGIN { printf "| %s | %d MiB | %.1f s | %.0f MiB/s |\n", n, mb, ms / 1000, mb / (ms / 1000) }'
}

echo "| transfer | size | time | rate |"
echo "|---|---:|---:|---:|"
transfer "upload, Content-Length" "$BYTES" -T "$WORK_DIR/body" -X POST "$url/upload"
transfer "upload, chunked" "$BYTES" -T - -X POST -H 'Transfer-Encoding: chunked' "$url/upload" <"$WORK_DIR/body"
transfer "download, Content-Length" "$BYTES" -o /dev/null -w '%{size_download}' "$url/download/length/$BYTES"
transfer "download, chunked" "$BYTES" -o /dev/null -w '%{size_download}' "$url/download/chunked/$BYTES"
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$worker/status")
rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$worker/status")
echo
echo "proxy worker (pid $worker): peak RSS (VmHWM) ${hwm} kB, RSS now ${rss} kB, after $((4 * SIZE_MB)) MiB through it"
