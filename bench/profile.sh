#!/usr/bin/env bash
# bench/profile.sh — where otpd's time goes on the send and verify paths (the
# profile behind docs/performance.md). Not part of `make bench`; run it by hand:
#
#   bash bench/profile.sh            both parts below, ~2 minutes
#   BENCH_PROFILE=perf bash bench/profile.sh
#   BENCH_PROFILE=callgrind bash bench/profile.sh    (= make bench-instructions)
#
# perf: the release build under a send load and a verify load at 64
#   connections (wrk, as in bench/run.sh), sampled with `perf record -g
#   --call-graph dwarf` (this VM has no hardware counters: cpu-clock). Time
#   includes the kernel (TCP over loopback, fdatasync, futexes). Reported: the
#   share of each DSO, the top functions by self time, and the inclusive share
#   of otpd's own stages.
# callgrind: the same binary under valgrind --tool=callgrind, instrumented
#   only during a steady load (callgrind_control -i on/off), so the counts are
#   user-space instructions per request, independent of the machine's noise:
#   send, verify, and the status read (GET /otp/{id} of the verified requests).
#   Reported: instructions per request, and the inclusive share of otpd's
#   stages and of the libraries (libphonenumber, jansson, SQLite, libsodium,
#   libmicrohttpd). Each count is also compared with bench/instructions.ref:
#   the script ends with status 1 if one is more than BENCH_INSTR_TOLERANCE
#   percent (default 5) above its reference or has none (and stops at once if
#   a request failed: an error reply is cheaper), so that a change that makes a
#   request dearer is seen before it lands (as docs/performance.md's item 22
#   was not).
#
# Output goes to stdout and to $BENCH_PROFILE_OUT (default
# /tmp/otpd-profile); perf.data and callgrind.out files are kept there for
# `perf report -i` and `callgrind_annotate`.
set -euo pipefail
BENCH_DURATION=${BENCH_DURATION:-8}
source "$(dirname "$0")/lib.sh"

WHAT=${BENCH_PROFILE:-perf callgrind sql}
INSTR_REF=$ROOT/bench/instructions.ref
INSTR_TOLERANCE=${BENCH_INSTR_TOLERANCE:-5}
INSTR_OVER=() # "workload +N.N%" for each count above its reference
OUT=${BENCH_PROFILE_OUT:-/tmp/otpd-profile}
mkdir -p "$OUT"

# otpd's stages, by function (inclusive): what bench/profile.sh reports.
STAGES=(
    'on_request|otpd request callback (routing + handlers + reply)'
    'on_completed|request completion (log line, free)'
    'otp_api_send|send handler on the HTTP thread (all of it)'
    'otp_api_verify|verify handler on the HTTP thread (all of it)'
    'otp_api_status|status handler on the HTTP thread (all of it)'
    'sq_request_status|the status read (SQLite: request and messages in one read txn)'
    'otp_api_authenticate|API key check (SHA-256 + key lookup)'
    'otp_http_json_body|request JSON parse (jansson)'
    'otp_phone_parse|phone number parse + validate (libphonenumber)'
    'otp_code_hash|code HMAC'
    'otp_api_render|SMS text render'
    'otp_seal|outbox text sealing (XChaCha20-Poly1305)'
    'otp_http_reply_data|reply JSON build (jansson)'
    'otp_http_reply_error|error reply JSON build (jansson)'
    'json_pack|json_pack (jansson)'
    'json_dumps|json_dumps (jansson)'
    'otp_log|the request log line'
    'writer_main|store writer thread (group commit)'
    'sq_txn_run|txn bodies (SQL statements)'
    'sqlite3_step|sqlite3_step (all threads)'
    'run|dispatcher thread'
)

