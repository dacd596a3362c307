#!/usr/bin/env bash
# scripts/deps.sh — installs the Debian 12 packages that building, running and
# testing otpd need. Quick (no apt-get at all) when they are all present already,
# so `make run` and `make test` can call it every time. Node.js comes from Debian
# only when no `node` is on the PATH: a newer Node installed another way is kept
# (Debian's npm would conflict with it).
set -euo pipefail

packages=(build-essential g++ meson ninja-build pkg-config clang-format
          libmicrohttpd-dev libjansson-dev libsodium-dev libsqlite3-dev
          libphonenumber-dev libprotobuf-dev libcmocka-dev sqlite3 curl ca-certificates
          libcurl4-openssl-dev libsmpp34-dev libssl-dev
          openssl  # the e2e tests make their TLS certificates with its CLI
          libpq-dev postgresql)  # the PostgreSQL backend, and the server its tests start
if ! command -v node >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

check_node() {
    local major
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$major" -lt 18 ]; then
        echo "deps: the end-to-end tests need Node.js 18 or newer (found $(node --version 2>/dev/null || echo none))" >&2
        exit 1
    fi
}

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all packages present"
    check_node
    exit 0
fi

echo "deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "deps: missing packages (${missing[*]}) and not root; run as root: make deps" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

check_node
