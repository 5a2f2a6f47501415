#!/usr/bin/env bash
# compare-peers.sh: benchmark herd against its peers (Node.js cluster, nginx; as a
# reverse proxy, nginx, HAProxy, node-http-proxy) serving the same "hello world" over
# HTTP/1.1 on 127.0.0.1.
#
# For each server in $SERVERS, one at a time (so they never compete for the
# CPU): start it with $WORKERS workers on a free port, wait until it accepts
# connections and answers "hello world", warm it up, then run
#   wrk -t1 -c$CONNECTIONS -d${DURATION}s                          (keep-alive)
#   wrk -t1 -c$CONNECTIONS -d${DURATION}s -H 'Connection: close'   (a new connection per request)
# sampling the resident memory of the server's whole process tree (master +
# workers, sum of VmRSS) every $RSS_INTERVAL s while wrk runs; then stop it.
#
# and the CPU time the tree spends per request (user + system, /proc/PID/stat, over
# each wrk run: the server's own cost, which the rest of the machine's load moves far
# less than req/s on a shared machine).
#
# Output (stdout, and $OUT if set): a markdown table
#   | server | keep-alive req/s | close req/s | RSS MB | keep-alive CPU µs/req | close CPU µs/req |
# then, when herd and a peer were both run, ratio lines such as
#   herd/nginx: keep-alive 0.93x, close 1.10x, RSS 0.41x, CPU/req keep-alive 0.70x, close 0.95x
# Progress and diagnostics go to stderr.
#
# Environment:
#   SERVERS      servers to run, space-separated (default "herd node nginx"); also
#                herd_batch1, nginx_deferred, herd_base (HERD_BASE_BIN: another herd build),
#                node_primary and herd_node (one Node program under Node's primary, under herd)
#   PROXY=1      reverse proxies instead: SERVERS defaults to "herd_proxy nginx_proxy
#                haproxy_proxy node_proxy", each in front of the same three one-worker
#                nginx backends
#   DURATION     seconds per wrk run (default 10)
#   WORKERS      workers per server (default 2)
#   CONNECTIONS  wrk connections (default 64)
#   ROUNDS       interleaved rounds per server; the table shows medians (default 3)
#   WARMUP       seconds of unmeasured keep-alive load before measuring (default 1; 0 = none)
#   RSS_INTERVAL seconds between RSS samples under load (default 1)
#   HERD_BIN     herd binary to use; unset = `cargo build --release` and use target/release/herd
#   OUT          also write the report to this file
#   KEEP_WORK=1  keep the temp dir with server logs and raw wrk output
#
# Adding a server (e.g. a proxy): write start_<name> NAME that launches it with
# `launch` and sets SERVER_PORT[NAME] (see start_node / start_nginx), and add
# the name to SERVERS. It may start helpers (a backend) under other names with
# `launch`: stop_all takes every recorded server down at exit.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)
PEERS_DIR=$SCRIPT_DIR/peers
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

if [[ ${PROXY:-0} == 1 ]]; then
    SERVERS=${SERVERS:-herd_proxy nginx_proxy haproxy_proxy node_proxy}
fi
SERVERS=${SERVERS:-herd node nginx}
DURATION=${DURATION:-10}
WORKERS=${WORKERS:-2}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
RSS_INTERVAL=${RSS_INTERVAL:-1}
OUT=${OUT:-}
STOP_TIMEOUT=${STOP_TIMEOUT:-5}

for v in DURATION WORKERS CONNECTIONS WARMUP ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((DURATION > 0 && WORKERS > 0 && CONNECTIONS > 0)) || die "DURATION, WORKERS and CONNECTIONS must be > 0"

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/herd-peers.XXXXXX")

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [[ ${KEEP_WORK:-0} == 1 || $rc -ne 0 ]]; then
        log "logs and raw wrk output kept in $WORK_DIR"
    else
        rm -rf -- "$WORK_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
# Say where an unexpected failure happened (set -e alone exits silently).
set -E
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

wants() { [[ " $SERVERS " == *" $1 "* ]]; }
# wants_kind KIND: a server named KIND or KIND_<variant> is requested.
wants_kind() { [[ " $SERVERS " == *" $1 "* || " $SERVERS " == *" $1_"* ]]; }
# wants_nginx: nginx runs, as a server or as the proxies' backends.
wants_nginx() { wants_kind nginx || [[ " $SERVERS " == *"_proxy "* ]]; }

