# bench/lib.sh — what bench/run.sh, bench/rss.sh and bench/profile.sh share:
# installing the tools, building otpd, starting and stopping the servers,
# running wrk and reading the server's CPU and memory. Sourced, not run.
#
# Everything started here is recorded in PIDS and stopped by the EXIT trap
# (TERM, then KILL after 10 s); nothing is stopped by name. Loads go to
# 127.0.0.1 only and are bounded in time (wrk -d).
#
# Knobs (environment), shared by the three scripts:
#   BENCH_DURATION=10        seconds of each measured run
#   BENCH_WARMUP=2           seconds of warm-up before each measured run
#   BENCH_CONNECTIONS="64 256"
#   BENCH_WRK_THREADS=2
#   BENCH_BUILD_DIR=build-bench
#   BENCH_KEEP=1             keep the temporary directory (logs, data, wrk output)
#   BENCH_TEMPLATE=TEXT      give the bench account a default template with this
#                            body (e.g. "{{code}} is your code"); without it the
#                            sends use the built-in text

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNECTIONS:-64 256}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
BUILD_DIR=${BENCH_BUILD_DIR:-build-bench}
KEEP=${BENCH_KEEP:-0}
HZ=$(getconf CLK_TCK)
T0=$(date +%s)
FIRST_CONNS=${CONNS%% *}

log() { printf '[bench %3ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---- what it needs ------------------------------------------------------------

SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)

# apt_install PACKAGE…: Debian packages, without starting their services (a
# policy-rc.d answering 101 is put in place for the install if there is none).
apt_install() {
    log "installing $* (Debian)"
    local policy=/usr/sbin/policy-rc.d placed=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee $policy >/dev/null
        "${SUDO[@]}" chmod 755 $policy
        placed=1
    fi
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@" \
        >/dev/null
    [ $placed -eq 0 ] || "${SUDO[@]}" rm -f $policy
}

# install_tools [COMMAND…]: otpd's build packages (scripts/deps.sh), wrk and
# nginx, and the packages of any further commands named (perf, valgrind).
install_tools() {
    bash scripts/deps.sh >/dev/null || die "scripts/deps.sh failed"
    local missing=() c
    for c in wrk nginx "$@"; do
        command -v "$c" >/dev/null && continue
        case $c in
        perf) missing+=(linux-perf) ;;
        *) missing+=("$c") ;;
        esac
    done
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# build_otpd [MESON_OPTION…]: release build of the otpd binary; sets OTPD.
build_otpd() {
    log "building otpd (release, test hooks off) in $BUILD_DIR"
    if [ -f "$BUILD_DIR/build.ninja" ]; then
        meson setup --reconfigure "$BUILD_DIR" -Dbuildtype=release -Dtest_hooks=false "$@" >/dev/null
    else
        rm -rf "$BUILD_DIR"
        meson setup "$BUILD_DIR" -Dbuildtype=release -Dtest_hooks=false "$@" >/dev/null
    fi
    ninja -C "$BUILD_DIR" src/otpd >/dev/null || die "build failed (ninja -C $BUILD_DIR src/otpd)"
    OTPD=$ROOT/$BUILD_DIR/src/otpd
}

# ---- processes we start, and stopping them --------------------------------------

PIDS=()
TMP=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$KEEP" = 1 ]; then
            log "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_tmp() {
    TMP=$(mktemp -d /tmp/otpd-bench.XXXXXX)
    chmod 755 "$TMP" # the PostgreSQL cluster runs as its own user
}

# Stops one process we started (TERM, KILL after 15 s), and forgets it.
stop_pid() {
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# A TCP port no socket uses (others run tests on this machine too), below the
# kernel's ephemeral range: a port that a closed connection left in TIME-WAIT
# cannot always be bound again (nginx failed so once).
free_port() {
    local p lo
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$lo" -gt 21000 ] || lo=50000
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % (lo - 20000)))
        if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null &&
            [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
            echo $p
            return
        fi
    done
    die "no free port"
}

wait_http() {
    local url=$1 pid=$2
    for _ in $(seq 1200); do
        curl -s -o /dev/null "$url" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# ---- readings -------------------------------------------------------------------

# Clock ticks of user+system time of the given processes (all their threads).
cpu_ticks() {
    local sum=0 pid t
    for pid in "$@"; do
        # the fields after comm's ")": state is 1, utime 12, stime 13
        t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
        sum=$((sum + t))
    done
    echo $sum
}

# "name ticks" lines: user+system clock ticks of a process's threads, summed
# per thread name (otpd: MHD-worker = HTTP, otpd-store = the SQLite writer,
# otpd = the dispatcher, the main thread only waits for signals).
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm" 2>/dev/null)" \
            "$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "$t/stat" 2>/dev/null || echo 0)"
    done | awk '{ s[$1] += $2 } END { for (n in s) print n, s[n] }'
}

