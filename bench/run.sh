#!/usr/bin/env bash
# bench/run.sh — `make bench` (issue 7): how fast otpd is on this machine, next
# to nginx answering a fixed JSON body (the HTTP ceiling), measured in the same
# run so that the ratios compare across machines.
#
# In order, each at BENCH_CONNECTIONS (64 and 256), a warm-up and then a
# measured run of BENCH_DURATION seconds:
#   nginx    POST of a send-sized JSON body, fixed 201 JSON reply (bench/nginx.conf.in)
#   disk     the disk alone: durable 128 KiB writes (write + fdatasync, a group
#            commit's WAL write) for BENCH_DURATION seconds (bench/fsync.mjs),
#            the floor under every p99 below: when more than ~1% of the time
#            goes to syncs over 10 ms, no durable server here meets p99 <= 10 ms
#   send     POST /otp/send, a new valid Indian mobile number per request
#   verify   POST /otp/verify with the right code, each pending request once
#            (the requests come from the send runs and from more sends
#            beforehand, "preload", recorded by wrk; their codes are read from
#            the file provider's sms.jsonl); when the budget leaves too little
#            time to preload enough of them (PostgreSQL), the run is shortened
#            to what the pool lasts, and its row and the notes say so
#   mixed    1 send : 1 verify : 2 GET /otp/{id}
#   delivery messages/s from the dispatcher to the file provider while sending,
#            and to an SMPP sink (bench/smsc.mjs) when the smpp provider is built
#   postgres the send/verify/mixed runs on PostgreSQL when that backend is built
# otpd runs from a fresh data directory: SQLite with synchronous=FULL (the
# default), the file provider, one bench account with plenty of credit.
#
# About 4 minutes with the defaults; the PostgreSQL runs are skipped when less
# than their share of BENCH_BUDGET (300 s) is left. Shorter runs with e.g.
# BENCH_DURATION=5. More knobs in bench/lib.sh, and:
#   BENCH_WORKLOADS="nginx disk send verify mixed delivery smpp postgres"
#   BENCH_BUDGET=300         seconds the whole run should take at most
#   BENCH_PG_URL=            a PostgreSQL server to use (else a throwaway
#                            cluster is started when the backend is built)
#   BENCH_PG_CONNECTIONS=64  connection counts of the PostgreSQL runs
#
# Columns: requests/s; the ratio to nginx at the same connection count; p50,
# p99, p99.9 latency (wrk's histogram, through a done() hook); errors = non-2xx
# answers plus socket errors and timeouts; the server's CPU seconds per 1,000
# requests (/proc/PID/stat, all threads; nginx: master and workers; with
# PostgreSQL, the cluster's processes too); its peak RSS during the run (VmHWM,
# reset before the run; otpd alone, nginx master + workers); the change of
# requests/s from the first connection count; "other" = CPU, in cores, used
# during the run by processes that are neither the server nor wrk nor kernel
# threads, or taken by the hypervisor (steal: the header gives the bench's
# average). A run with other > ~0.1 shared the machine with other work: take it
# again. Below the table: CPU per thread of otpd, and delivery.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKLOADS=${BENCH_WORKLOADS:-nginx disk send verify mixed delivery smpp postgres}
PG_CONNS=${BENCH_PG_CONNECTIONS:-64}
BUDGET=${BENCH_BUDGET:-300}
MAX_PRELOAD=60
has() { [[ " $WORKLOADS " == *" $1 "* ]]; }

NOTES=()
EXTRA_ROWS=()
DISK= # p50 p99 p999 max stalled%, from the disk run

# ---- one backend: send, verify, mixed ----------------------------------------------

READ_PATH=/otp
# GET /otp/{id} is the status read if this binary has it (an unknown id then
# answers otp_not_found, not the router's not_found); else GET /wallet.
check_status_route() {
    local code
    code=$(curl -s "$OTPD_URL/otp/req_00000000000000000000000" -H "X-API-Key: $KEY" |
        sed -n 's/.*"code" *: *"\([^"]*\)".*/\1/p')
    if [ "$code" = "otp_not_found" ]; then
        READ_PATH=/otp
    else
        READ_PATH=/wallet
        NOTES+=("mixed: this binary has no GET /otp/{id} (it answered \"$code\"): the status reads are GET /wallet")
    fi
}

