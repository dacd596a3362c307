#!/usr/bin/env bash
# scripts/test.sh — the whole test run behind `make test` (and so .ci/run):
#   1. clang-format check of src/ and tests/unit/ (counts as one test)
#   2. build into build-test/ with ASan+UBSan, -Werror and the test hooks
#   3. cmocka unit tests through `meson test --suite unit`
#   4. end-to-end tests (tests/e2e, Node's test runner) against build-test/src/otpd
# and ends with one plain line "N passed, N failed" computed by
# scripts/test-summary.mjs from Meson's testlog.json and the e2e TAP output.
# A failed build counts as one failed test (and nothing else runs).
# Runs without a TTY or stdin; exits non-zero when anything failed.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build-test
RESULTS=$BUILD/test-results

export ASAN_OPTIONS=abort_on_error=0:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ -f tests/unit/lsan.supp ]; then
    export LSAN_OPTIONS=suppressions=$ROOT/tests/unit/lsan.supp
fi

summary_args=()

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

# 2. Build.
echo "== build ($BUILD: ASan+UBSan, -Werror, test hooks)"
opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true -Dtest_hooks=true -Dbuildtype=debug)
built=0
if [ -f "$BUILD/build.ninja" ]; then
    meson setup --reconfigure "$BUILD" "${opts[@]}" >/dev/null || { rm -rf "$BUILD"; meson setup "$BUILD" "${opts[@]}"; }
else
    rm -rf "$BUILD"
    meson setup "$BUILD" "${opts[@]}"
fi
if [ -f "$BUILD/build.ninja" ] && ninja -k 0 -C "$BUILD"; then
    built=1
else
    summary_args+=(--check build=fail)
fi
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

if [ $built -eq 1 ]; then
    # 3. Unit tests.
    echo "== unit tests (cmocka)"
    rm -f "$BUILD/meson-logs/testlog.json"
    meson test -C "$BUILD" --suite unit --no-rebuild --print-errorlogs
    summary_args+=(--unit-ran 1 --testlog "$BUILD/meson-logs/testlog.json")

    # 4. End-to-end tests.
    echo "== end-to-end tests"
    summary_args+=(--e2e-ran 1 --tap "$ROOT/$RESULTS/e2e.tap")
    (
        cd tests/e2e || exit 1
        if node -e 'const p=require("./package.json");process.exit(Object.keys(p.dependencies||{}).length+Object.keys(p.devDependencies||{}).length?0:1)' 2>/dev/null; then
            npm ci --no-audit --no-fund || exit 1
        fi
        runner=(--test --test-reporter=spec --test-reporter-destination=stdout
                --test-reporter=tap --test-reporter-destination="$ROOT/$RESULTS/e2e.tap")
        # Files with their own servers run side by side (Node >= 20.10 knows the flag).
        if node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=10)?0:1)'; then
            runner+=(--test-concurrency="${OTPD_E2E_CONCURRENCY:-3}")
        fi
        OTPD_BIN="$ROOT/$BUILD/src/otpd" OTPD_E2E_RESULTS="$ROOT/$RESULTS" \
            timeout 900 node "${runner[@]}" ./*.test.mjs </dev/null
    )
else
    echo "build failed: unit and end-to-end tests not run"
fi

node scripts/test-summary.mjs --out "$RESULTS/summary.txt" "${summary_args[@]}"
