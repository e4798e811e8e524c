#!/bin/sh
# Builds the pipeline-loader fuzzer with clang in its own folder and runs it
# for ${1:-60} seconds. New inputs go to build-fuzz/fuzz-work/corpus; the
# seeds in tests/fuzz/corpus are only read. A crash lands in
# build-fuzz/fuzz-work/crash-*: fix it, then keep it in tests/fuzz/corpus.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${ETL_FUZZ_BUILD:-$root/build-fuzz}

CC=clang cmake -S "$root" -B "$build" -DETL_FUZZ=ON -DETL_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" --target fuzz_config -j"$(nproc)"

# The fuzzer names its input fuzz/pipeline.yaml: give that folder a Lua file
# and a secret so ${file:...}, hooks: and transform: can find something.
work="$build/fuzz-work"
mkdir -p "$work/corpus" "$work/fuzz/lua"
printf 'return {}\n' > "$work/fuzz/x.lua"
printf 'return {}\n' > "$work/fuzz/lua/orders.lua"
printf 'return {}\n' > "$work/fuzz/lua/hooks.lua"
printf 's3cret\n' > "$work/fuzz/secret.txt"
cd "$work"
exec "$build/fuzz_config" -max_total_time="${1:-60}" -detect_leaks=1 -timeout=10 \
  -max_len=8192 -dict="$here/config.dict" -artifact_prefix="$work/" \
  "$work/corpus" "$here/corpus"