# suite SUFFIX CONNS…: send, verify and mixed against the otpd at $OTPD_URL;
# their labels get SUFFIX.
suite() {
    local tag=$1 c need rate
    shift
    PAIRS=$TMP/pairs$tag
    : >"$PAIRS"
    SEND_RATE=5000
    if has send; then
        # The send runs record their 201s (a response() hook in wrk, ~2-3 µs
        # of wrk's CPU per reply): those requests feed the verify runs.
        local rec
        rec=$(mktemp -d "$TMP/rec.XXXX")
        for c in "$@"; do
            BENCH_KEY=$KEY BENCH_RECORD=$rec measure "send$tag" "$c" send.lua "$OTPD_URL" "$OTPD_PID"
        done
        rate=${R_RPS["send$tag|$1"]:-5000}
        SEND_RATE=${rate%.*}
        log "the send runs left $(collect_pairs "$rec") pending requests for the verify runs"
    fi
    # Pending requests for the verifies: enough for the fastest rate seen so far
    # (first guess: verify at 2.5 x send, measured 1.5-2.6 x on SQLite; on
    # PostgreSQL 1.1-1.2 x until verifies were batched, 2.5 x guessed since)
    # over warm-up + run, plus 20%; preloading stops at MAX_PRELOAD seconds (a
    # run that runs out says so in the table).
    local vrate=$((SEND_RATE * 5 / 2))
    if has verify; then
        for c in "$@"; do
            need=$((vrate * (WARMUP + DURATION) * 6 / 5))
            ensure_pairs "$need" "$MAX_PRELOAD"
            BENCH_KEY=$KEY BENCH_USES=1 measure "verify$tag" "$c" verify.lua "$OTPD_URL" "$OTPD_PID"
            rate=${R_RPS["verify$tag|$c"]:-0}
            rate=${rate%.*}
            [ "$rate" -le "$vrate" ] || vrate=$rate
        done
    fi
    if has mixed; then
        check_status_route
        # a quarter of the mixed requests are verifies; first guess: mixed runs
        # at 0.7 x the verify rate (measured: 0.6-0.7)
        local mrate=$((vrate * 7 / 10))
        for c in "$@"; do
            need=$((mrate / 4 * (WARMUP + DURATION) * 3 / 2))
            ensure_pairs "$need" $((MAX_PRELOAD / 2))
            BENCH_KEY=$KEY BENCH_READ_PATH=$READ_PATH BENCH_USES=1/4 measure "mixed$tag" "$c" mixed.lua \
                "$OTPD_URL" "$OTPD_PID"
            rate=${R_RPS["mixed$tag|$c"]:-0}
            rate=${rate%.*}
            [ "$rate" -le "$mrate" ] || mrate=$rate
        done
    fi
}

# ---- delivery ------------------------------------------------------------------------

declare -A D_RATE D_BACKLOG D_DRAIN D_SENDS
DORDER=()
# delivery_measure LABEL CONNS COUNTER: a send run while COUNTER (a command
# printing how many messages the provider has taken) is read before and after;
# then the backlog left at the end and how fast it drains.
delivery_measure() {
    local label=$1 conns=$2 counter=$3 key="$1|$2" out n0 n1 nd secs
    out="$TMP/wrk.delivery.${label%% *}.$conns"
    n0=$($counter)
    BENCH_KEY=$KEY wrk_run "$out" "$DURATION" "$conns" send.lua "$OTPD_URL"
    n1=$($counter)
    read -r nd secs < <(wait_drain "$counter")
    D_SENDS[$key]=$(field rps "$out")
    D_RATE[$key]=$(awk -v a="$n0" -v b="$n1" -v d="$DURATION" 'BEGIN { printf "%.0f", (b - a) / d }')
    D_BACKLOG[$key]=$((nd - n1))
    D_DRAIN[$key]=$(awk -v n=$((nd - n1)) -v s="$secs" 'BEGIN { if (n < 100 || s < 0.3) print "-"; else printf "%.0f", n / s }')
    DORDER+=("$key")
    log "delivery $label @$conns: sends ${D_SENDS[$key]}/s, delivered ${D_RATE[$key]}/s during the run, backlog $((nd - n1)) drained in ${secs}s"
}

smpp_built() { grep -q 'type = .*smpp' <<<"$("$OTPD" help config 2>&1)"; }

smpp_delivery() {
    local sport
    sport=$(free_port)
    node bench/smsc.mjs "$sport" "$TMP/smsc.count" &
    local smsc=$!
    PIDS+=("$smsc")
    cat >"$TMP/smpp.ini" <<EOF
[delivery]
providers = smsc

[provider.smsc]
type = smpp
host = 127.0.0.1
port = $sport
system_id = bench
password = bench
source_addr = OTPD
registered_delivery = false
EOF
    start_otpd smpp --config "$TMP/smpp.ini"
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$OTPD_URL/readyz")" = 200 ] && break
        sleep 0.1
    done
    delivery_measure "smpp (default window 10)" "$FIRST_CONNS" "cat $TMP/smsc.count"
    stop_pid "$OTPD_PID"
    stop_pid "$smsc"
}

