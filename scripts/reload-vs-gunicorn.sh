#!/usr/bin/env bash
# Reloads under load, herd against gunicorn, the same WSGI app (scripts/peers/wsgi_hello.py)
# with 2 workers each, the same `herd load` (Connection: close, gunicorn's sync workers do
# not keep connections alive) and a HUP every INTERVAL seconds:
#
#   * gunicorn: its own master (`gunicorn -w 2`), HUP = its graceful reload;
#   * herd:     `herd run --listen … --workers 2 -- gunicorn -w 1 …`: each herd worker a
#               one-process gunicorn on the socket herd passes (socket activation: gunicorn
#               reads LISTEN_FDS itself; adding `--bind fd://3` would make it take fd 3 twice
#               and fail with EBADF on the second),
#               HUP = herd's rolling reload, which waits for each replacement to be ready
#               (gunicorn does not send READY=1, so --ready-after) before stopping the old.
#
# Prints a table: requests, failed requests by kind, reloads seen. Rounds interleave.
#
#   scripts/reload-vs-gunicorn.sh [DURATION_S] [INTERVAL_S] [ROUNDS]   (defaults: 20 2 3)
#
# Needs gunicorn (pip install gunicorn: installed if missing) and a release build of herd.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

DURATION=${1:-20}
INTERVAL=${2:-2}
ROUNDS=${3:-3}
CONNS=${CONNS:-16}
HERD=${HERD:-target/release/herd}
READY_AFTER=${READY_AFTER:-1}
[[ -x $HERD ]] || die "$HERD missing: cargo build --release"
have gunicorn || { log "installing gunicorn"; pip install -q gunicorn >&2; }
DIR=$(mktemp -d)
trap 'stop_all 2>/dev/null || true; rm -rf "$DIR"' EXIT
export PYTHONPATH=$PWD/scripts/peers

# run NAME ROUND: one server under load with a HUP every INTERVAL s; one table row.
run() {
    local name=$1 round=$2 port master
    case $name in
    gunicorn)
        port=$(free_port)
        launch "$name.$round" "$DIR/$name.$round.log" gunicorn -w 2 -b "127.0.0.1:$port" \
            --graceful-timeout 10 wsgi_hello:app
        wait_port "$name.$round" "$port" 30
        master=${SERVER_PID[$name.$round]}
        ;;
    herd)
        RUST_LOG=info launch "$name.$round" "$DIR/$name.$round.log" "$HERD" run \
            --listen 127.0.0.1:0 --workers 2 --ready-after "$READY_AFTER" -- \
            gunicorn -w 1 --graceful-timeout 10 wsgi_hello:app
        port=$(wait_log_port "$name.$round" 'master listening on 127\.0\.0\.1:[0-9]+' 30)
        grep -q 'master ready' "$DIR/$name.$round.log" || nap 2
        master=${SERVER_PID[$name.$round]}
        ;;
    esac
    "$HERD" load "http://127.0.0.1:$port/" -c "$CONNS" -d "${DURATION}s" --close --json \
        >"$DIR/$name.$round.json" &
    local load=$! end sent=0
    end=$(($(now_ms) + (DURATION - INTERVAL) * 1000))
    nap "$INTERVAL"
    while (($(now_ms) < end)); do
        kill -HUP "$master"
        sent=$((sent + 1))
        nap "$INTERVAL"
    done
    wait "$load"
    stop_server "$name.$round"
    python3 - "$DIR/$name.$round.json" "$name" "$round" "$sent" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
name, round_, sent = sys.argv[2:]
failed = sum(r["errors"].values()) + r["status"]["5xx"] + r["status"]["4xx"]
errors = {k: v for k, v in r["errors"].items() if v}
print(f"| {name} | {round_} | {sent} | {r['requests']} | {failed} | "
      f"{100 * failed / max(1, r['requests'] + failed):.3f}% | {errors or '{}'} |")
PY
}

echo "## Reload under load: herd run vs gunicorn, 2 workers, herd load -c $CONNS --close, HUP every ${INTERVAL}s for ${DURATION}s"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'); gunicorn $(gunicorn --version 2>&1 | grep -oE '[0-9]+(\.[0-9]+)+'), $(python3 --version)."
echo
echo "| server | round | HUPs | requests | failed | failed % | errors by kind |"
echo "|---|---|---:|---:|---:|---:|---|"
for round in $(seq 1 "$ROUNDS"); do
    run gunicorn "$round"
    run herd "$round"
done
