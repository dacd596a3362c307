#!/usr/bin/env bash
# scripts/run-demo.sh — the tail of `make run`: bootstraps a demo account in the
# data directory when the store does not have one yet, prints the API keys and a
# curl walk-through, then runs `otpd serve` in the foreground.
#
# Keys are shown only once by otpd, so the first run saves them to
# DATA_DIR/demo-keys.txt (mode 0600) and later runs print them from there.
# Environment: OTPD_BIN (default build/src/otpd), DATA_DIR (default ./otpd-data),
# LISTEN (default 127.0.0.1:8080).
set -euo pipefail

cd "$(dirname "$0")/.."
OTPD_BIN=${OTPD_BIN:-build/src/otpd}
DATA_DIR=${DATA_DIR:-./otpd-data}
LISTEN=${LISTEN:-127.0.0.1:8080}
BASE="http://$LISTEN"
KEYS_FILE="$DATA_DIR/demo-keys.txt"
PHONE="+919876543210"

otpd() { "$OTPD_BIN" --data-dir "$DATA_DIR" "$@"; }
# The value of a string field in one line of JSON (no jq needed).
json_field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p"; }

if [ ! -x "$OTPD_BIN" ]; then
    echo "run-demo: $OTPD_BIN not found; run 'make build' first" >&2
    exit 1
fi
mkdir -p "$DATA_DIR"
chmod 700 "$DATA_DIR"

# Prints the new key; otpd's "store this key now" note is left out (we store it).
create_key() {
    local out err
    err=$(mktemp)
    if ! out=$(otpd key create demo "$@" --json 2>"$err"); then
        cat "$err" >&2
        rm -f "$err"
        return 1
    fi
    rm -f "$err"
    printf '%s\n' "$out" | json_field key
}

new_keys() {
    local live test
    live=$(create_key --name demo-live)
    test=$(create_key --name demo-test --test)
    if [ -z "$live" ] || [ -z "$test" ]; then
        echo "run-demo: could not read the new keys from 'otpd key create --json'" >&2
        exit 1
    fi
    (
        umask 077
        printf 'OTPD_LIVE_KEY=%s\nOTPD_TEST_KEY=%s\n' "$live" "$test" >"$KEYS_FILE"
    )
    chmod 600 "$KEYS_FILE"
}

if otpd account show demo --json >/dev/null 2>&1; then
    echo "Using the existing store in $DATA_DIR (account \"demo\" exists)."
    if [ ! -f "$KEYS_FILE" ]; then
        echo "No saved demo keys ($KEYS_FILE is missing): creating a new pair."
        new_keys
    fi
else
    echo "New store in $DATA_DIR: creating the demo account, two keys and 100.00 INR of credit."
    otpd account create demo
    new_keys
    otpd wallet credit demo 100.00 --note "demo credit" >/dev/null
fi

LIVE=$(sed -n 's/^OTPD_LIVE_KEY=//p' "$KEYS_FILE")
TEST=$(sed -n 's/^OTPD_TEST_KEY=//p' "$KEYS_FILE")
SMS_FILE="$DATA_DIR/sms.jsonl"

cat <<EOF

================================================================================
otpd demo — keys (also saved in $KEYS_FILE, mode 0600):
  live key: $LIVE
  test key: $TEST   (test keys do not charge the wallet or send real SMS)

In another terminal, from $(pwd):

1. Send an OTP (the file provider appends the SMS to $SMS_FILE):

curl -s -X POST $BASE/otp/send -H "X-API-Key: $LIVE" -H 'Content-Type: application/json' -d '{"phoneNumber":"$PHONE"}'

   The answer looks like {"data":{"requestId":"req_…","expiresAt":"…","attemptsLeft":3}}.

2. Read the code — the first word of "text" in the newest SMS:

tail -n 1 $SMS_FILE

3. Verify it (put in the requestId from step 1 and the code from step 2):

curl -s -X POST $BASE/otp/verify -H "X-API-Key: $LIVE" -H 'Content-Type: application/json' -d '{"requestId":"REQUEST_ID","otpCode":"CODE"}'

   Expected answer: {"data":{"verified":true}}

All three steps in one line (sed does the copying):

REQ=\$(curl -s -X POST $BASE/otp/send -H "X-API-Key: $LIVE" -H 'Content-Type: application/json' -d '{"phoneNumber":"$PHONE"}' | sed -n 's/.*"requestId" *: *"\\([^"]*\\)".*/\\1/p'); sleep 1; CODE=\$(grep '"to" *: *"$PHONE"' $SMS_FILE | tail -n 1 | sed -n 's/.*"text" *: *"\\([0-9]*\\).*/\\1/p'); echo "requestId=\$REQ code=\$CODE"; curl -s -X POST $BASE/otp/verify -H "X-API-Key: $LIVE" -H 'Content-Type: application/json' -d "{\\"requestId\\":\\"\$REQ\\",\\"otpCode\\":\\"\$CODE\\"}"; echo

Wallet: curl -s $BASE/wallet -H "X-API-Key: $LIVE"
================================================================================

Starting: $OTPD_BIN serve --data-dir $DATA_DIR --listen $LISTEN   (Ctrl-C to stop)
EOF

exec "$OTPD_BIN" serve --data-dir "$DATA_DIR" --listen "$LISTEN"