# ---- PostgreSQL ---------------------------------------------------------------------

pg_backend_built() {
    local out
    out=$("$OTPD" --data-dir "$TMP/pgprobe" --db postgres://bench@127.0.0.1:1/bench migrate 2>&1 || true)
    rm -rf "$TMP/pgprobe"
    ! grep -qi "not built\|unknown store URL" <<<"$out"
}

# A throwaway PostgreSQL cluster in $TMP/pg on a free port (Debian's
# postgresql package; the server runs as the postgres user), durable commits
# (synchronous_commit = on). Sets PG_URL.
start_pg_cluster() {
    local bin dir=$TMP/pg port
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bin" ]; then
        apt_install postgresql
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    port=$(free_port)
    mkdir -p "$dir"
    chown postgres "$dir"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U bench >"$dir/initdb.log" 2>&1 ||
        die "initdb failed ($dir/initdb.log)"
    runuser -u postgres -- "$bin/postgres" -D "$dir/data" -p "$port" -k "$dir" \
        -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on -c max_connections=200 \
        >"$dir/log" 2>&1 &
    PG_PID=$!
    PIDS+=("$PG_PID")
    for _ in $(seq 100); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.1
    done
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U bench otpd_bench || die "createdb failed ($dir/log)"
    PG_URL=postgres://bench@127.0.0.1:$port/otpd_bench
}
PG_PID=

# ---- the table ----------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else print "-" }'; }

print_table() {
    local key label conns chg base row n d50 d99 d999 dmax dstall
    printf '\notpd benchmark — %s, %s CPUs (%s), Linux %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
        "$(nproc)" "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" "$(uname -r)"
    printf 'otpd %s (release, %s), %s, wrk -t%s, %ss runs after %ss warm-up\n' \
        "$("$OTPD" version 2>/dev/null | awk '{ print $NF }')" "$BUILD_DIR" \
        "$(nginx -v 2>&1 | sed 's/.*: //')" "$WRK_THREADS" "$DURATION" "$WARMUP"
    printf 'load average before: %s, after: %s; fdatasync of 4 KiB p50/p99 before: %s ms, after: %s ms\n' \
        "$LOAD_BEFORE" "$(cut -d' ' -f1-3 /proc/loadavg)" "$FSYNC_BEFORE" \
        "$(node bench/fsync.mjs "$TMP" | tr ' ' /)"
    printf 'CPU stolen by the hypervisor during the bench: %s cores on average (counted in "other")\n\n' \
        "$(awk -v t=$(($(steal_ticks) - STEAL_BEFORE)) -v hz="$HZ" -v s=$(($(date +%s) - T0)) \
            'BEGIN { printf "%.2f", (s > 0 ? t / hz / s : 0) }')"
    if [ -n "$DISK" ]; then
        read -r d50 d99 d999 dmax dstall <<<"$DISK"
        printf 'disk alone, %ss of durable 128 KiB writes: fdatasync p50 %s, p99 %s, p99.9 %s, max %s ms; %s%% of the time in syncs over 10 ms (over ~1%%: p99 <= 10 ms is out of reach for any durable server on this disk)\n\n' \
            "$DURATION" "$d50" "$d99" "$d999" "$dmax" "$dstall"
    fi
    printf '%-12s %5s %8s %7s %7s %7s %8s %6s %8s %7s %7s %5s\n' workload conns 'req/s' 'x nginx' \
        'p50 ms' 'p99 ms' 'p999 ms' errors 'CPU s/1k' 'RSS MiB' "vs $FIRST_CONNS" other
    for key in "${ORDER[@]}"; do
        label=${key%|*}
        conns=${key#*|}
        if [ -z "${R_RPS[$key]:-}" ]; then
            printf '%-12s %5s  %s\n' "$label" "$conns" "${R_NOTE[$key]:-no result}"
            continue
        fi
        chg=-
        base=${R_RPS["$label|$FIRST_CONNS"]:-}
        if [ "$conns" != "$FIRST_CONNS" ] && [ -n "$base" ] && [ "${base%.*}" -gt 0 ]; then
            chg=$(awk -v a="${R_RPS[$key]}" -v b="$base" 'BEGIN { printf "%+.0f%%", (a / b - 1) * 100 }')
        fi
        printf '%-12s %5s %8.0f %7s %7s %7s %8s %6s %8s %7s %7s %5s%s\n' "$label" "$conns" \
            "${R_RPS[$key]}" "$(ratio "${R_RPS[$key]}" "${R_RPS["nginx|$conns"]:-}")" \
            "$(ms "${R_P50[$key]}")" "$(ms "${R_P99[$key]}")" "$(ms "${R_P999[$key]}")" \
            "${R_ERR[$key]}" "${R_CPU[$key]}" "${R_RSS[$key]}" "$chg" "${R_OTHER[$key]}" \
            "${R_NOTE[$key]:+  (${R_NOTE[$key]})}"
    done
    for row in "${EXTRA_ROWS[@]}"; do
        printf '%s\n' "$row"
    done
    printf '\n%-12s %5s  %s\n' 'otpd threads' conns \
        'CPU s per 1,000 requests (cores busy) — HTTP = MHD-worker x2, writer = otpd-store, checkpointer = otpd-ckpt, dispatcher = otpd'
    for key in "${ORDER[@]}"; do
        [ -n "${R_THREADS[$key]:-}" ] || continue
        [[ $key != nginx* ]] || continue
        printf '%-12s %5s  %s\n' "${key%|*}" "${key#*|}" "$(awk '
            $1 == "MHD-worker" { h = sprintf("HTTP %.3f (%.2f)", $2, $3) }
            $1 == "otpd-store" || $1 == "otpd-pg" { w = sprintf("writer %.3f (%.2f)", $2, $3) }
            $1 == "otpd-ckpt" { k = sprintf("checkpointer %.3f (%.2f)", $2, $3) }
            $1 == "otpd" { d = sprintf("dispatcher %.3f (%.2f)", $2, $3) }
            END { print h "   " w (k ? "   " k : "") "   " d }' <<<"${R_THREADS[$key]}")"
    done
    local any=
    for key in "${ORDER[@]}"; do [ -z "${R_COMMITS[$key]:-}" ] || any=1; done
    if [ -n "$any" ]; then
        printf '\n%-12s %5s %8s %7s %8s %11s %12s %9s   %s\n' 'store commit' conns commits 'per s' \
            'mean ms' 'over 10 ms' 'over 100 ms' 'txns each' '(SQLite writer, from /metrics: a slow commit holds every request in its batch)'
        for key in "${ORDER[@]}"; do
            [ -n "${R_COMMITS[$key]:-}" ] || continue
            read -r n ps mean o10 o100 per <<<"${R_COMMITS[$key]}"
            printf '%-12s %5s %8s %7s %8s %11s %12s %9s\n' "${key%|*}" "${key#*|}" "$n" "$ps" "$mean" \
                "$o10" "$o100" "$per"
        done
    fi
    if [ ${#DORDER[@]} -gt 0 ]; then
        printf '\n%-26s %5s %8s %12s %8s %10s\n' 'delivery (while sending)' conns 'sends/s' \
            'delivered/s' backlog 'drain/s'
        for key in "${DORDER[@]}"; do
            printf '%-26s %5s %8.0f %12s %8s %10s\n' "${key%|*}" "${key#*|}" "${D_SENDS[$key]}" \
                "${D_RATE[$key]}" "${D_BACKLOG[$key]}" "${D_DRAIN[$key]}"
        done
    fi
    local c=$FIRST_CONNS
    printf '\nTargets (issue 7) at %s connections: verify %s x nginx (>= 0.40), send %s x nginx (>= 0.30), p99 send %s ms and verify %s ms (<= 10); RSS with 1M live requests: make bench-rss (<= 64 MiB)\n' \
        "$c" "$(ratio "${R_RPS["verify|$c"]:-}" "${R_RPS["nginx|$c"]:-}")" \
        "$(ratio "${R_RPS["send|$c"]:-}" "${R_RPS["nginx|$c"]:-}")" \
        "$(ms "${R_P99["send|$c"]:-}")" "$(ms "${R_P99["verify|$c"]:-}")"
    for n in "${NOTES[@]}"; do
        printf -- '- %s\n' "$n"
    done
}

# ---- main -------------------------------------------------------------------------

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# CPU time the hypervisor gave to others while this VM wanted it (/proc/stat's
# steal): part of every run's "other" column
steal_ticks() { awk '/^cpu / { print $9; exit }' /proc/stat; }
STEAL_BEFORE=$(steal_ticks)
install_tools
build_otpd
make_tmp
FSYNC_BEFORE=$(node bench/fsync.mjs "$TMP" | tr ' ' /)
log "temporary directory $TMP; load average $LOAD_BEFORE; fdatasync p50/p99 $FSYNC_BEFORE ms"

if has nginx; then
    start_nginx
    for c in $CONNS; do
        measure nginx "$c" fixed.lua "$NGINX_URL" "$NGINX_PID"
    done
    stop_pid "$NGINX_PID"
fi
if has disk; then
    DISK=$(node bench/fsync.mjs "$TMP" "$DURATION" 131072)
    log "disk alone: fdatasync p50/p99/p99.9/max $(cut -d' ' -f1-4 <<<"$DISK" | tr ' ' /) ms, $(cut -d' ' -f5 <<<"$DISK")% of the time in syncs over 10 ms"
fi

start_otpd sqlite
NOTES+=("otpd: fresh SQLite store (synchronous=FULL, the default), file provider, log_level=info to a file, server.threads=2 (the defaults); one bench account with 100,000,000.00 INR of credit")
NOTES+=("$LIMITS_NOTE (BENCH_LIMITS, bench/lib.sh); with the defaults (key_rate=50) the runs would measure 429s")
[ -z "${BENCH_TEMPLATE:-}" ] || NOTES+=("the bench account's sends use a default template (BENCH_TEMPLATE)")
# shellcheck disable=SC2086
suite "" $CONNS
if has delivery; then
    delivery_measure "file provider" "$FIRST_CONNS" "lines $DATA/sms.jsonl"
fi
stop_pid "$OTPD_PID"

if has smpp; then
    if smpp_built; then
        smpp_delivery
        NOTES+=("smpp: bench/smsc.mjs accepts every submit_sm at once and sends no receipts (registered_delivery = false); window = 10, the default")
    else
        EXTRA_ROWS+=("$(printf '%-12s %5s  %s' 'smpp' '-' 'not yet (no smpp provider in this binary)')")
    fi
fi

if has postgres; then
    left=$((BUDGET - ($(date +%s) - T0)))
    pg_runs=$(($(wc -w <<<"$PG_CONNS") * 3))
    # Short of time for full-length runs, shorter ones (5 s after 1 s of
    # warm-up) rather than none; the table's notes say so.
    FULL_DURATION=$DURATION FULL_WARMUP=$WARMUP
    if [ "$left" -lt $((pg_runs * (WARMUP + DURATION) + 40)) ] && [ "$DURATION" -gt 5 ]; then
        DURATION=5
        WARMUP=1
        NOTES+=("PostgreSQL rows: 5 s runs after 1 s of warm-up, to stay within BENCH_BUDGET=${BUDGET}s")
    fi
    if ! pg_backend_built; then
        for w in send verify mixed; do
            EXTRA_ROWS+=("$(printf '%-12s %5s  %s' "$w-pg" '-' 'not yet (PostgreSQL backend not built)')")
        done
    elif [ "$left" -lt $((pg_runs * (WARMUP + DURATION) + 40)) ]; then
        for w in send verify mixed; do
            EXTRA_ROWS+=("$(printf '%-12s %5s  %s' "$w-pg" '-' "skipped: ${left}s left of BENCH_BUDGET=${BUDGET}s (run with BENCH_WORKLOADS=\"postgres send verify mixed\" or a larger budget)")")
        done
    else
        # what is left of the budget, less the runs themselves, for preloading
        MAX_PRELOAD=$(((left - pg_runs * (WARMUP + DURATION) - 20) / 2))
        [ "$MAX_PRELOAD" -le 60 ] || MAX_PRELOAD=60
        if [ -z "${BENCH_PG_URL:-}" ]; then
            start_pg_cluster
        else
            PG_URL=$BENCH_PG_URL
        fi
        start_otpd postgres --db "$PG_URL"
        # the cluster's CPU and memory count as the server's
        SERVER_ALSO=${PG_PID:-}
        # shellcheck disable=SC2086
        suite "-pg" $PG_CONNS
        SERVER_ALSO=
        stop_pid "$OTPD_PID"
        NOTES+=("PostgreSQL: $(if [ -n "${BENCH_PG_URL:-}" ]; then echo "the server at BENCH_PG_URL (its CPU is not counted)"; else echo "a throwaway $(basename "$(dirname "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)")") cluster, default settings, synchronous_commit = on; its processes' CPU counts as the server's (RSS: otpd alone)"; fi); otpd with server.threads=${OTPD_SERVER_THREADS:-2}")
    fi
    DURATION=$FULL_DURATION WARMUP=$FULL_WARMUP # the table's header names the other runs'
fi

print_table
log "done in $(($(date +%s) - T0))s"