# ---------------------------------------------------------------- setup ----

install_deps() {
    local pkgs=()
    have wrk || pkgs+=(wrk)
    have curl || pkgs+=(curl)
    if wants_nginx && ! have nginx && [[ ! -x /usr/sbin/nginx ]]; then pkgs+=(nginx-light); fi
    if wants_kind haproxy && ! have haproxy && [[ ! -x /usr/sbin/haproxy ]]; then pkgs+=(haproxy); fi
    ((${#pkgs[@]} == 0)) && return 0
    ((EUID == 0)) || die "missing ${pkgs[*]}, and installing needs root"
    log "installing ${pkgs[*]}"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2
}

NGINX_BIN=
HAPROXY_BIN=
HERD_BIN=${HERD_BIN:-}

prepare() {
    local name
    [[ -n ${SERVERS// /} ]] || die "SERVERS is empty"
    for name in $SERVERS; do
        declare -F "start_$name" >/dev/null || die "unknown server '$name' in SERVERS (no start_$name function)"
    done
    install_deps
    have python3 || die "python3 is needed to pick free ports"
    if wants node; then
        have node || die "node is not installed (v20 expected)"
    fi
    if wants_nginx; then
        NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
        ((EUID == 0)) || die "nginx is run as root (its workers drop to nobody); run this as root"
    fi
    if wants_kind haproxy; then
        HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)
    fi
    if wants_kind herd; then
        if [[ -z $HERD_BIN ]]; then
            log "building herd (cargo build --release)"
            (cd "$REPO_ROOT" && cargo build --release >&2)
            HERD_BIN=$REPO_ROOT/target/release/herd
        fi
        [[ -x $HERD_BIN ]] || die "herd binary not found or not executable: $HERD_BIN"
    fi
}

# -------------------------------------------------------------- servers ----
# start_<kind> NAME: launch the server as NAME and set SERVER_PORT[NAME].
# start_server waits for it to accept and checks its answer.

start_herd() {
    local name=$1
    shift
    # RUST_LOG: herd logs its "listening on" line through env_logger.
    RUST_LOG=${RUST_LOG:-info} launch "$name" "$WORK_DIR/$name.log" \
        "$HERD_BIN" serve --listen 127.0.0.1:0 --workers "$WORKERS" "$@"
    SERVER_PORT[$name]=$(wait_log_port "$name" 'listening on 127\.0\.0\.1:[0-9]+' 30)
}

# The proxy of another herd build (HERD_BASE_BIN), for before/after in one run.
start_herd_proxy_base() {
    [[ -x ${HERD_BASE_BIN:-} ]] || die "herd_proxy_base needs HERD_BASE_BIN, an executable herd"
    HERD_BIN=$HERD_BASE_BIN start_herd_proxy "$1"
}

# herd with one fd per handoff packet: what batching buys on the accept path.
start_herd_batch1() { start_herd "$1" --handoff-batch 1; }

# Another herd build (HERD_BASE_BIN), to compare a change with what it replaced in one run.
start_herd_base() {
    [[ -x ${HERD_BASE_BIN:-} ]] || die "herd_base needs HERD_BASE_BIN, an executable herd"
    HERD_BIN=$HERD_BASE_BIN start_herd "$1"
}

# The same Node.js program (tests/node/hello.js: hello world, no per-request log) under
# Node's own cluster primary and under herd as its primary (issue 11).
start_node_primary() {
    local name=$1 port
    port=$(free_port)
    PORT=$port WORKERS=$WORKERS launch "$name" "$WORK_DIR/$name.log" \
        node "$REPO_ROOT/tests/node/primary.js" "$REPO_ROOT/tests/node/hello.js"
    SERVER_PORT[$name]=$port
}

# Node's SCHED_NONE: the workers accept from the shared socket, the primary is out of the
# path (the ceiling for any primary); and herd's own shared policy, the same thing.
start_node_primary_none() { NODE_CLUSTER_SCHED_POLICY=none start_node_primary "$1"; }
start_herd_node_shared() { start_herd_node "$1" --policy shared; }
start_herd_node_nodepolicy() { start_herd_node "$1" --policy node; }

start_herd_node() {
    local name=$1
    shift
    RUST_LOG=${RUST_LOG:-info} PORT=0 launch "$name" "$WORK_DIR/$name.log" \
        "$HERD_BIN" run --workers "$WORKERS" "$@" -- node "$REPO_ROOT/tests/node/hello.js"
    SERVER_PORT[$name]=$(wait_log_port "$name" 'master listening on 127\.0\.0\.1:[0-9]+' 30)
}

start_node() {
    local name=$1 port
    port=$(free_port)
    PORT=$port launch "$name" "$WORK_DIR/$name.log" node "$PEERS_DIR/node-cluster.js" "$WORKERS"
    SERVER_PORT[$name]=$port
}

start_nginx() {
    local name=$1 listen_opts=${2:-} port prefix
    port=$(free_port)
    prefix=$WORK_DIR/$name
    mkdir -p "$prefix"
    sed -e "s|@WORKERS@|$WORKERS|g" -e "s|@PORT@|$port|g" -e "s|@PREFIX@|$prefix|g" \
        -e "s|@LISTEN_OPTS@|$listen_opts|g" \
        "$PEERS_DIR/nginx.conf.template" >"$prefix/nginx.conf"
    # -e: the startup error log, before the config's error_log applies.
    launch "$name" "$WORK_DIR/$name.log" \
        "$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log"
    SERVER_PORT[$name]=$port
}

# nginx with `listen ... deferred` (TCP_DEFER_ACCEPT), which herd's listeners always use.
start_nginx_deferred() { start_nginx "$1" deferred; }

# ------------------------------------------------ reverse proxies (issue 4) ----
# herd_proxy, nginx_proxy, node_proxy: each forwards to the same three nginx backends
# (one worker each, `return 200 'hello world'`), started once, before the first proxy,
# and left running for every proxy in the run. PROXY=1 selects these three servers.

BACKEND_URLS=()

start_backends() {
    ((${#BACKEND_URLS[@]} == 0)) || return 0
    local i name port
    for i in 0 1 2; do
        name=backend$i
        WORKERS=1 start_nginx "$name"
        wait_port "$name" "${SERVER_PORT[$name]}" 30
        check_hello "${SERVER_PORT[$name]}"
        BACKEND_URLS+=("http://127.0.0.1:${SERVER_PORT[$name]}")
    done
    log "backends: ${BACKEND_URLS[*]}"
}

start_herd_proxy() {
    local name=$1 url targets=()
    start_backends
    for url in "${BACKEND_URLS[@]}"; do targets+=(--target "$url"); done
    RUST_LOG=${RUST_LOG:-info} launch "$name" "$WORK_DIR/$name.log" \
        "$HERD_BIN" proxy --listen 127.0.0.1:0 --workers "$WORKERS" "${targets[@]}"
    SERVER_PORT[$name]=$(wait_log_port "$name" 'listening on 127\.0\.0\.1:[0-9]+' 30)
}

start_nginx_proxy() {
    local name=$1 port prefix url upstreams=""
    start_backends
    for url in "${BACKEND_URLS[@]}"; do upstreams+="        server ${url#http://};\n"; done
    port=$(free_port)
    prefix=$WORK_DIR/$name
    mkdir -p "$prefix"
    sed -e "s|@WORKERS@|$WORKERS|g" -e "s|@PORT@|$port|g" -e "s|@PREFIX@|$prefix|g" \
        -e "s|@UPSTREAMS@|$upstreams|" "$PEERS_DIR/nginx-proxy.conf.template" >"$prefix/nginx.conf"
    launch "$name" "$WORK_DIR/$name.log" \
        "$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log"
    SERVER_PORT[$name]=$port
}

# HAProxy (Debian's package): WORKERS threads in one process, round-robin, `http-reuse
# always` (scripts/peers/haproxy-proxy.cfg.template).
start_haproxy_proxy() {
    local name=$1 port prefix url i=0 servers=""
    start_backends
    for url in "${BACKEND_URLS[@]}"; do
        servers+="    server backend$i ${url#http://}\n"
        i=$((i + 1))
    done
    port=$(free_port)
    prefix=$WORK_DIR/$name
    mkdir -p "$prefix"
    sed -e "s|@WORKERS@|$WORKERS|g" -e "s|@PORT@|$port|g" -e "s|@SERVERS@|$servers|" \
        "$PEERS_DIR/haproxy-proxy.cfg.template" >"$prefix/haproxy.cfg"
    "$HAPROXY_BIN" -c -q -f "$prefix/haproxy.cfg" >&2 || die "$name: invalid configuration $prefix/haproxy.cfg"
    # -db: stay in the foreground, so that `launch` holds its pid.
    launch "$name" "$WORK_DIR/$name.log" "$HAPROXY_BIN" -db -f "$prefix/haproxy.cfg"
    SERVER_PORT[$name]=$port
}

# The seed's node-http-proxy program (one process: the seed has no workers).
start_node_proxy() {
    local name=$1 port
    { have node && have npm; } || die "node_proxy needs node and npm"
    if [[ ! -d $PEERS_DIR/node_modules/http-proxy ]]; then
        log "installing http-proxy (npm ci in $PEERS_DIR)"
        (cd "$PEERS_DIR" && npm ci --no-audit --no-fund >&2)
    fi
    start_backends
    port=$(free_port)
    PORT=$port launch "$name" "$WORK_DIR/$name.log" node "$PEERS_DIR/node-http-proxy.js" "${BACKEND_URLS[@]}"
    SERVER_PORT[$name]=$port
}

start_server() {
    local name=$1
    declare -F "start_$name" >/dev/null || die "unknown server '$name' (no start_$name function)"
    "start_$name" "$name"
    wait_port "$name" "${SERVER_PORT[$name]}" 30
    check_hello "${SERVER_PORT[$name]}"
    log "$name: listening on 127.0.0.1:${SERVER_PORT[$name]}, answers 200 'hello world'"
}

# ------------------------------------------------------------ benchmark ----

declare -A RPS_KA=() RPS_CLOSE=() RSS_MB=() NOTES=()
# Every round's figure, space-separated, and the peak RSS over all rounds.
declare -A KA_ALL=() CLOSE_ALL=() PEAK_KB=()
# CPU µs per request: every round's, and the medians.
declare -A KA_CPU_ALL=() CLOSE_CPU_ALL=() CPU_KA=() CPU_CLOSE=()

# median: the median of the numbers on stdin (one or more, whitespace-separated).
median() {
    tr -s ' \n' '\n' | grep -v '^$' | sort -g |
        awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# bench_round NAME ROUND: one keep-alive and one Connection: close run against NAME.
bench_round() {
    local name=$1 round=$2 wrk_base=(-t1 "-c$CONNECTIONS" "-d${DURATION}s") peak=${PEAK_KB[$1]:-0}
    if ((round == 1 && WARMUP > 0)); then
        log "$name: warm-up ${WARMUP}s"
        run_wrk "$name" "$WORK_DIR/$name.warmup.txt" -t1 "-c$CONNECTIONS" "-d${WARMUP}s"
    fi

    log "$name: round $round, keep-alive, wrk ${wrk_base[*]}"
    run_wrk "$name" "$WORK_DIR/$name.keepalive.$round.txt" "${wrk_base[@]}"
    KA_ALL[$name]+="$WRK_RPS "
    KA_CPU_ALL[$name]+="$WRK_CPU_US "
    ((WRK_PEAK_RSS_KB > peak)) && peak=$WRK_PEAK_RSS_KB
    [[ -z $WRK_ERRORS ]] || NOTES[$name]+="keep-alive round $round: $WRK_ERRORS. "

    log "$name: round $round, Connection: close, wrk ${wrk_base[*]}"
    run_wrk "$name" "$WORK_DIR/$name.close.$round.txt" "${wrk_base[@]}" -H 'Connection: close'
    CLOSE_ALL[$name]+="$WRK_RPS "
    CLOSE_CPU_ALL[$name]+="$WRK_CPU_US "
    ((WRK_PEAK_RSS_KB > peak)) && peak=$WRK_PEAK_RSS_KB
    [[ -z $WRK_ERRORS ]] || NOTES[$name]+="close round $round: $WRK_ERRORS. "
    PEAK_KB[$name]=$peak
}

# summarize NAME: medians over the rounds into RPS_KA, RPS_CLOSE; peak RSS into RSS_MB.
summarize() {
    local name=$1
    ((${PEAK_KB[$name]:-0} > 0)) || die "$name: no RSS sample was taken under load (DURATION too short for RSS_INTERVAL?)"
    RPS_KA[$name]=$(median <<<"${KA_ALL[$name]}")
    RPS_CLOSE[$name]=$(median <<<"${CLOSE_ALL[$name]}")
    RSS_MB[$name]=$(awk -v kb="${PEAK_KB[$name]}" 'BEGIN { printf "%.1f", kb / 1024 }')
    CPU_KA[$name]=$(median <<<"${KA_CPU_ALL[$name]}")
    CPU_CLOSE[$name]=$(median <<<"${CLOSE_CPU_ALL[$name]}")
    log "$name: keep-alive ${KA_ALL[$name]}-> ${RPS_KA[$name]} req/s; close ${CLOSE_ALL[$name]}-> ${RPS_CLOSE[$name]} req/s; peak RSS ${RSS_MB[$name]} MB"
    log "$name: CPU µs/req keep-alive ${KA_CPU_ALL[$name]}-> ${CPU_KA[$name]}; close ${CLOSE_CPU_ALL[$name]}-> ${CPU_CLOSE[$name]}"
}

# --------------------------------------------------------------- report ----

# ratio A B: A/B as "1.23x", or "n/a" if B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }

report() {
    local name peer
    echo "## herd vs peers: hello world, ${WORKERS} workers, wrk -t1 -c${CONNECTIONS} -d${DURATION}s"
    echo
    echo "Machine: $(nproc) CPUs, $(uname -sr). $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "req/s: median of ${ROUNDS} interleaved rounds (every round runs every server once)."
    echo "RSS MB: peak under load of the summed VmRSS of the server's process tree (master + workers)."
    echo "CPU µs/req: user + system CPU of that tree per request, median over the rounds."
    echo
    echo "| server | keep-alive req/s | close req/s | RSS MB | keep-alive CPU µs/req | close CPU µs/req |"
    echo "|---|---:|---:|---:|---:|---:|"
    for name in $SERVERS; do
        printf '| %s | %.0f | %.0f | %s | %s | %s |\n' "$name" "${RPS_KA[$name]}" "${RPS_CLOSE[$name]}" \
            "${RSS_MB[$name]}" "${CPU_KA[$name]}" "${CPU_CLOSE[$name]}"
    done
    local ours peer pair printed=0
    # Servers are compared with servers, proxies with proxies, the Node program with itself.
    for pair in herd/nginx herd/node herd/herd_base herd_proxy/nginx_proxy \
        herd_proxy/haproxy_proxy herd_proxy/node_proxy herd_proxy/herd_proxy_base herd_node/node_primary; do
        ours=${pair%/*} peer=${pair#*/}
        [[ -n ${RPS_KA[$ours]:-} && -n ${RPS_KA[$peer]:-} ]] || continue
        ((printed)) || echo
        printed=1
        echo "$ours/$peer: keep-alive $(ratio "${RPS_KA[$ours]}" "${RPS_KA[$peer]}")," \
            "close $(ratio "${RPS_CLOSE[$ours]}" "${RPS_CLOSE[$peer]}")," \
            "RSS $(ratio "${RSS_MB[$ours]}" "${RSS_MB[$peer]}")," \
            "CPU/req keep-alive $(ratio "${CPU_KA[$ours]}" "${CPU_KA[$peer]}")," \
            "close $(ratio "${CPU_CLOSE[$ours]}" "${CPU_CLOSE[$peer]}")"
    done
    local noted=0
    for name in $SERVERS; do
        [[ -n ${NOTES[$name]:-} ]] || continue
        ((noted)) || echo
        noted=1
        echo "wrk errors, $name: ${NOTES[$name]% }"
    done
}

versions() {
    local v=()
    { wants node || wants node_proxy || wants node_primary || wants herd_node; } &&
        v+=("node $(node --version)")
    wants_nginx && v+=("$("$NGINX_BIN" -v 2>&1 | sed 's|.*nginx/|nginx |')")
    wants_kind haproxy && v+=("$("$HAPROXY_BIN" -v 2>&1 | awk 'NR == 1 { print "haproxy " $3 }')")
    # wrk --version exits 1 after printing.
    v+=("$( (wrk --version 2>&1 || true) | awk 'NR == 1 { print "wrk " $2 }')")
    log "versions: ${v[*]}"
}

# ----------------------------------------------------------------- main ----

main() {
    local name
    prepare
    versions
    # Every server is started first and stays up (idle servers cost nothing); the rounds
    # then interleave them, so a burst of noise on this shared machine hits all of them
    # alike instead of whichever happened to run then. Figures are medians over rounds.
    for name in $SERVERS; do
        start_server "$name"
    done
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        for name in $SERVERS; do
            bench_round "$name" "$round"
        done
    done
    for name in $SERVERS; do
        summarize "$name"
    done
    if [[ -n $OUT ]]; then
        report | tee "$OUT"
    else
        report
    fi
}

main "$@"
