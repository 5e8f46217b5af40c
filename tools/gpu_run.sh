#!/usr/bin/env bash
# The one script for the GPU machine (an H200 with torch 2.11.0+cu130, nvcc 13.0, CMake, ninja,
# compute-sanitizer; no network). Builds what the selected parts need, runs them, and writes a
# few files under $OUT (the device tool brings back at most 8 files: keep it that way).
#
# On the lent H200 (device tool `run`, which sets $OUT; carry [".carry/akcb-kernels"]), from the
# repository root:
#   tools/gpu_run.sh kernels     # build ~40 s (16 cores), CUDA tests ~30 s, bench, sanitizer subsets
#   AKCB_PREBUILT=.carry/akcb-kernels/prebuilt AKCB_USE_PREBUILT=1 tools/gpu_run.sh test bench
#                                # binaries built here by `ninja -C build-cuda akcb_cuda_tests bench_kernels`
#
# usage: tools/gpu_run.sh [PART...]        (default: kernels)
#   build      configure + build the CUDA test and benchmark binaries only
#   test       ctest -L cuda (the CUDA-vs-CPU reference tests)          -> ctest_cuda.log
#   core       ctest -L cpu (the CPU core tests; NOT cheap: the invariant tests run for minutes
#              each on that machine, 2026-11-29; only when asked for) -> ctest_cpu.log
#   bench      kernel benchmarks                                        -> bench_kernels.json, bench_kernels.md
#   sanitize   compute-sanitizer memcheck (+ racecheck on compaction)   -> sanitizer.log
#   kernels    = build test bench sanitize (in that order)
#   e2e        end-to-end model benchmark (bench_e2e, own build folder, -DAKCB_BUILD_MODELS=ON;
#              ~1 min build + ~2-4 min run, estimated) -> e2e.json, e2e.md, e2e.log
#              (AKCB_E2E_DTYPES="bf16 fp16": one run each; the second writes e2e_fp16.*)
#   eval       akcb-eval with --device cuda on both bundled models (own build folder, models and
#              examples on; a small grid in bf16 and fp32; see run_eval below)
#              -> eval_cuda.md, eval_{bf16,fp32}.csv, eval_{bf16,fp32}.json, eval.log
#   all        = kernels e2e
# env:
#   OUT                 output folder (default ./gpu-out)
#   AKCB_BUILD_DIR      build folder (default build-gpu)
#   AKCB_JOBS           build parallelism (default: nproc)
#   AKCB_SANITIZE_FILTER  gtest filter for the sanitizer runs
#   AKCB_BENCH_ARGS     extra bench_kernels flags (e.g. --benchmark_repetitions=7: the table then gives
#                       the median over the repetitions and the range of "of copy")
#   AKCB_CUDA_ARCH      CMAKE_CUDA_ARCHITECTURES (default 90, the H200)
#   AKCB_PREBUILT       folder with akcb_cuda_tests, bench_kernels (and libakcb.so) built elsewhere (same torch
#                       2.11.0+cu130): used when the build here fails (tests then run without ctest)
#   AKCB_USE_PREBUILT=1 use AKCB_PREBUILT first and skip the build (saves ~1 min of device time);
#                       builds anyway if those binaries do not start
#   AKCB_SANITIZE_TIMEOUT  seconds for each compute-sanitizer run (default 150)
# Dependencies missing on the machine (GoogleTest, fmt, Google Benchmark) are taken from Debian
# packages carried in .carry/akcb-kernels/debs (see tools/gpu_run.sh --fetch-debs, run on the dev machine),
# unpacked under /tmp/akcb-deps, never into /.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/gpu-out}
BUILD=${AKCB_BUILD_DIR:-build-gpu}
JOBS=${AKCB_JOBS:-$(nproc)}
ARCH=${AKCB_CUDA_ARCH:-90}
DEPS=/tmp/akcb-deps
mkdir -p "$OUT"
LOG="$OUT/gpu_run.log"
STATUS=0