phase_perf() {
    local name=$1 script=$2 data=$OUT/perf.$1.data
    BENCH_KEY=$KEY BENCH_PAIRS=$PAIRS BENCH_PAIRS_LEFT=$PAIRS.left wrk_run "$TMP/warm" 2 64 "$script" \
        "$OTPD_URL"
    [ ! -f "$PAIRS.left" ] || mv "$PAIRS.left" "$PAIRS"
    perf record -q -F 499 -g --call-graph dwarf,16384 -p "$OTPD_PID" -o "$data" \
        -- sleep "$DURATION" 2>/dev/null &
    local perf_pid=$!
    BENCH_KEY=$KEY BENCH_PAIRS=$PAIRS BENCH_PAIRS_LEFT=$PAIRS.left wrk_run "$TMP/wrk.$name" \
        "$DURATION" 64 "$script" "$OTPD_URL"
    wait "$perf_pid" || true
    [ ! -f "$PAIRS.left" ] || mv "$PAIRS.left" "$PAIRS"
    {
        set +e +o pipefail # `| head` may cut a pipe short
        echo
        echo "=== perf: $name at 64 connections: $(field rps "$TMP/wrk.$name") req/s, p99 $(ms "$(field p99_us "$TMP/wrk.$name")") ms; load average $(cut -d' ' -f1-3 /proc/loadavg)"
        [ "$(field exhausted "$TMP/wrk.$name")" != 1 ] || echo "WARNING: ran out of pending requests; this profile is short"
        echo "samples: $(perf report -i "$data" --stdio -g none 2>/dev/null | sed -n 's/^# Samples: \([^ ]*\).*/\1/p' | head -n 1)"
        echo "--- share of samples by DSO (self)"
        perf report -i "$data" --no-children -g none --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -15
        echo "--- top functions by self time"
        perf report -i "$data" --no-children -g none --sort dso,sym --stdio 2>/dev/null | grep -E '^ +[0-9]' |
            head -30
        echo "--- otpd's stages, inclusive (children) share of all samples"
        perf report -i "$data" --children -g none --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' >"$TMP/children"
        local s fn what
        for s in "${STAGES[@]}"; do
            fn=${s%%|*}
            what=${s#*|}
            awk -v fn="$fn" -v what="$what" '
                { name = $NF }
                name ~ ("^" fn "$") { sub(/%/, "", $1); if ($1 + 0 > best) best = $1 + 0 }
                END { if (best > 0) printf "  %6.2f%%  %-24s %s\n", best, fn, what }' "$TMP/children"
        done
    } | tee -a "$OUT/report.txt"
}

phase_callgrind() {
    local name=$1 script=$2 conns=8 secs=$DURATION
    local cg=$OUT/callgrind.$name.out
    callgrind_control -i off "$OTPD_PID" >/dev/null 2>&1 || true
    BENCH_KEY=$KEY BENCH_PAIRS=$PAIRS BENCH_PAIRS_LEFT=$PAIRS.left wrk_run "$TMP/warm" 2 "$conns" \
        "$script" "$OTPD_URL"
    [ ! -f "$PAIRS.left" ] || mv "$PAIRS.left" "$PAIRS"
    callgrind_control -z "$OTPD_PID" >/dev/null
    callgrind_control -i on "$OTPD_PID" >/dev/null
    BENCH_KEY=$KEY BENCH_PAIRS=$PAIRS BENCH_PAIRS_LEFT=$PAIRS.left wrk_run "$TMP/wrk.cg.$name" \
        "$secs" "$conns" "$script" "$OTPD_URL"
    callgrind_control -i off "$OTPD_PID" >/dev/null
    [ ! -f "$PAIRS.left" ] || mv "$PAIRS.left" "$PAIRS"
    sleep 1 # let the store commit and resume what was in flight (not counted: off now)
    rm -f "$CGDIR"/callgrind.out.*
    callgrind_control -d "$name" "$OTPD_PID" >/dev/null
    local f=
    for _ in $(seq 50); do
        f=$(ls -t "$CGDIR"/callgrind.out.* 2>/dev/null | head -n 1 || true)
        [ -z "$f" ] || break
        sleep 0.2
    done
    [ -n "$f" ] || die "callgrind wrote no dump in $CGDIR"
    sleep 0.5
    cp "$f" "$cg"
    local req total errors
    req=$(field requests "$TMP/wrk.cg.$name")
    errors=$(($(field err_status "$TMP/wrk.cg.$name") + $(field err_connect "$TMP/wrk.cg.$name") +
        $(field err_read "$TMP/wrk.cg.$name") + $(field err_write "$TMP/wrk.cg.$name") +
        $(field err_timeout "$TMP/wrk.cg.$name")))
    callgrind_annotate --inclusive=yes --threshold=100 "$cg" 2>/dev/null >"$TMP/cg.$name.txt"
    total=$(awk '/PROGRAM TOTALS/ { gsub(/,/, "", $1); print $1; exit }' "$TMP/cg.$name.txt")
    # a count per request is only worth comparing if every request was answered
    # as it should be (an error reply is cheaper) and both numbers are there
    [[ "$req" =~ ^[1-9][0-9]*$ ]] || die "callgrind $name: wrk reported no requests"
    [[ "$total" =~ ^[0-9]+$ ]] || die "callgrind $name: no instruction total in $cg"
    [ "$errors" -eq 0 ] || die "callgrind $name: $errors of $req requests failed (server log: $DATA/otpd.log)"
    {
        set +e +o pipefail # `| head` may cut a pipe short
        echo
        echo "=== callgrind: $name, $req requests at $conns connections under valgrind"
        awk -v t="$total" -v n="$req" 'BEGIN { printf "user-space instructions per request: %.0f (all threads)\n", t / n }'
        instr_change "$name" "$total" "$req" | sed 's/^/reference: /'
        echo "--- inclusive instructions per request, by stage"
        local s fn what
        for s in "${STAGES[@]}"; do
            fn=${s%%|*}
            what=${s#*|}
            awk -v fn="$fn" -v what="$what" -v t="$total" -v n="$req" '
                /^ *[0-9,]+ / {
                    v = $1; gsub(/,/, "", v)
                    name = $0; sub(/^ *[0-9,]+ +\([^)]*\) +/, "", name); sub(/^ *[0-9,]+ +/, "", name)
                    sub(/ \[.*$/, "", name); sub(/^[^:]*:/, "", name)
                    if (name ~ ("^" fn "$") && v + 0 > best) best = v + 0
                }
                END { if (best > 0) printf "  %9.0f  %5.1f%%  %-24s %s\n", best / n, best / t * 100, fn, what }' \
                "$TMP/cg.$name.txt"
        done
        echo "--- by library (self instructions)"
        callgrind_annotate --inclusive=no --threshold=100 "$cg" 2>/dev/null |
            awk -v t="$total" '/^ *[0-9,]+ / && !/PROGRAM TOTALS/ {
                    v = $1; gsub(/,/, "", v)
                    obj = $0; if (match(obj, /\[[^]]*\]/)) obj = substr(obj, RSTART + 1, RLENGTH - 2); else obj = "?"
                    sub(/.*\//, "", obj); by[obj] += v
                }
                END { for (o in by) printf "  %5.1f%%  %s\n", by[o] / t * 100, o }' | sort -rn | head -12
        echo "--- top functions by self instructions"
        callgrind_annotate --inclusive=no --threshold=100 "$cg" 2>/dev/null |
            awk -v t="$total" '/^ *[0-9,]+ / && !/PROGRAM TOTALS/ {
                    v = $1; gsub(/,/, "", v); name = $0; sub(/^[^)]*\) +/, "", name)
                    printf "  %5.1f%%  %s\n", v / t * 100, substr(name, 1, 110) }' |
            head -25
    } | tee -a "$OUT/report.txt"
    local change
    change=$(instr_change "$name" "$total" "$req" | sed -n 's/.*: \([-+][0-9.]*\)%$/\1/p')
    if [ -z "$change" ]; then
        INSTR_OVER+=("$name (no reference)")
    elif awk -v c="$change" -v tol="$INSTR_TOLERANCE" 'BEGIN { exit !(c > tol) }'; then
        INSTR_OVER+=("$name $change%")
    fi
}

