#!/usr/bin/env bash
# ctest driver: install the build tree into a fresh prefix, then configure, build and run the
# consumer project against it with find_package(akcb).
set -euo pipefail
build=$1; src=$2; torch_prefix=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/consumer" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix;$torch_prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/akcb_consumer"