say() { echo "[gpu_run $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
fail() { say "FAILED: $*"; STATUS=1; }

if [[ "${1:-}" == "--fetch-debs" ]]; then
  # On the development machine (Debian, with network): the packages the build needs.
  mkdir -p .carry/akcb-kernels/debs && (cd .carry/akcb-kernels/debs &&
    apt-get download libgtest-dev libfmt-dev libfmt9 libbenchmark-dev libbenchmark1debian) || exit $?
  # akcb::models and its benchmark (part e2e), kept apart: only run_e2e unpacks these (pkgconf in
  # case the GPU image has no pkg-config).
  mkdir -p .carry/akcb-kernels/debs-models && cd .carry/akcb-kernels/debs-models &&
    apt-get download libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 nlohmann-json3-dev libcli11-dev \
      pkgconf pkgconf-bin libpkgconf3
  exit $?
fi

PARTS=("$@")
[[ ${#PARTS[@]} -eq 0 ]] && PARTS=(kernels)
declare -A WANT=()
for p in "${PARTS[@]}"; do
  case "$p" in
    kernels) for q in build test sanitize bench; do WANT[$q]=1; done ;;
    all) for q in build test sanitize bench e2e; do WANT[$q]=1; done ;;
    build|test|core|sanitize|bench|e2e|eval) WANT[$p]=1 ;;
    *) echo "unknown part: $p (see the header of $0)"; exit 2 ;;
  esac
done
for q in test core sanitize bench; do [[ -n "${WANT[$q]:-}" ]] && WANT[build]=1; done