# instr_change NAME TOTAL REQUESTS: the count per request against
# bench/instructions.ref's, as "REF (bench/instructions.ref): +N.N%".
instr_change() {
    local ref
    ref=$(awk -v w="$1" '$1 == w { print $2; exit }' "$INSTR_REF")
    if [ -z "$ref" ]; then
        echo "none for $1 in bench/instructions.ref"
        return
    fi
    awk -v t="$2" -v n="$3" -v r="$ref" \
        'BEGIN { printf "%d (bench/instructions.ref): %+.1f%%\n", r, (t / n / r - 1) * 100 }'
}

# sql: every sqlite3_step() timed per statement by the LD_PRELOAD shim
# bench/sqlstat.c (wall time; COMMIT includes its fdatasync and any WAL
# checkpoint) during a send run and a verify run at 64 connections.
sql_report() {
    local name=$1 file=$2 req=$3
    {
        set +e +o pipefail
        echo
        echo "=== sql: $name at 64 connections, $req requests, $(field rps "$TMP/wrk.sql.$name") req/s, p99 $(ms "$(field p99_us "$TMP/wrk.sql.$name")") ms (timing every sqlite3_step slows the server)"
        echo "    per request: calls, µs; per call: mean µs, max µs; thread; statement"
        local last
        last=$(grep -c '^--- report' "$file")
        awk -v last="$last" '/^--- report/ { n++; next } n == last' "$file" | sort -k2 -rn |
            awk -v r="$req" '{ calls = $1; ms = $2; mean = $3; max = $4; th = $5
                    $1 = $2 = $3 = $4 = $5 = ""; sql = substr($0, 6)
                    printf "  %6.2f %7.2f   %7.2f %9.1f  %-10s %s\n", calls / r, ms * 1000 / r, mean, max, th, substr(sql, 1, 90) }' |
            head -25
    } | tee -a "$OUT/report.txt"
}

