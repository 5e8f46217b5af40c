#!/usr/bin/env python3
"""Python-side check of a checkpoint on the evaldata/ retrieval set (greedy decoding, transformers).

The reference for the C++ evaluation tool: same files, same scoring (tools/tasks/ruler.py score()).

Usage:
  python3 tools/train/eval_tiny.py models/tiny-qwen3 [--files passkey_4096,multikey_4096] [--limit N]
Prints one line per file (exact-match accuracy, the primary metric, and RULER's lenient
'contains' accuracy) and a JSON summary; runs on CUDA when available, else CPU (fp32 compute).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "tasks"))
sys.path.insert(0, str(ROOT / "tools" / "train"))
import ruler  # noqa: E402
from train_tiny import greedy  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--eval-dir", default=str(ROOT / "evaldata"))
    ap.add_argument("--files", help="comma-separated stems, e.g. passkey_4096,multikey_4096 (default: all)")
    ap.add_argument("--limit", type=int, default=0, help="first N examples per file (0: all)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dump", help="write every completion to this JSONL file")
    args = ap.parse_args(argv)

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    md = Path(args.model_dir)
    tok = Tokenizer.from_file(str(md / "tokenizer.json"))
    gen_cfg = json.loads((md / "generation_config.json").read_text())
    eos = gen_cfg["eos_token_id"]
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(md, dtype=dtype).to(device).eval()
    stems = args.files.split(",") if args.files else sorted(p.stem for p in Path(args.eval_dir).glob("*.jsonl"))
    summary = {}
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None
    with torch.no_grad():
        for stem in stems:
            rows = [json.loads(line) for line in open(Path(args.eval_dir) / f"{stem}.jsonl", encoding="utf-8")]
            if args.limit:
                rows = rows[:args.limit]
            t0 = time.time()
            ok = ok_contains = 0
            for r in rows:
                ids = tok.encode(r["prompt"]).ids
                n_ans = len(tok.encode(r["answer"], add_special_tokens=False).ids)
                text = tok.decode(greedy(model, ids, n_ans + 3, eos_ids, device))
                good = ruler.score(r["task"], r["answer"], text)
                ok += good
                ok_contains += ruler.score_contains(r["task"], r["answer"], text)
                if dump:
                    dump.write(json.dumps({"model": md.name, "id": r.get("id"), "depth": r["depth"],
                                           "answer": r["answer"], "completion": text, "correct": good}) + "\n")
            summary[stem] = {"correct": ok, "n": len(rows), "acc": ok / len(rows),
                             "correct_contains": ok_contains, "acc_contains": ok_contains / len(rows)}
            print(f"{md.name} {stem}: {ok}/{len(rows)} exact, {ok_contains}/{len(rows)} contains "
                  f"({time.time() - t0:.0f} s)", flush=True)
    if dump:
        dump.close()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
