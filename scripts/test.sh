#!/usr/bin/env bash
# The README's second command: the whole test suite (unit tests, and
# integration tests against real SQLite files, a PostgreSQL server the tests
# start themselves, and the API mock servers). BUILD_DIR and ETL_ASAN=1 as
# for build.sh; CTEST_ARGS passes through (e.g. "-R config").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
build=${BUILD_DIR:-build}
if [ "${ETL_ASAN:-0}" = 1 ]; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
cd "$build"
# shellcheck disable=SC2086
ctest --output-on-failure -j"$(nproc)" ${CTEST_ARGS:-}
