#!/usr/bin/env bash
# scripts/test.sh — the whole test run behind `make test` (and so .ci/run):
#   1. clang-format check of src/ and tests/unit/ (counts as one test)
#   2. build into build-test/ with ASan+UBSan, -Werror and the test hooks
#   3. cmocka unit tests through `meson test --suite unit`, then again from a
#      second build without the test hooks (build-test-nohooks/: a release
#      build, -O3 and NDEBUG, with the same sanitizers and -Werror): the code
#      a release build compiles, so a test that leans on a hook (the store's
#      queue paused, say) also runs the way production schedules it, and the
#      optimiser's warnings are errors too; and a third time from a ThreadSanitizer build (build-test-tsan/, test
#      hooks on): a data race in the threads the unit tests start (the
#      store's writer and readers, the dispatcher, the SMPP session, the
#      shared caches) fails its test
#   4. end-to-end tests (tests/e2e, Node's test runner) against build-test/src/otpd
#   5. the same end-to-end tests again with every server on PostgreSQL
#   6. the e2e files with the most parallel requests (concurrency, idempotency,
#      the SMPP peer, several nodes, the read threads) once more on each store,
#      against build-test-tsan/src/otpd: a race in the server exits it 66 at its
#      stop, which fails the test that stops it
# and ends with one plain line "N passed, N failed" computed by
# scripts/test-summary.mjs from Meson's testlog.json and the e2e TAP outputs.
#
# A throwaway PostgreSQL cluster (Debian's postgresql package) runs for steps 3
# and 5: initdb into a temporary directory as an unprivileged user (postgres, or
# nobody, when run as root), pg_ctl on a free loopback port with its socket in
# that directory; stopped and removed on exit. The unit tests get
# OTPD_TEST_PG_URL (the store conformance suite runs on both backends), the
# second e2e pass OTPD_E2E_DB (each test server makes its own database there).
# A cluster that cannot start counts as one failed check.
# A failed build counts as one failed test (and nothing else runs; a failed
# second build, without the hooks, only skips its own unit tests).
# Runs without a TTY or stdin; exits non-zero when anything failed.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build-test
NOHOOKS=build-test-nohooks
TSAN=build-test-tsan
RESULTS=$BUILD/test-results

export ASAN_OPTIONS=abort_on_error=0:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ -f tests/unit/lsan.supp ]; then
    export LSAN_OPTIONS=suppressions=$ROOT/tests/unit/lsan.supp
fi

summary_args=()

# ---- the PostgreSQL cluster ----
PG_DIR=
PG_RUN=()
pg_bin() {
    local d
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return; fi
    d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    [ -x "$d/initdb" ] && echo "$d"
}
pg_stop() {
    [ -n "$PG_DIR" ] || return 0
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ -d "$RESULTS" ] && [ -f "$PG_DIR/server.log" ]; then
        cp "$PG_DIR/server.log" "$RESULTS/postgres-server.log" 2>/dev/null || true
    fi
    rm -rf "$PG_DIR"
    PG_DIR=
}
pg_start() {
    PG_BIN=$(pg_bin)
    if [ -z "$PG_BIN" ]; then
        echo "postgres: no initdb/pg_ctl found (make deps installs postgresql)"
        return 1
    fi
    PG_DIR=$(mktemp -d /tmp/otpd-pg-XXXXXX)
    if [ "$(id -u)" -eq 0 ]; then
        # PostgreSQL refuses to run as root: the cluster belongs to an unprivileged user.
        local user=postgres
        id -u "$user" >/dev/null 2>&1 || user=nobody
        chown "$user" "$PG_DIR"
        PG_RUN=(runuser -u "$user" --)
    fi
    PG_PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
    if ! "${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U otpd --auth=trust -E UTF8 --no-locale \
            >"$PG_DIR/initdb.log" 2>&1; then
        echo "postgres: initdb failed:"; cat "$PG_DIR/initdb.log"; return 1
    fi
    # fsync stays on: commits cost what they cost in production.
    if ! "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
            -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400" \
            start >/dev/null; then
        echo "postgres: pg_ctl start failed:"; cat "$PG_DIR/server.log"; return 1
    fi
    PG_URL="postgres://otpd@127.0.0.1:$PG_PORT"
    if ! psql -qX -v ON_ERROR_STOP=1 -d "$PG_URL/postgres" -c "CREATE DATABASE otpd_unit" >/dev/null; then
        echo "postgres: cannot create the test database"; return 1
    fi
    echo "postgres: $("$PG_BIN/postgres" --version) on 127.0.0.1:$PG_PORT ($PG_DIR)"
}
trap pg_stop EXIT