phase_sql() {
    local name=$1 script=$2 file=$OUT/sqlstat.txt
    BENCH_KEY=$KEY BENCH_PAIRS=$PAIRS BENCH_PAIRS_LEFT=$PAIRS.left wrk_run "$TMP/warm" 2 64 "$script" \
        "$OTPD_URL"
    [ ! -f "$PAIRS.left" ] || mv "$PAIRS.left" "$PAIRS"
    kill -USR2 "$OTPD_PID"
    curl -s -o /dev/null "$OTPD_URL/wallet" -H "X-API-Key: $KEY" # the next step writes the report
    BENCH_KEY=$KEY BENCH_PAIRS=$PAIRS BENCH_PAIRS_LEFT=$PAIRS.left wrk_run "$TMP/wrk.sql.$name" \
        "$DURATION" 64 "$script" "$OTPD_URL"
    [ ! -f "$PAIRS.left" ] || mv "$PAIRS.left" "$PAIRS"
    kill -USR2 "$OTPD_PID"
    curl -s -o /dev/null "$OTPD_URL/wallet" -H "X-API-Key: $KEY"
    sleep 0.3
    sql_report "$name" "$file" "$(field requests "$TMP/wrk.sql.$name")"
}

install_tools perf valgrind
build_otpd
make_tmp
: >"$OUT/report.txt"
log "profiling into $OUT; load average $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ " $WHAT " == *" perf "* ]]; then
    start_otpd perf
    PAIRS=$TMP/pairs.perf
    : >"$PAIRS"
    SEND_RATE=8000
    phase_perf send send.lua
    # enough pending requests for warm-up + run at up to 2.5 x the send rate
    preload $(((DURATION + 2) * 5 / 2 + 1))
    phase_perf verify verify.lua
    stop_pid "$OTPD_PID"
fi

if [[ " $WHAT " == *" callgrind "* ]]; then
    CGDIR=$TMP/callgrind
    mkdir -p "$CGDIR"
    OTPD_WRAP="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$CGDIR/callgrind.out.%p" \
        start_otpd callgrind
    PAIRS=$TMP/pairs.cg
    : >"$PAIRS"
    phase_callgrind send send.lua
    # under valgrind a verify is about twice as fast as a send
    preload $(((DURATION + 2) * 2 + 4)) 8
    cp "$PAIRS" "$PAIRS.all" # the verified requests, for the status reads
    phase_callgrind verify verify.lua
    PAIRS=$PAIRS.all phase_callgrind status status.lua
    stop_pid "$OTPD_PID"
fi
if [[ " $WHAT " == *" sql "* ]]; then
    rm -f "$OUT/sqlstat.txt"
    cc -O2 -shared -fPIC -o "$TMP/sqlstat.so" bench/sqlstat.c -ldl -lpthread || die "cannot build bench/sqlstat.c"
    OTPD_WRAP="env LD_PRELOAD=$TMP/sqlstat.so SQLSTAT_OUT=$OUT/sqlstat.txt" start_otpd sql
    PAIRS=$TMP/pairs.sql
    : >"$PAIRS"
    phase_sql send send.lua
    preload $(((DURATION + 2) * 5 / 2 + 1))
    phase_sql verify verify.lua
    stop_pid "$OTPD_PID"
fi
log "report in $OUT/report.txt"
if [ ${#INSTR_OVER[@]} -gt 0 ]; then
    log "instructions per request more than $INSTR_TOLERANCE% above bench/instructions.ref, or not in it: ${INSTR_OVER[*]}"
    exit 1
fi
