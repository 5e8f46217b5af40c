#!/usr/bin/env bash
# The README's main job, in one command on a fresh machine:
#   1. tools/setup.sh (Debian and PyPI packages; skips what is present),
#   2. configures and builds akcb-eval only, in build/,
#   3. runs a model (the bundled tiny Qwen 3 by default) on CPU on long held-out documents with a
#      retrieval question (evaldata: passkey and multi-key needles at 4k tokens), once with a full KV
#      cache and once with `mix` at a quarter of the full KV bytes (budget_mode bytes), printing the
#      expected and both generated answers, then a table: KV bytes held and ratio to full, accuracy
#      and its share of full, prefill and decode tokens/s.
#
#   tools/demo.sh                              # bundled models/tiny-qwen3
#   tools/demo.sh --model /path/to/Qwen3-0.6B  # your own Llama 3 / Qwen 3 checkpoint (HF layout)
#   tools/demo.sh --examples 5 --length 8192 --budget 1/8 --device cuda --skip-setup
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/tiny-qwen3 EXAMPLES=3 LENGTH=4096 TASKS=passkey,multikey BUDGET=1/4 DEVICE=cpu THREADS=1
SKIP_SETUP=0 OUT=build/demo-out BUILD=${AKCB_BUILD_DIR:-build}
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; cat <<'U'
Options:
  --model DIR      model directory (config.json, *.safetensors, tokenizer.json)   [models/tiny-qwen3]
  --examples N     examples per task (test split of evaldata)                      [3]
  --tasks LIST     passkey,multikey,kv,vt                                          [passkey,multikey]
  --length N       1024 | 2048 | 4096 | 8192 (evaldata file length)                [4096]
  --budget F       mix budget as a share of the full KV bytes                      [1/4]
  --device D       cpu | cuda                                                      [cpu]
  --threads N      CPU threads                                                     [1]
  --skip-setup     do not run tools/setup.sh
  --out DIR        output directory (results.csv/json, summary.md)                 [build/demo-out]
U
}
while (($#)); do
  case $1 in
    --model) MODEL=$2; shift 2 ;;
    --examples) EXAMPLES=$2; shift 2 ;;
    --tasks) TASKS=$2; shift 2 ;;
    --length) LENGTH=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --skip-setup) SKIP_SETUP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if ((SKIP_SETUP == 0)); then
  echo "== set-up (tools/setup.sh)"
  bash tools/setup.sh
fi

echo "== build (akcb-eval in $BUILD/)"
PY=${PYTHON:-python3}
if [ ! -f "$BUILD/build.ninja" ] && [ ! -f "$BUILD/Makefile" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$($PY -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
    -DAKCB_BUILD_TESTS=OFF > "$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log"; exit 1; }
fi
cmake --build "$BUILD" --target akcb-eval -j"$(nproc)"

echo
echo "== run: $MODEL, $TASKS at $LENGTH tokens, $EXAMPLES examples each; full cache vs mix at $BUDGET of the full KV bytes"
rm -rf "$OUT"
t0=$(date +%s.%N)
set +e
"$BUILD/examples/akcb-eval" -m "$MODEL" --tasks "$TASKS" --lengths "$LENGTH" -n "$EXAMPLES" --split test \
  --policies full,mix --budgets "$BUDGET" --budget-modes bytes --ppl-docs 0 --no-short \
  --device "$DEVICE" --threads "$THREADS" --show-answers --no-progress -o "$OUT" 2>&1 | tee "$OUT.log" \
  | { grep --line-buffered -E '^  [a-z]+_[0-9]+_[0-9]+ ' || true; } | sed -u 's/^  //'
rc=${PIPESTATUS[0]}
set -e
t1=$(date +%s.%N)
if ((rc != 0)); then cat "$OUT.log"; exit "$rc"; fi
echo
$PY - "$OUT/results.json" "$t0" "$t1" <<'PYEOF'
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
wall = float(sys.argv[3]) - float(sys.argv[2])
def mib(b): return f"{b / 2**20:.2f} MiB"
agg = {}
for c in cells:
    a = agg.setdefault(c["policy"], dict(n=0, ex=0, co=0, held=0, full=0, pt=0, ps=0, dt=0, ds=0, cs=0, C=[]))
    a["n"] += c["n"]; a["ex"] += c["n_exact"]; a["co"] += c["n_contains"]
    a["held"] += c["held_bytes_end"] * c["n"]; a["full"] += c["full_bytes_end"] * c["n"]
    a["pt"] += c["prefill_tokens"]; a["ps"] += c["prefill_seconds"]; a["dt"] += c["decode_tokens"]
    a["ds"] += c["decode_seconds"]; a["cs"] += c["compress_seconds"]; a["C"].append(c["mean_cache_size"])
full = agg["full"]
hdr = f"{'cache':<22} {'KV held':>11} {'full KV':>11} {'ratio':>6} {'exact':>7} {'vs full':>8} {'contains':>9} {'prefill tok/s':>14} {'decode tok/s':>13} {'compress':>9}"
print(hdr); print("-" * len(hdr))
for name, a in agg.items():
    mode = "full" if name == "full" else f"mix, bytes, C={sum(a['C'])/len(a['C']):.0f}"
    acc = a["ex"] / a["n"]; facc = full["ex"] / full["n"]
    print(f"{mode:<22} {mib(a['held'] / a['n']):>11} {mib(a['full'] / a['n']):>11} {a['held'] / a['full']:>6.3f} "
          f"{a['ex']:>3}/{a['n']:<3} {(acc / facc if facc else float('nan')):>8.2f} {a['co']:>5}/{a['n']:<3} "
          f"{a['pt'] / a['ps']:>14.0f} {a['dt'] / max(a['ds'], 1e-9):>13.1f} {a['cs'] / (a['ps'] + a['ds']):>9.3f}")
print(f"\n(KV bytes at the end of each example, mean; 'vs full' = accuracy as a share of the full cache's on the same"
      f" prompts; exact = ruler.score, contains = RULER's lenient metric; compress = share of time in cache compression)")
print(f"run time (model load + all examples): {wall:.1f} s")
PYEOF
echo "results: $OUT/{results.csv,results.json,summary.md}"