# 1. Formatting.
echo "== clang-format check"
mapfile -t fmt_files < <(find src tests/unit -type f \( -name '*.c' -o -name '*.h' -o -name '*.cc' \) 2>/dev/null | sort)
if [ ${#fmt_files[@]} -eq 0 ] || clang-format --dry-run --Werror "${fmt_files[@]}"; then
    echo "clang-format: ${#fmt_files[@]} files formatted"
    summary_args+=(--check format=pass)
else
    echo "clang-format: files above differ from .clang-format (fix: clang-format -i FILES)"
    summary_args+=(--check format=fail)
fi

# setup_build DIR OPTIONS…: configures DIR (again) with exactly these options.
setup_build() {
    local dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null || { rm -rf "$dir"; meson setup "$dir" "$@"; }
    else
        rm -rf "$dir"
        meson setup "$dir" "$@"
    fi
}

# 2. Build.
echo "== build ($BUILD: ASan+UBSan, -Werror, test hooks)"
opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true -Dtest_hooks=true -Dbuildtype=debug)
built=0
setup_build "$BUILD" "${opts[@]}"
if [ -f "$BUILD/build.ninja" ] && ninja -k 0 -C "$BUILD"; then
    built=1
else
    summary_args+=(--check build=fail)
fi
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

if [ $built -eq 1 ]; then
    echo "== PostgreSQL for the tests"
    pg_ok=0
    if pg_start; then
        pg_ok=1
        export OTPD_TEST_PG_URL="$PG_URL/otpd_unit"
    else
        summary_args+=(--check postgres=fail)
        unset OTPD_TEST_PG_URL
    fi

    # 3. Unit tests.
    echo "== unit tests (cmocka)"
    rm -f "$BUILD/meson-logs/testlog.json"
    meson test -C "$BUILD" --suite unit --no-rebuild --print-errorlogs
    summary_args+=(--unit-ran 1 --testlog "$BUILD/meson-logs/testlog.json")
    # unit_pass DIR LABEL OPTIONS…: the unit tests again from their own build.
    unit_pass() {
        local dir=$1 label=$2
        shift 2
        rm -f "$dir/meson-logs/testlog.json"
        setup_build "$dir" "$@"
        if [ -f "$dir/build.ninja" ] && ninja -k 0 -C "$dir"; then
            meson test -C "$dir" --suite unit --no-rebuild --print-errorlogs
            summary_args+=(--testlog "$dir/meson-logs/testlog.json" --label "$label")
        else
            summary_args+=(--check "build-${label#unit-}=fail")
            return 1
        fi
    }
    echo "== unit tests again, release build without the test hooks ($NOHOOKS)"
    nohooks_opts=("${opts[@]/-Dtest_hooks=true/-Dtest_hooks=false}")
    unit_pass "$NOHOOKS" unit-nohooks "${nohooks_opts[@]/-Dbuildtype=debug/-Dbuildtype=release}"
    echo "== unit tests again under ThreadSanitizer ($TSAN)"
    # A race reported makes its test exit 66, a failure.
    tsan_built=0
    TSAN_OPTIONS=second_deadlock_stack=1 unit_pass "$TSAN" unit-tsan \
        "${opts[@]/-Db_sanitize=address,undefined/-Db_sanitize=thread}" && tsan_built=1

    # 4. End-to-end tests; 5. the same against PostgreSQL; 6. the files with
    # the most parallel requests again, against the ThreadSanitizer build.
    # run_e2e TAP RESULTS_DIR [VAR=value…]: the files in e2e_files (the whole
    # suite by default) against $BUILD's otpd (VAR=value may set OTPD_BIN),
    # TAP into $RESULTS/TAP.
    e2e_files=('*.test.mjs') # globs, expanded in tests/e2e
    run_e2e() {
        local tap=$1 out=$2
        shift 2
        mkdir -p "$out"
        (
            cd tests/e2e || exit 1
            runner=(--test --test-reporter=spec --test-reporter-destination=stdout
                    --test-reporter=tap --test-reporter-destination="$ROOT/$RESULTS/$tap")
            # Files with their own servers run side by side (Node >= 20.10 knows the flag).
            if node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=10)?0:1)'; then
                runner+=(--test-concurrency="${OTPD_E2E_CONCURRENCY:-3}")
            fi
            # The caller's own otpd settings (OTPD_DB, OTPD_SERVER_THREADS, …)
            # and a store URL left from elsewhere must not reach the test
            # servers: only the suite's knobs pass, and what this pass sets.
            local clean=() v
            for v in $(compgen -e); do
                case $v in
                OTPD_E2E_KEEP | OTPD_E2E_SEED | OTPD_E2E_LEDGER_OPS) ;;
                OTPD_*) clean+=(-u "$v") ;;
                esac
            done
            local files
            # shellcheck disable=SC2206 # the globs are meant to expand here
            files=(${e2e_files[*]})
            env "${clean[@]}" OTPD_BIN="$ROOT/$BUILD/src/otpd" OTPD_E2E_RESULTS="$out" "$@" \
                timeout 900 node "${runner[@]}" "${files[@]}" </dev/null
        )
    }
    echo "== end-to-end tests"
    summary_args+=(--e2e-ran 1 --tap "$ROOT/$RESULTS/e2e.tap")
    if node -e 'const p=require("./tests/e2e/package.json");process.exit(Object.keys(p.dependencies||{}).length+Object.keys(p.devDependencies||{}).length?0:1)' 2>/dev/null; then
        (cd tests/e2e && npm ci --no-audit --no-fund)
    fi
    run_e2e e2e.tap "$ROOT/$RESULTS"
    if [ $pg_ok -eq 1 ]; then
        echo "== end-to-end tests against PostgreSQL"
        summary_args+=(--tap "$ROOT/$RESULTS/e2e-postgres.tap")
        # OTPD_E2E_PGDATA: tests that look for secrets in the database's files on disk.
        run_e2e e2e-postgres.tap "$ROOT/$RESULTS/postgres" OTPD_E2E_DB="$PG_URL/postgres" \
            OTPD_E2E_PGDATA="$PG_DIR/data"
    fi
    if [ $tsan_built -eq 1 ]; then
        # A race reported makes otpd exit 66 at its stop: the test that stops it fails.
        echo "== end-to-end tests with the most parallel requests, under ThreadSanitizer ($TSAN)"
        e2e_files=(concurrency.test.mjs idempotency.test.mjs otp_flow.test.mjs
                   delivery_smpp.test.mjs)
        summary_args+=(--tap "$ROOT/$RESULTS/e2e-tsan.tap")
        run_e2e e2e-tsan.tap "$ROOT/$RESULTS/tsan" OTPD_BIN="$ROOT/$TSAN/src/otpd"
        if [ $pg_ok -eq 1 ]; then
            e2e_files=(concurrency.test.mjs idempotency.test.mjs multinode.test.mjs
                       reads.test.mjs)
            summary_args+=(--tap "$ROOT/$RESULTS/e2e-postgres-tsan.tap")
            run_e2e e2e-postgres-tsan.tap "$ROOT/$RESULTS/postgres-tsan" \
                OTPD_BIN="$ROOT/$TSAN/src/otpd" OTPD_E2E_DB="$PG_URL/postgres" \
                OTPD_E2E_PGDATA="$PG_DIR/data"
        fi
    fi
    pg_stop
else
    echo "build failed: unit and end-to-end tests not run"
fi

node scripts/test-summary.mjs --out "$RESULTS/summary.txt" "${summary_args[@]}"
