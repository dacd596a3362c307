#!/usr/bin/env bash
# bench/rss.sh — `make bench-rss` (issue 7, opt-in: a few minutes): the
# server's memory with 1,000,000 live (pending, unexpired) requests in the
# store. The target is RSS <= 64 MiB.
#
# It fills a fresh SQLite store through the API (POST /otp/send at 256
# connections, expiresIn = 3600 so that nothing expires during the run), lets
# the dispatcher deliver everything to the file provider, then runs a short
# verify load and a short mixed load (sends, verifies, GET /otp/{id}) at 64
# connections over the full store, and reads VmRSS and VmHWM from
# /proc/PID/status along the way.
#
# Knobs: BENCH_RSS_REQUESTS=1000000, BENCH_RSS_MAX_LOAD=480 (seconds spent
# loading at most; fewer requests are then reported as such), BENCH_DURATION
# (of the verify and mixed runs, default 5 here), and those of bench/lib.sh.
set -euo pipefail
BENCH_DURATION=${BENCH_DURATION:-5}
source "$(dirname "$0")/lib.sh"

N=${BENCH_RSS_REQUESTS:-1000000}
MAX_LOAD=${BENCH_RSS_MAX_LOAD:-480}

live_requests() {
    "$OTPD" --data-dir "$DATA" account show bench --json 2>/dev/null |
        sed -n 's/.*"requests" *: *\([0-9]*\).*/\1/p'
}
# Pending, unexpired requests, read from the database file (read-only).
pending_requests() {
    sqlite3 -readonly "$DATA/otpd.db" \
        "SELECT count(*) FROM otp_requests WHERE status = 'pending' AND expires_at > $(date +%s)000" \
        2>/dev/null || echo "?"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
install_tools
build_otpd
make_tmp
log "temporary directory $TMP; load average $LOAD_BEFORE"
start_otpd rss
RSS_START=$(status_kb VmRSS "$OTPD_PID")

log "loading $N live requests through POST /otp/send (at most ${MAX_LOAD}s)"
load_start=$(date +%s)
have=$(live_requests)
while [ "$have" -lt "$N" ]; do
    spent=$(($(date +%s) - load_start))
    [ "$spent" -lt "$MAX_LOAD" ] || break
    rate=${rate:-8000}
    secs=$(awk -v n=$((N - have)) -v r="$rate" -v left=$((MAX_LOAD - spent)) \
        'BEGIN { s = int(n / r) + 1; if (s > 30) s = 30; if (s > left) s = left; if (s < 1) s = 1; print s }')
    BENCH_KEY=$KEY BENCH_EXPIRES_IN=3600 wrk_run "$TMP/wrk.load" "$secs" 256 send.lua "$OTPD_URL"
    r=$(field rps "$TMP/wrk.load")
    [ -z "$r" ] || rate=${r%.*}
    [ "${rate:-0}" -gt 0 ] || rate=1000
    have=$(live_requests)
    log "  $have requests stored (${rate}/s)"
done
LOAD_SECS=$(($(date +%s) - load_start))
LOADED=$have
wait_drain "lines $DATA/sms.jsonl" >/dev/null
RSS_LOADED=$(status_kb VmRSS "$OTPD_PID")
HWM_LOAD=$(status_kb VmHWM "$OTPD_PID")

# A short verify load and a mixed load over the full store.
PAIRS=$TMP/pairs
: >"$PAIRS"
SEND_RATE=$rate
# verify runs at up to ~2.5 x send, and mixed verifies at a quarter of its rate
BENCH_EXPIRES_IN=3600 ensure_pairs $((SEND_RATE * (WARMUP + DURATION) * 3)) 40
BENCH_KEY=$KEY measure verify 64 verify.lua "$OTPD_URL" "$OTPD_PID"
HWM_VERIFY=$(status_kb VmHWM "$OTPD_PID")
BENCH_EXPIRES_IN=3600 ensure_pairs $((SEND_RATE * (WARMUP + DURATION))) 20
BENCH_KEY=$KEY BENCH_READ_PATH=/otp measure mixed 64 mixed.lua "$OTPD_URL" "$OTPD_PID"
LIVE=$(live_requests)
PENDING=$(pending_requests)
RSS_AFTER=$(status_kb VmRSS "$OTPD_PID")
# measure() resets VmHWM before each run: the peak is the largest of the parts
HWM_ALL=$(printf '%s\n' "$HWM_LOAD" "$HWM_VERIFY" "$(status_kb VmHWM "$OTPD_PID")" | sort -n | tail -n 1)
DB_BYTES=$(du -cb "$DATA"/otpd.db* | tail -n 1 | cut -f1)

printf '\notpd memory with live requests — %s, %s CPUs, Linux %s; load average before: %s, after: %s\n\n' \
    "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" "$(uname -r)" "$LOAD_BEFORE" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-52s %s (%s of them pending and unexpired)\n' "requests in the store (expiresIn 3600 s)" "$LIVE" \
    "$PENDING"
printf '%-52s %s in %s s (%s requests/s)\n' "loaded through the API (256 conns)" "$LOADED" \
    "$LOAD_SECS" "$(awk -v n="$LOADED" -v s="$LOAD_SECS" 'BEGIN { printf "%.0f", s ? n / s : 0 }')"
printf '%-52s %s MiB\n' "RSS after start-up (empty store)" "$(mib "$RSS_START")"
printf '%-52s %s MiB (peak during the load %s MiB)\n' "RSS after the load" "$(mib "$RSS_LOADED")" \
    "$(mib "$HWM_LOAD")"
printf '%-52s %s MiB\n' "RSS after verify + mixed runs (64 conns, ${DURATION}s each)" "$(mib "$RSS_AFTER")"
printf '%-52s %s MiB   target <= 64 MiB: %s\n' "peak RSS over the whole run (VmHWM)" "$(mib "$HWM_ALL")" \
    "$(awk -v k="$HWM_ALL" 'BEGIN { print (k <= 65536 ? "met" : "MISSED") }')"
printf '%-52s %s MiB\n' "database files on disk (otpd.db, -wal, -shm)" \
    "$(awk -v b="$DB_BYTES" 'BEGIN { printf "%.0f", b / 1048576 }')"
printf '%-52s %s req/s, p99 %s ms (%s errors)\n' "verify over the full store" "${R_RPS[verify|64]:-?}" \
    "$(ms "${R_P99[verify|64]:-}")" "${R_ERR[verify|64]:-?}"
printf '%-52s %s req/s, p99 %s ms (%s errors)\n' "mixed over the full store" "${R_RPS[mixed|64]:-?}" \
    "$(ms "${R_P99[mixed|64]:-}")" "${R_ERR[mixed|64]:-?}"
[ "$LOADED" -ge "$N" ] || printf 'note: only %s of %s requests could be loaded in %ss (BENCH_RSS_MAX_LOAD)\n' \
    "$LOADED" "$N" "$MAX_LOAD"
log "done in $(($(date +%s) - T0))s"
