#!/usr/bin/env bash
# Builds the tokenizer fuzzers with clang-14 (libFuzzer + ASan + UBSan) in a separate build tree
# and runs each for a bounded time on a seed corpus. Exit status is non-zero on any crash,
# sanitizer report or oracle failure.
#
# Usage: tools/tokenizer/run_fuzz.sh [SECONDS_PER_FUZZER (default 60)] [BUILD_DIR (default build-fuzz)]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_EACH=${1:-60}
BUILD=${2:-$ROOT/build-fuzz}
CC=${CC_FUZZ:-clang-14}
CXX=${CXX_FUZZ:-clang++-14}
JOBS=${JOBS:-2}

mkdir -p "$BUILD"
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DAKCB_BUILD_FUZZERS=ON -DAKCB_BUILD_TESTS=ON -DAKCB_BUILD_EXAMPLES=OFF -DAKCB_BUILD_BENCHMARKS=OFF >"$BUILD/configure.log" 2>&1 \
  || { cat "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" --target fuzz_tokenizer_json fuzz_encode -j"$JOBS"

SEEDS=$BUILD/fuzz-seeds
python3 "$ROOT/tools/tokenizer/make_fuzz_seeds.py" "$SEEDS"

status=0
for f in tokenizer_json encode; do
  corpus=$BUILD/fuzz-corpus/$f
  mkdir -p "$corpus"
  echo "== fuzz_$f for ${SECONDS_EACH}s"
  # Work corpus first (libFuzzer adds new inputs there), seeds read-only second.
  if ! "$BUILD/fuzz/fuzz_$f" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=4096 \
       -max_len=$([ $f = encode ] && echo 4096 || echo 65536) -print_final_stats=1 \
       -artifact_prefix="$BUILD/fuzz-$f-" "$corpus" "$SEEDS/$f" 2>"$BUILD/fuzz_$f.log"; then
    echo "fuzz_$f FAILED; log: $BUILD/fuzz_$f.log"
    tail -40 "$BUILD/fuzz_$f.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" "$BUILD/fuzz_$f.log" || true
  fi
done
exit $status
