#!/usr/bin/env bash
# Trains tiny-llama3 and tiny-qwen3 concurrently on one GPU (run from the repo root on the GPU machine);
# ARCHS="llama3" (env) trains only the named ones.
# Needs .carry/train.jsonl.xz and .carry/heldout.jsonl.xz (see tools/train/README.md).
# Usage: bash tools/train/run_device.sh OUT_DIR TRAIN_SECONDS [extra train_tiny.py args...]
# Leaves OUT_DIR/tiny-<arch>/model.safetensors and OUT_DIR/small.tar (configs, tokenizers, logs,
# metrics), so that few files come back.
set -u
OUT_DIR=${1:?out dir}
SECS=${2:?train seconds}
shift 2
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
python3 -c 'import torch, transformers, tokenizers; print(torch.__version__, transformers.__version__, tokenizers.__version__)'
mkdir -p "$OUT_DIR"
pids=()
ARCHS=${ARCHS:-llama3 qwen3}
for arch in $ARCHS; do
  python3 tools/train/train_tiny.py --arch "$arch" --train .carry/train.jsonl.xz \
      --heldout .carry/heldout.jsonl.xz --out "$OUT_DIR/tiny-$arch" --train-seconds "$SECS" "$@" \
      > "$OUT_DIR/train-$arch.log" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
for arch in $ARCHS; do
  echo "=== $arch"; grep -v -i -E "warn|forward_call|Writing model" "$OUT_DIR/train-$arch.log" | tail -n 40
done
# pack everything except the weights into one tar; drop the loose copies
(cd "$OUT_DIR" && tar -cf small.tar --exclude=model.safetensors --exclude=small.tar . \
   && find . -type f ! -name model.safetensors ! -name small.tar -delete)
ls -laR "$OUT_DIR"
exit $rc
