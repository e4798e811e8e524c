#!/usr/bin/env bash
# Configures and builds etl. BUILD_DIR (default build) and ETL_ASAN=1 choose
# the flavour; extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
args=(-DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo})
[ "${ETL_ASAN:-0}" = 1 ] && args+=(-DETL_ASAN=ON -DCMAKE_BUILD_TYPE=Debug)
cmake -S . -B "$build" "${args[@]}" "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
