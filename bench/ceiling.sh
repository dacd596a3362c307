#!/usr/bin/env bash
# bench/ceiling.sh — `make bench-ceiling` (opt-in, ~5 minutes): how much of
# the gap between otpd and nginx each part of the send and verify paths makes.
# Not part of `make bench`.
#
# It copies this working tree, applies bench/ceiling.patch (a switch read from
# OTPD_PROBE, in the copy only: otpd itself has no such switch), builds it, and
# runs bench/run.sh's send and verify workloads at 64 connections once per
# mode, each with its own nginx reference:
#   full            nothing skipped: what `make bench` measures
#   send-handoff    a send goes to the writer and back, but its transaction
#                   runs no SQL (the batch's BEGIN and an empty COMMIT remain)
#   send-now        a send answers its 201 as soon as the HTTP thread has done
#                   its part (key, JSON, phone number, code and HMAC, text,
#                   sealing): nothing reaches the store or the dispatcher
#   verify-handoff  as send-handoff, for verify (the sends are real)
#   verify-now      as send-now, for verify: 200 after the key check, the JSON
#                   and the HMAC of the guess
# "now" is the ceiling of the HTTP side as it is; "handoff" adds the trip to
# the writer thread and back (suspend, queue, resume); "full" adds the SQL, the
# commit and its fdatasync, the checkpoints and, for send, the dispatcher.
#
# Knobs: BENCH_CEILING_MODES (the modes above, in that order by default), and
# those of bench/lib.sh and bench/run.sh (BENCH_DURATION defaults to 8 here).
set -euo pipefail
export BENCH_DURATION=${BENCH_DURATION:-8}
source "$(dirname "$0")/lib.sh"

MODES=${BENCH_CEILING_MODES:-full send-handoff send-now verify-handoff verify-now}

for mode in $MODES; do
    case $mode in full | send-handoff | send-now | verify-handoff | verify-now) ;;
    *) die "unknown mode $mode (BENCH_CEILING_MODES)" ;;
    esac
done
git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || die "bench/ceiling.sh copies a git checkout's files (git ls-files)"
make_tmp
log "copying the working tree to $TMP/tree and applying bench/ceiling.patch"
mkdir "$TMP/tree"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
    (cd "$ROOT" && tar --null --ignore-failed-read -T - -cf -) | tar -C "$TMP/tree" -xf - ||
    die "could not copy the working tree to $TMP/tree"
(cd "$TMP/tree" && git apply "$ROOT/bench/ceiling.patch") ||
    die "bench/ceiling.patch no longer applies: update it to the current src/"

# bench/run.sh's rows: "label conns req/s ratio p50 p99 p999 errors cpu rss vs64
# other", then the row's notes in parentheses, if any; a run without figures
# prints "label conns (note)" instead.
row() { awk -v w="$1" '$1 == w && $2 == 64 && $3 ~ /^[0-9]+$/ && NF >= 12 { print; exit }' "$2"; }
no_row() { awk -v w="$1" '$1 == w && $2 == 64 && $3 !~ /^[0-9]+$/ { $1 = $2 = ""; sub(/^ +/, ""); print; exit }' "$2"; }
threads() { awk -v w="$1" '$1 == w && $2 == 64 && $3 == "HTTP" { $1 = $2 = ""; sub(/^ +/, ""); print; exit }' "$2"; }

RESULTS=()
for mode in $MODES; do
    case $mode in
    full) workloads="nginx send verify" ;;
    send-*) workloads="nginx send" ;;
    verify-*) workloads="nginx send verify" ;;
    esac
    log "mode $mode: $workloads"
    out=$TMP/$mode.txt
    # The copy's bench/run.sh builds the patched tree in its own build-bench.
    if ! OTPD_WRAP="env OTPD_PROBE=$mode" BENCH_WORKLOADS="$workloads" BENCH_CONNECTIONS=64 \
        BENCH_KEEP=0 bash "$TMP/tree/bench/run.sh" >"$out" 2>"$TMP/$mode.log"; then
        tail -n 15 "$TMP/$mode.log" >&2
        die "bench/run.sh failed in mode $mode (its log above)"
    fi
    nginx=$(row nginx "$out" | awk '{ print $3 }')
    for w in send verify; do
        case $mode in full | "$w"-*) ;; *) continue ;; esac
        r=$(row "$w" "$out")
        if [ -z "$r" ]; then
            RESULTS+=("$(printf '%-15s %-7s no result: %s' "$mode" "$w" "$(no_row "$w" "$out")")|-")
            continue
        fi
        note=$(sed -n 's/.*  (\(.*\))$/\1/p' <<<"$r")
        RESULTS+=("$(awk -v m="$mode" -v n="${nginx:--}" -v note="$note" \
            '{ printf "%-15s %-7s %8s %7s %8s %6s %9s %6s %8s  %s", m, $1, $3, $4, $6, $8, $9, $12, n, note }' \
            <<<"$r")|$(threads "$w" "$out")")
    done
done

echo
echo "otpd ceilings — $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) CPUs, 64 connections, ${BENCH_DURATION}s runs (bench/ceiling.sh)"
echo "mode            load       req/s x nginx   p99 ms errors  CPU s/1k  other    nginx  notes (bench/run.sh's)"
for r in "${RESULTS[@]}"; do
    echo "${r%%|*}"
done
echo
echo "CPU s per 1,000 requests by thread (cores busy)"
for r in "${RESULTS[@]}"; do
    printf '%-23s %s\n' "$(cut -c1-23 <<<"${r%%|*}")" "${r#*|}"
done
echo
echo "Each mode is its own bench/run.sh run with its own nginx reference; compare"
echo "the ratios, and the CPU per request, rather than req/s across rows."
