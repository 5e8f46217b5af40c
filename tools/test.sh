#!/usr/bin/env bash
# THE test command (README, .ci/run): sets up a fresh machine, builds AKCB with its tests,
# benchmarks and examples, and runs the whole suite with ctest. CUDA tests skip without a GPU.
#   tools/test.sh            # everything
#   AKCB_BUILD_DIR=build-x tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh

BUILD=${AKCB_BUILD_DIR:-build}
JOBS=${AKCB_JOBS:-$(nproc)}
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DAKCB_BUILD_TESTS=ON -DAKCB_BUILD_EXAMPLES=ON -DAKCB_BUILD_BENCHMARKS=ON ${AKCB_CMAKE_ARGS:-}
cmake --build "$BUILD" -j "$JOBS"

# Short fuzzing runs (libFuzzer, separate clang build), when the fuzz script is present.
if [ -x tools/tokenizer/run_fuzz.sh ] && [ "${AKCB_SKIP_FUZZ:-0}" != 1 ]; then
  tools/tokenizer/run_fuzz.sh
fi

cd "$BUILD"
ctest --output-on-failure -j "$JOBS" --timeout 1200
