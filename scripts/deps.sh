#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the benchmarks need.
# Idempotent: packages already present are skipped without touching apt.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libyaml-dev liblua5.4-dev libsqlite3-dev libpq-dev libjansson-dev
  libcurl4-openssl-dev libmicrohttpd-dev libcmocka-dev
  postgresql-15 postgresql-client-15 sqlite3 python3
  clang libclang-rt-14-dev valgrind
  pgloader  # benchmarks only: the peer etl is measured against
  chromium  # the status page's browser test (tests/browser)
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq || true
  $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

# playwright-core for the status page's browser test, from tests/browser's
# package-lock.json; skipped while node_modules holds what that lock names
browser_dir="$(cd "$(dirname "$0")/../tests/browser" && pwd)"
if ! cmp -s "$browser_dir/package-lock.json" "$browser_dir/node_modules/.etl-installed-lock"; then
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$browser_dir/package-lock.json" "$browser_dir/node_modules/.etl-installed-lock"
fi