setup_env() {
  say "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader 2>&1 | head -1)"
  say "nvcc: $(nvcc --version 2>&1 | tail -1); torch: $(python3 -c 'import torch;print(torch.__version__, torch.cuda.is_available())' 2>&1)"
  TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  PREFIX="$TORCH_PREFIX"
  if ! ls /usr/lib/*/cmake/GTest/GTestConfig.cmake /usr/lib/*/cmake/benchmark/benchmarkConfig.cmake \
        /usr/lib/*/cmake/fmt/fmt-config.cmake >/dev/null 2>&1; then
    if compgen -G ".carry/akcb-kernels/debs/*.deb" >/dev/null; then
      mkdir -p "$DEPS"
      for f in .carry/akcb-kernels/debs/*.deb; do dpkg -x "$f" "$DEPS"; done
      PREFIX="$PREFIX;$DEPS/usr"
      export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      say "dependencies unpacked from .carry/akcb-kernels/debs into $DEPS"
    else
      say "warning: GTest/fmt/benchmark not installed and no .carry/akcb-kernels/debs: configure may fail"
    fi
  fi
  command -v nvcc >/dev/null && command -v compute-sanitizer >/dev/null || export PATH=$PATH:/usr/local/cuda/bin
}

do_build() {
  local targets=(akcb_cuda_tests bench_kernels)
  say "configure ($BUILD)"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DAKCB_WITH_CUDA=ON -DAKCB_BUILD_TESTS=ON \
    -DAKCB_BUILD_BENCHMARKS=ON -DAKCB_BUILD_MODELS=OFF -DAKCB_BUILD_EXAMPLES=OFF \
    >>"$LOG" 2>&1 || { fail "configure (see gpu_run.log)"; tail -30 "$LOG"; return 1; }
  say "build ${targets[*]} (-j$JOBS)"
  local t0=$SECONDS
  cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}" >>"$LOG" 2>&1 ||
    { fail "build (see gpu_run.log)"; grep -E "error|FAILED" "$LOG" | head -30; return 1; }
  say "built in $((SECONDS - t0)) s"
  if [[ -n "${WANT[core]:-}" ]]; then  # separately, so that a broken core test leaves the rest running
    cmake --build "$BUILD" -j"$JOBS" --target akcb_core_tests >>"$LOG" 2>&1 || { fail "build akcb_core_tests"; WANT[core]=; }
    say "core tests built at $((SECONDS - t0)) s"
  fi
}

TEST_BIN="$BUILD/tests/akcb_cuda_tests"
BENCH_BIN="$BUILD/tests/bench/bench_kernels"
USING_PREBUILT=

use_prebuilt() {
  [[ -n "${AKCB_PREBUILT:-}" && -x "$AKCB_PREBUILT/akcb_cuda_tests" ]] || return 1
  AKCB_PREBUILT=$(cd "$AKCB_PREBUILT" && pwd)
  say "using prebuilt binaries from $AKCB_PREBUILT"
  local torch_lib
  torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH="$AKCB_PREBUILT:$torch_lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
  if compgen -G ".carry/akcb-kernels/debs/*.deb" >/dev/null; then
    # Built on Debian: its library names (libbenchmark.so.1debian) differ from this image's.
    mkdir -p "$DEPS"
    for f in .carry/akcb-kernels/debs/*.deb; do dpkg -x "$f" "$DEPS"; done
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$DEPS/usr/lib/x86_64-linux-gnu"
  fi
  TEST_BIN="$AKCB_PREBUILT/akcb_cuda_tests"
  BENCH_BIN="$AKCB_PREBUILT/bench_kernels"
  USING_PREBUILT=1
  STATUS=0
}

do_test() {
  if [[ -n "$USING_PREBUILT" ]]; then
    say "akcb_cuda_tests (prebuilt, no ctest)"
    "$TEST_BIN" --gtest_brief=1 >"$OUT/ctest_cuda.log" 2>&1 || fail "akcb_cuda_tests"
  else
    say "ctest -L cuda"
    ctest --test-dir "$BUILD" -L cuda -j8 --timeout 300 --output-on-failure >"$OUT/ctest_cuda.log" 2>&1 ||
      fail "ctest -L cuda"
  fi
  tail -5 "$OUT/ctest_cuda.log" | tee -a "$LOG"
}

do_core() {
  say "ctest -L cpu"
  ctest --test-dir "$BUILD" -L cpu -j"$JOBS" --timeout 300 --output-on-failure >"$OUT/ctest_cpu.log" 2>&1 ||
    fail "ctest -L cpu"
  tail -3 "$OUT/ctest_cpu.log" | tee -a "$LOG"
}

do_sanitize() {
  local bin="$TEST_BIN"
  local tmo=${AKCB_SANITIZE_TIMEOUT:-150}
  local filter=${AKCB_SANITIZE_FILTER:-"QuantTyped/1.*:*QuantShapes.*B2_H8_T37_D128_bf16*:*QuantShapes.*B1_H4_T129_D256_f32_int8*:*CompactShapes.*:CompactCuda.*:GatherHeldCuda.*-*ManyRows*:*32768x128*"}  # the 32k and many-row cases take minutes under memcheck
  # Without the caching allocator every tensor is its own cudaMalloc, so memcheck sees the
  # exact bounds of each buffer.
  say "compute-sanitizer memcheck --gtest_filter=$filter"
  {
    echo "== memcheck"
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$tmo" compute-sanitizer --tool memcheck --error-exitcode 99 \
      "$bin" --gtest_filter="$filter" --gtest_brief=1
    echo "exit code $?"
    echo "== racecheck (compaction: shared memory + cross-CTA flags)"
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$tmo" compute-sanitizer --tool racecheck --error-exitcode 99 \
      "$bin" --gtest_filter="*CompactShapes.*4099*:*CompactShapes.*2000x256*:CompactCuda.Repeated*" --gtest_brief=1
    echo "exit code $?"
  } >"$OUT/sanitizer.log" 2>&1
  grep -E "ERROR SUMMARY|exit code|PASSED|FAILED" "$OUT/sanitizer.log" | tee -a "$LOG"
  grep -q "exit code [^0]" "$OUT/sanitizer.log" && fail "compute-sanitizer"
  return 0
}

do_bench() {
  # AKCB_BENCH_ARGS: extra Google Benchmark flags, e.g. "--benchmark_repetitions=5
  # --benchmark_filter=copy|compact". With repetitions the table gives, per row, the median over the
  # repetitions and the range of "of copy" (the copy baseline is measured once per size and process).
  say "bench_kernels ${AKCB_BENCH_ARGS:-}"
  # shellcheck disable=SC2086
  "$BENCH_BIN" --benchmark_out="$OUT/bench_kernels.json" --benchmark_out_format=json \
    --benchmark_counters_tabular=true ${AKCB_BENCH_ARGS:-} >>"$LOG" 2>&1 || fail "bench_kernels"
  python3 - "$OUT/bench_kernels.json" >"$OUT/bench_kernels.md" <<'PY' || fail "bench table"
import json, statistics, sys
d = json.load(open(sys.argv[1]))
ctx = d.get("context", {})
print(f"host: {ctx.get('host_name', '?')}, {ctx.get('date', '?')}")
print()
rows = {}  # name -> the repetitions' results, in order
for b in d["benchmarks"]:
    if b.get("run_type") == "aggregate":
        continue  # Google Benchmark's mean/median/stddev of the iteration time; the counters are ours
    rows.setdefault(b.get("run_name", b["name"]), []).append(b)
reps = max((len(v) for v in rows.values()), default=1)
print("| op | impl | tokens | MB moved | median us | GB/s | copy GB/s | of copy |" + (" of copy min-max | reps |" if reps > 1 else ""))
print("|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if reps > 1 else ""))
for run_name, bs in rows.items():
    err = [b for b in bs if b.get("error_occurred")]
    if err:
        print(f"| {run_name} | error: {err[0].get('error_message')} |"); continue
    name = [x for x in run_name.split("/") if x != "manual_time" and ":" not in x]
    op = name[0].removeprefix("BM_")
    impl = name[1] if len(name) > 2 else "-"
    tokens = name[-1]
    med = lambda k: statistics.median(b[k] for b in bs)
    line = (f"| {op} | {impl} | {tokens} | {bs[0]['MB_moved']:.1f} | {med('median_us'):.1f} | {med('GBps'):.0f} | "
            f"{med('copy_GBps'):.0f} | {med('of_copy'):.2f} |")
    if reps > 1:
        oc = [b["of_copy"] for b in bs]
        line += f" {min(oc):.3f}-{max(oc):.3f} | {len(bs)} |"
    print(line)
PY
  cat "$OUT/bench_kernels.md" | tee -a "$LOG"
}

# End to end (issue 6, "End to end on the GPU"): tests/bench/bench_e2e.cpp, a Llama-3-8B-shaped
# model (32 layers, hidden 4096, 32/8 heads, FFN 14336, vocabulary 128256) with random bf16 weights
# made on the device, 8k and 32k tokens of context (prefill in chunks of 2048), 128 greedy decode
# steps, for full, mix, origin and quant (the last three at a quarter of the full KV bytes:
# budget_mode bytes, cache_size = context / 4). Writes $OUT/e2e.json, $OUT/e2e.md, $OUT/e2e.log.
# It needs akcb::models (-DAKCB_BUILD_MODELS=ON): libpcre2 + libutf8proc (through pkg-config),
# nlohmann_json and CLI11, taken from .carry/akcb-kernels/debs-models when the machine lacks them. Builds in
# its own folder ($AKCB_E2E_BUILD_DIR, default $BUILD-e2e: tests off, so that the kernel parts'
# build folder keeps its options). Extra bench_e2e flags: AKCB_E2E_ARGS (e.g. "--contexts 8192").
# With AKCB_USE_PREBUILT=1 and $AKCB_E2E_PREBUILT/bench_e2e (default .carry/akcb-kernels/prebuilt-e2e,
# with the libakcb.so and libakcb_models.so it was linked with), that binary runs without a build.
E2E_BUILD=${AKCB_E2E_BUILD_DIR:-$BUILD-e2e}
E2E_CMAKE_ARGS=()
E2E_LD_PATH=
E2E_CFG_LD=  # LD_LIBRARY_PATH for the configure step (the carried pkgconf needs its libpkgconf)

e2e_deps() {
  local debs=.carry/akcb-kernels/debs-models
  if pkg-config --exists libpcre2-8 libutf8proc 2>/dev/null &&
     compgen -G "/usr/*/cmake/nlohmann_json/nlohmann_jsonConfig.cmake" >/dev/null &&
     compgen -G "/usr/include/CLI/CLI.hpp" >/dev/null; then
    return 0
  fi
  if ! compgen -G "$debs/libpcre2-dev_*.deb" >/dev/null; then
    say "e2e: warning: pcre2/utf8proc/nlohmann_json/CLI11 not installed and not in $debs (run tools/gpu_run.sh --fetch-debs on the dev machine)"
    return 0
  fi
  local dm=$DEPS-models  # apart from $DEPS, which setup_env may have put on LD_LIBRARY_PATH for every process
  mkdir -p "$dm"
  for f in "$debs"/*.deb; do dpkg -x "$f" "$dm"; done
  # The .pc files say prefix=/usr: point them at the unpacked tree.
  sed -i "s|^prefix=/usr\$|prefix=$dm/usr|" "$dm"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc "$dm"/usr/share/pkgconfig/*.pc 2>/dev/null
  export PKG_CONFIG_PATH="$dm/usr/lib/x86_64-linux-gnu/pkgconfig:$dm/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  E2E_LD_PATH="$dm/usr/lib/x86_64-linux-gnu"  # for bench_e2e only (the build tree has an RPATH too)
  [[ ";$PREFIX;" == *";$dm/usr;"* ]] || PREFIX="$PREFIX;$dm/usr"
  if ! command -v pkg-config >/dev/null && [[ -x "$dm/usr/bin/pkgconf" ]]; then
    E2E_CMAKE_ARGS+=(-DPKG_CONFIG_EXECUTABLE="$dm/usr/bin/pkgconf")
    E2E_CFG_LD="$dm/usr/lib/x86_64-linux-gnu"
  fi
  say "e2e: model dependencies unpacked from $debs into $dm"
}

# The binary a model part runs: sets BIN and BIN_LD (its LD_LIBRARY_PATH additions).
# usage: model_binary TAG NAME PREBUILT_DIR BUILD_DIR PATH_IN_BUILD [CMAKE_ARG...]
# With AKCB_USE_PREBUILT=1, PREBUILT_DIR/NAME (with the libakcb.so and libakcb_models.so it was linked
# with) when it starts here; otherwise configure BUILD_DIR with CUDA and akcb::models (tests off,
# plus CMAKE_ARGs) and build target NAME.
model_binary() {
  local tag=$1 name=$2 pre=$3 build=$4 rel=$5
  shift 5
  BIN="$build/$rel"
  BIN_LD=${E2E_LD_PATH:-}
  if [[ -n "${AKCB_USE_PREBUILT:-}" && -x "$pre/$name" ]]; then
    local torch_lib
    torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    pre=$(cd "$pre" && pwd)
    local pld="$pre:$torch_lib:/usr/local/cuda/lib64${BIN_LD:+:$BIN_LD}"
    if LD_LIBRARY_PATH="$pld:${LD_LIBRARY_PATH:-}" "$pre/$name" --help >/dev/null 2>&1; then
      BIN="$pre/$name"
      BIN_LD=$pld
      say "$tag: using prebuilt $BIN"
      return 0
    fi
    say "$tag: prebuilt $name does not start here: building"
  fi
  say "$tag: configure ($build, AKCB_BUILD_MODELS=ON $*)"
  LD_LIBRARY_PATH="${E2E_CFG_LD:+$E2E_CFG_LD:}${LD_LIBRARY_PATH:-}" \
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DAKCB_WITH_CUDA=ON -DAKCB_BUILD_TESTS=OFF \
    -DAKCB_BUILD_MODELS=ON "$@" "${E2E_CMAKE_ARGS[@]}" \
    >>"$LOG" 2>&1 || { fail "$tag configure (see gpu_run.log)"; tail -30 "$LOG"; return 1; }
  local t0=$SECONDS
  cmake --build "$build" -j"$JOBS" --target "$name" >>"$LOG" 2>&1 ||
    { fail "$tag build (see gpu_run.log)"; grep -E "error|FAILED" "$LOG" | head -30; return 1; }
  say "$tag: built in $((SECONDS - t0)) s"
}

run_e2e() {
  e2e_deps
  model_binary e2e bench_e2e "${AKCB_E2E_PREBUILT:-.carry/akcb-kernels/prebuilt-e2e}" "$E2E_BUILD" \
    tests/bench/bench_e2e -DAKCB_BUILD_BENCHMARKS=ON -DAKCB_BUILD_EXAMPLES=OFF || return 1
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader >>"$LOG" 2>&1
  # One run per dtype in AKCB_E2E_DTYPES (default bf16); the first writes e2e.{json,md,log}, the
  # others e2e_<dtype>.{json,md,log}.
  local first=1 dt
  for dt in ${AKCB_E2E_DTYPES:-bf16}; do
    local dir="$OUT" log="$OUT/e2e.log"
    if [[ -z "$first" ]]; then dir="$OUT/e2e_$dt"; log="$OUT/e2e_$dt.log"; mkdir -p "$dir"; fi
    say "e2e: bench_e2e --dtype $dt ${AKCB_E2E_ARGS:-}"
    # shellcheck disable=SC2086
    LD_LIBRARY_PATH="${BIN_LD:+$BIN_LD:}${LD_LIBRARY_PATH:-}" \
      "$BIN" --device cuda --dtype "$dt" --out-dir "$dir" ${AKCB_E2E_ARGS:-} >"$log" 2>&1 ||
      fail "bench_e2e --dtype $dt (exit $?; see $(basename "$log"))"
    if [[ -z "$first" ]]; then
      for f in e2e.json e2e.md; do [[ -f "$dir/$f" ]] && mv "$dir/$f" "$OUT/${f%.*}_$dt.${f##*.}"; done
      rmdir "$dir" 2>/dev/null
    fi
    tail -25 "$log" | tee -a "$LOG"
    first=
  done
}

# Evaluation on the GPU (issue 5, "--device cuda works"): akcb-eval (examples/akcb_eval.cpp) built with
# CUDA in its own folder ($AKCB_EVAL_BUILD_DIR, default $BUILD-eval; models + examples on, tests off),
# or, with AKCB_USE_PREBUILT=1, $AKCB_EVAL_PREBUILT/akcb-eval (default .carry/akcb-kernels/prebuilt-eval,
# with the libakcb.so and libakcb_models.so it was linked with) when that starts here. Then, for each
# dtype in $AKCB_EVAL_DTYPES (default "bf16 fp32"), one akcb-eval run on models/tiny-qwen3 and
# models/tiny-llama3: passkey + multikey at 2048 tokens (the first $AKCB_EVAL_N test examples each,
# default 4), full / window / origin / quant / mix at 1/4 of the full KV bytes (bytes mode),
# perplexity on one $AKCB_EVAL_PPL_LEN-token document (default 512: 384 tokens teacher-forced through the cache) and the
# short-context check (budget > context must reproduce full's tokens and first logits; akcb-eval
# exits 2 otherwise). Each run is limited to $AKCB_EVAL_TIMEOUT seconds (default 150: on the H200, 2026-11-29,
# fp32 took 41 s; bf16 was still running at 75 s, with ~25 s of one-time warm-up in its first cells). Extra flags:
# AKCB_EVAL_ARGS. Writes eval_<dtype>.csv / .json (akcb-eval's results.csv / results.json),
# eval_cuda.md (the summaries) and eval.log (progress and tables). A run past its timeout leaves
# only its progress lines in eval.log (akcb-eval writes results.* at the end).
EVAL_BUILD=${AKCB_EVAL_BUILD_DIR:-$BUILD-eval}

run_eval() {
  e2e_deps  # the same model dependencies (pcre2, utf8proc, nlohmann_json, CLI11)
  model_binary eval akcb-eval "${AKCB_EVAL_PREBUILT:-.carry/akcb-kernels/prebuilt-eval}" "$EVAL_BUILD" \
    examples/akcb-eval -DAKCB_BUILD_BENCHMARKS=OFF -DAKCB_BUILD_EXAMPLES=ON || return 1
  local n=${AKCB_EVAL_N:-4} tmo=${AKCB_EVAL_TIMEOUT:-150} dt rc
  : >"$OUT/eval_cuda.md"
  for dt in ${AKCB_EVAL_DTYPES:-bf16 fp32}; do
    local out=/tmp/akcb-eval-cuda-$dt t0=$SECONDS
    rm -rf "$out"
    say "eval: akcb-eval --device cuda --dtype $dt ${AKCB_EVAL_ARGS:-}"
    # shellcheck disable=SC2086
    LD_LIBRARY_PATH="${BIN_LD:+$BIN_LD:}${LD_LIBRARY_PATH:-}" timeout "$tmo" "$BIN" --device cuda --dtype "$dt" \
      -m models/tiny-qwen3 -m models/tiny-llama3 --tasks passkey,multikey --lengths 2048 -n "$n" \
      --policies full,window,origin,quant,mix --budgets 1/4 --budget-modes bytes \
      --ppl-docs 1 --ppl-len "${AKCB_EVAL_PPL_LEN:-512}" --ppl-prefix 128 --short-examples 1 -o "$out" \
      ${AKCB_EVAL_ARGS:-} >>"$OUT/eval.log" 2>&1
    rc=$?
    say "eval: $dt exit $rc after $((SECONDS - t0)) s"
    [[ $rc -eq 0 ]] || fail "akcb-eval --device cuda --dtype $dt (exit $rc; see eval.log)"
    [[ -f "$out/results.csv" ]] && cp "$out/results.csv" "$OUT/eval_$dt.csv"
    [[ -f "$out/results.json" ]] && cp "$out/results.json" "$OUT/eval_$dt.json"
    if [[ ! -f "$out/results.json" ]] && compgen -G "$out/cells/*.json" >/dev/null; then
      # killed (timeout): keep the cells it finished, as one file
      python3 -c 'import glob, json, sys; json.dump({"partial": True, "cells": [json.load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/cells/*.json"))]}, open(sys.argv[2], "w"))' \
        "$out" "$OUT/eval_${dt}_partial.json" && say "eval: $dt: finished cells kept in eval_${dt}_partial.json"
    fi
    { echo "## --dtype $dt (exit $rc, $((SECONDS - t0)) s)"; echo; cat "$out/summary.md" 2>/dev/null; echo; } >>"$OUT/eval_cuda.md"
  done
  tail -30 "$OUT/eval.log" | tee -a "$LOG"
}

: >"$LOG"
say "parts: ${!WANT[*]}"
setup_env
prebuilt_first() {
  [[ -n "${AKCB_USE_PREBUILT:-}" ]] && use_prebuilt && "$TEST_BIN" --gtest_list_tests >/dev/null 2>&1 && return 0
  if [[ -n "$USING_PREBUILT" ]]; then
    say "prebuilt binaries do not start here: building"
    TEST_BIN="$BUILD/tests/akcb_cuda_tests"; BENCH_BIN="$BUILD/tests/bench/bench_kernels"; USING_PREBUILT=
  fi
  return 1
}
if [[ -n "${WANT[build]:-}" ]] && { prebuilt_first || do_build || use_prebuilt; }; then
  [[ -n "${WANT[test]:-}" ]] && do_test
  [[ -n "${WANT[bench]:-}" ]] && do_bench
  [[ -n "${WANT[sanitize]:-}" ]] && do_sanitize
  [[ -n "${WANT[core]:-}" && -z "$USING_PREBUILT" ]] && do_core
fi
[[ -n "${WANT[e2e]:-}" ]] && run_e2e
[[ -n "${WANT[eval]:-}" ]] && run_eval
say "done, status $STATUS; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $STATUS