# Busy clock ticks of the whole machine (all CPUs) since boot: user, nice,
# system, irq, softirq, steal. (Softirq time, e.g. the loopback TCP work, is
# also in the utime+stime of the process it interrupted, as this kernel counts
# it, so it must stay in for the sums to match.)
machine_busy() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# Clock ticks of all kernel threads (children of kthreadd): ksoftirqd doing
# the loopback traffic's network work, kworkers and jbd2 doing the disk's.
kthread_ticks() {
    cat /proc/[0-9]*/stat 2>/dev/null |
        awk '{ sub(/.*\) /, ""); if ($2 == 2) s += $12 + $13 } END { print s + 0 }'
}

# Resets the peak RSS (VmHWM) of the given processes to their current RSS.
hwm_reset() {
    local pid
    for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
}

# Sum of a /proc/PID/status field (VmHWM, VmRSS) of the given processes, KiB.
status_kb() {
    local what=$1 sum=0 pid v
    shift
    for pid in "$@"; do
        v=$(awk -v f="$what:" '$1 == f { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo $sum
}

# A process and all its descendants.
descendants() {
    local p
    echo "$1"
    for p in $(pgrep -P "$1" || true); do descendants "$p"; done
}

# The processes of a server: the pid and its descendants (nginx's workers),
# and those of SERVER_ALSO (the PostgreSQL cluster of an otpd on PostgreSQL).
server_pids() {
    descendants "$1"
    [ -z "${SERVER_ALSO:-}" ] || descendants "$SERVER_ALSO"
}

lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

# ---- wrk -------------------------------------------------------------------------

# Each wrk run sends to its own numbers: +91 PPI… with PPI from this counter.
PREFIX_N=0
PREFIX=
next_prefix() {
    local prefixes=(98 99 97 96 95 94 93 92 91 90)
    PREFIX="${prefixes[$((PREFIX_N / 10 % 10))]}$((PREFIX_N % 10))"
    PREFIX_N=$((PREFIX_N + 1))
}

# wrk_run OUT SECONDS CONNS SCRIPT URL: one wrk run (the BENCH_* environment
# comes from the caller); OUT gets wrk's output and OUT.cpu the CPU seconds
# wrk used.
wrk_run() {
    local out=$1 secs=$2 conns=$3 script=$4 url=$5
    next_prefix
    (
        BENCH_PREFIX=$PREFIX BENCH_LUA_DIR=$ROOT/bench/lua BENCH_THREADS=$WRK_THREADS \
            wrk -t"$WRK_THREADS" -c"$conns" -d"${secs}s" --timeout 5s -s "$ROOT/bench/lua/$script" \
            "$url" >"$out" 2>&1
        times >"$out.times" # not in a pipeline: that would be a subshell without children
    ) || true
    awk 'NR == 2 { gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }' "$out.times" >"$out.cpu"
}

# fit_to_pool KEY WARMUP_OUTPUT USES: sets FIT_SECS, the measured run's length.
# A run that takes pending requests from the pool (USES of them per request: 1
# for verify, "1/4" for mixed) must not run out: a thread that runs out stops,
# and wrk divides what it did by the whole run, idle time included. So when the
# pool would not last DURATION at the warm-up's rate (with a fifth to spare),
# the run is shortened to what it lasts, at least 2 s (or DURATION if less),
# and its row and the notes say so. In the runs seen the warm-up ran at least
# as fast as the run after it (60.7k/s before a 45.5k/s run, once), so a fitted
# run may be shorter than it needed to be; one that runs out all the same is
# marked "ran out".
fit_to_pool() {
    local key=$1 warm=$2 uses=$3 have rps secs
    have=$(lines "$PAIRS")
    rps=$(field rps "$warm")
    secs=$(awk -v h="$have" -v r="${rps:-0}" -v u="$uses" -v d="$DURATION" 'BEGIN {
        split(u, f, "/"); per = f[1] / (f[2] ? f[2] : 1)
        s = r * per > 0 ? int(h * 5 / 6 / (r * per)) : d
        if (s > d) s = d; if (s < 2) s = (d < 2 ? d : 2); print s }')
    if [ "$secs" -lt "$DURATION" ]; then
        R_NOTE[$key]="a ${secs} s run, see the notes"
        NOTES+=("${key%|*} @${key#*|}: a ${secs} s run, not ${DURATION} s: the $have pending requests left after the warm-up (${rps}/s) last about that long")
    fi
    FIT_SECS=$secs
}

# field NAME FILE: a key=value of the BENCH line of a wrk output.
field() { sed -n "s/^BENCH .*\b$1=\([^ ]*\).*/\1/p" "$2" | tail -n 1; }

ms() { awk -v u="$1" 'BEGIN { if (u == "") print "-"; else printf "%.2f", u / 1000 }'; }

# Results, keyed "label|conns".
declare -A R_RPS R_P50 R_P99 R_P999 R_ERR R_CPU R_RSS R_OTHER R_NOTE R_THREADS R_COMMITS

# commit_counts URL: the store writer's commit histogram and batch counters
# from otpd's /metrics as "commits le_10ms le_100ms sum_s batches txns", or
# nothing (nginx, PostgreSQL).
commit_counts() {
    curl -s --max-time 2 "$1/metrics" 2>/dev/null | awk '
        /^otpd_store_commit_duration_seconds_bucket\{le="0.01"\} / { a = $2 }
        /^otpd_store_commit_duration_seconds_bucket\{le="0.1"\} / { b = $2 }
        /^otpd_store_commit_duration_seconds_sum / { s = $2 }
        /^otpd_store_commit_duration_seconds_count / { n = $2 }
        /^otpd_store_batches_total / { g = $2 }
        /^otpd_store_batched_transactions_total / { t = $2 }
        END { if (n != "") print n, a, b, s, g, t }'
}
ORDER=()

# measure LABEL CONNS SCRIPT URL SERVERPID: a warm-up run, then the measured
# run with the server's CPU and peak RSS and the machine's other load; the
# results go into the R_* tables. Verify and mixed runs take their pairs from
# $PAIRS and leave there what they did not use.
measure() {
    local label=$1 conns=$2 script=$3 url=$4 spid=$5
    local key="$label|$conns" out="$TMP/wrk.${label// /_}.$conns" pids
    local left= dur=$DURATION
    [ -z "$PAIRS" ] || left=$PAIRS.left
    if [ "$WARMUP" -gt 0 ]; then
        BENCH_PAIRS=$PAIRS BENCH_PAIRS_LEFT=$left wrk_run "$out.warm" "$WARMUP" "$conns" "$script" "$url"
        [ -z "$left" ] || [ ! -f "$left" ] || mv "$left" "$PAIRS"
        if [ -n "${BENCH_USES:-}" ]; then
            fit_to_pool "$key" "$out.warm" "$BENCH_USES"
            dur=$FIT_SECS
        fi
    fi
    pids=$(server_pids "$spid" | tr '\n' ' ')
    # peak RSS: the server's own processes (a PostgreSQL cluster's shared
    # buffers would be counted once per backend)
    local own
    own=$(descendants "$spid" | tr '\n' ' ')
    # shellcheck disable=SC2086
    hwm_reset $own
    local c0 b0 c1 b1 wcpu req th0 th1
    th0=$(thread_ticks "$spid")
    local k0 k1
    k0=$(commit_counts "$url")
    # shellcheck disable=SC2086
    c0=$(cpu_ticks $pids)
    b0=$(($(machine_busy) - $(kthread_ticks)))
    BENCH_PAIRS=$PAIRS BENCH_PAIRS_LEFT=$left wrk_run "$out" "$dur" "$conns" "$script" "$url"
    # shellcheck disable=SC2086
    c1=$(cpu_ticks $pids)
    b1=$(($(machine_busy) - $(kthread_ticks)))
    th1=$(thread_ticks "$spid")
    k1=$(commit_counts "$url")
    [ -z "$left" ] || [ ! -f "$left" ] || mv "$left" "$PAIRS"
    ORDER+=("$key")
    if ! grep -q '^BENCH ' "$out"; then
        log "wrk failed for $label at $conns connections:"
        sed 's/^/    /' "$out" >&2
        R_NOTE[$key]="${R_NOTE[$key]:+${R_NOTE[$key]}; }wrk failed"
        return
    fi
    wcpu=$(cat "$out.cpu" 2>/dev/null || echo 0)
    req=$(field requests "$out")
    R_RPS[$key]=$(field rps "$out")
    R_P50[$key]=$(field p50_us "$out")
    R_P99[$key]=$(field p99_us "$out")
    R_P999[$key]=$(field p999_us "$out")
    R_ERR[$key]=$(($(field err_status "$out") + $(field err_connect "$out") + $(field err_read "$out") +
        $(field err_write "$out") + $(field err_timeout "$out")))
    R_CPU[$key]=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$req" \
        'BEGIN { printf "%.3f", n ? t / hz / n * 1000 : 0 }')
    # shellcheck disable=SC2086
    R_RSS[$key]=$(awk -v k="$(status_kb VmHWM $own)" 'BEGIN { printf "%.1f", k / 1024 }')
    R_OTHER[$key]=$(awk -v b=$((b1 - b0)) -v s=$((c1 - c0)) -v w="$wcpu" -v hz="$HZ" -v d="$dur" \
        'BEGIN { o = ((b - s) / hz - w) / d; if (o < 0) o = 0; printf "%.2f", o }')
    # per thread: CPU s per 1,000 requests and how busy the thread was (cores)
    R_THREADS[$key]=$(join <(sort <<<"$th0") <(sort <<<"$th1") |
        awk -v hz="$HZ" -v n="$req" -v d="$dur" '{ t = $3 - $2; if (t > 0 && n > 0)
            printf "%s %.3f %.2f\n", $1, t / hz / n * 1000, t / hz / d }')
    # the writer's COMMITs during the run: how many, their mean, how many slow
    if [ -n "$k0" ] && [ -n "$k1" ]; then
        R_COMMITS[$key]=$(awk -v d="$dur" -v a="$k0" -v b="$k1" 'BEGIN {
            split(a, x, " "); split(b, y, " "); n = y[1] - x[1]
            g = y[5] - x[5]
            if (n > 0) printf "%d %.0f %.2f %d %d %.1f", n, n / d, (y[4] - x[4]) / n * 1000,
                (y[1] - y[2]) - (x[1] - x[2]), (y[1] - y[3]) - (x[1] - x[3]),
                (g > 0 ? (y[6] - x[6]) / g : 0) }')
    fi
    if [ "$(field exhausted "$out")" = 1 ]; then
        R_NOTE[$key]="${R_NOTE[$key]:+${R_NOTE[$key]}; }ran out of pending requests: req/s understated"
    fi
    if [ "${R_ERR[$key]}" -gt 0 ]; then
        R_NOTE[$key]="${R_NOTE[$key]:+${R_NOTE[$key]}; }ERRORS: ${R_ERR[$key]} of $req requests failed, figures not valid (server log: ${DATA:-the server}/otpd.log)"
        log "WARNING: $label @$conns: ${R_ERR[$key]} of $req requests failed"
    fi
    log "$label @$conns: ${R_RPS[$key]} req/s, p99 $(ms "${R_P99[$key]}") ms, errors ${R_ERR[$key]}, other load ${R_OTHER[$key]}"
}

# ---- servers ----------------------------------------------------------------------

# start_nginx: nginx from bench/nginx.conf.in in $TMP/nginx; sets NGINX_PID,
# NGINX_URL.
start_nginx() {
    local dir=$TMP/nginx port
    port=$(free_port)
    mkdir -p "$dir"
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" bench/nginx.conf.in >"$dir/nginx.conf"
    nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/nginx-error.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    NGINX_URL=http://127.0.0.1:$port
    wait_http "$NGINX_URL/" "$NGINX_PID" || die "nginx did not start ($dir/nginx-error.log)"
    sleep 0.2 # let the workers come up before counting them
}

BENCH_LIMITS=${BENCH_LIMITS:-key_rate=1000000 key_burst=10000000 pump_min_conversion=0}

# start_otpd NAME [otpd option…]: a fresh data directory $TMP/NAME with a
# bench account (a live key, 100,000,000.00 INR of credit), then `otpd serve`
# with abuse limits that never refuse the bench (BENCH_LIMITS)
# with its log in $TMP/NAME/otpd.log. OTPD_WRAP (e.g. "valgrind --tool=…") goes
# in front of the server. Sets OTPD_PID, OTPD_URL, KEY, DATA.
start_otpd() {
    local name=$1
    shift
    DATA=$TMP/$name
    mkdir -p "$DATA"
    local o=("$OTPD" --data-dir "$DATA" "$@")
    "${o[@]}" account create bench >/dev/null
    KEY=$("${o[@]}" key create bench --name bench --json 2>/dev/null |
        sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p')
    [ -n "$KEY" ] || die "could not create the bench key"
    "${o[@]}" wallet credit bench 100000000.00 --note bench >/dev/null
    if [ -n "${BENCH_TEMPLATE:-}" ]; then
        "${o[@]}" template add bench --name bench --body "$BENCH_TEMPLATE" --default >/dev/null ||
            die "could not add the bench template"
    fi
    # Abuse limits (when the binary has them) stay on, but the key rate is
    # raised and the pumping rule's conversion floor set to 0, so that no rule
    # ever refuses a bench request; the per-number rules are left as they are
    # (every number is sent to once). Set as the server's defaults
    # (limits.defaults), which every store backend honours.
    local env=()
    LIMITS_NOTE="this binary has no abuse limits"
    if grep -q "limits.defaults" <<<"$("$OTPD" help config 2>&1)"; then
        env=(env "OTPD_LIMITS_DEFAULTS=${BENCH_LIMITS// /,}")
        LIMITS_NOTE="abuse limits on, with limits.defaults = ${BENCH_LIMITS// /,}"
    fi
    local port
    port=$(free_port)
    OTPD_URL=http://127.0.0.1:$port
    # shellcheck disable=SC2086
    "${env[@]}" ${OTPD_WRAP:-} "${o[@]}" serve --listen "127.0.0.1:$port" 2>"$DATA/otpd.log" &
    OTPD_PID=$!
    PIDS+=("$OTPD_PID")
    wait_http "$OTPD_URL/healthz" "$OTPD_PID" || {
        tail -n 5 "$DATA/otpd.log" >&2
        die "otpd ($name) did not start"
    }
}

# ---- pending requests for the verify runs -------------------------------------------

# wait_drain COMMAND: waits until the count COMMAND prints stops growing for 1 s
# (at most 60 s); prints "count seconds-until-it-stopped".
wait_drain() {
    local counter=$1 last=-1 n t0 stable=0
    t0=$(date +%s.%N)
    for _ in $(seq 600); do
        n=$($counter)
        if [ "$n" = "$last" ]; then
            stable=$((stable + 1))
            [ $stable -lt 10 ] || break
        else
            stable=0
            last=$n
        fi
        sleep 0.1
    done
    echo "$last $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { s = b - a - 1.0; if (s < 0) s = 0; printf "%.1f", s }')"
}

PAIRS=
# collect_pairs DIR: waits for the SMS of the sends recorded in DIR (send.lua
# with BENCH_RECORD=DIR) to reach $DATA/sms.jsonl, appends their "requestId
# code" pairs to $PAIRS and removes DIR. Prints how many were added.
collect_pairs() {
    local rec=$1 before
    before=$(lines "$PAIRS")
    wait_drain "lines $DATA/sms.jsonl" >/dev/null
    [ -z "$(ls "$rec"/sent.* 2>/dev/null)" ] || awk -f bench/pairs.awk "$DATA/sms.jsonl" "$rec"/sent.* >>"$PAIRS"
    rm -rf "$rec"
    echo $(($(lines "$PAIRS") - before))
}

# preload SECONDS [CONNS]: sends for SECONDS with the requestIds recorded and
# collects their pairs into $PAIRS.
preload() {
    local secs=$1 conns=${2:-64} rec n
    rec=$(mktemp -d "$TMP/rec.XXXX")
    BENCH_KEY=$KEY BENCH_RECORD=$rec wrk_run "$rec/wrk" "$secs" "$conns" send.lua "$OTPD_URL"
    n=$(collect_pairs "$rec")
    log "preloaded $n pending requests in ${secs}s (pool: $(lines "$PAIRS"))"
}

# ensure_pairs NEEDED MAXSECONDS: preloads until the pool holds NEEDED pairs,
# spending at most MAXSECONDS. The first round is sized at the send rate
# measured so far (SEND_RATE); recording replies makes a preload slower than
# that, so what is still missing is preloaded again at the rate just seen.
ensure_pairs() {
    local need=$1 maxs=$2 rate=${SEND_RATE:-5000} spent=0 have before secs
    while :; do
        have=$(lines "$PAIRS")
        [ "$have" -lt "$need" ] && [ "$spent" -lt "$maxs" ] || return 0
        secs=$(awk -v n=$((need - have)) -v r="$rate" -v m=$((maxs - spent)) \
            'BEGIN { s = int(n / (r * 0.9)) + 1; if (s > m) s = m; if (s < 2) s = 2; print s }')
        before=$have
        preload "$secs" 256 # sends run ~15% faster at 256 connections than at 64
        spent=$((spent + secs))
        rate=$(( ($(lines "$PAIRS") - before) / secs ))
        [ "$rate" -gt 0 ] || return 0
    done
}
