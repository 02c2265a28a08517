#!/usr/bin/env bash
# install-deps.sh — installs every Debian package cardgw needs to build, run and test.
# Idempotent: a fast no-op when all are present. Needs root (or sudo) only when something is missing.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang libclang-rt-14-dev clang-format cppcheck
  libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libhiredis-dev libmsgpack-dev
  libjansson-dev libssl-dev
  redis-server redis-sentinel redis-tools curl haproxy nginx
  prometheus
  python3 python3-websockets python3-msgpack python3-pytest python3-pytest-xdist python3-redis python3-pyflakes
  chromium chromium-driver
)
# Node.js for the JavaScript client (clients/js) and its tests: Debian's unless one is on PATH
command -v node >/dev/null 2>&1 || PKGS+=(nodejs npm)

# the JavaScript client's packages from the npm registry (versions pinned by package-lock.json);
# reinstalled when the lock file changes
npm_deps() {
  local dir lock stamp
  dir="$(cd "$(dirname "$0")/.." && pwd)/clients/js"
  lock="$dir/package-lock.json"
  stamp="$dir/node_modules/.cardgw-lock"
  [ -f "$lock" ] || return 0
  if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
    echo "install-deps: npm ci in clients/js"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$lock" "$stamp"
  fi
}

missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = "installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  npm_deps
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# haproxy, nginx and prometheus would start as system services on install (nginx on port 80, which
# fails the install when the port is taken); cardgw's tests and configs start their own, and only
# promtool is used from prometheus (tests/integration/test_ops.py): no service starts.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod +x $POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a system redis-server on 6379 when the package is installed with systemd
# running; cardgw never uses it (tests and `make run` start their own on free ports).
npm_deps
echo "install-deps: done"
