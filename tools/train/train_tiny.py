#!/usr/bin/env python3
"""Train one bundled tiny model (tiny-llama3 or tiny-qwen3) on corpus prose + RULER-style tasks.

Data: the corpus train split (jsonl, optionally .xz) tokenized into one stream of documents
(Llama 3: <|begin_of_text|> doc <|end_of_text|>; Qwen 3: doc <|endoftext|>), mixed with synthetic
retrieval examples from tools/tasks/ruler.py (train text, training seeds), made on the fly by a pool
of worker processes. A running share of `--syn-frac` of all tokens is synthetic. Each synthetic
example is prompt + answer + end token; the loss is next-token cross-entropy on every token plus
`--answer-coef` times the mean cross-entropy of the answer tokens.

Curriculum: for the first `--short-frac` of the time budget, sequences of `--short-len` tokens
(batch `--short-batch`), then `--seq-len` (batch `--batch`). LR: linear warm-up, cosine decay to 10%
over the time budget `--train-seconds` (the run is time-boxed, not step-boxed).

At the end: held-out loss on `--heldout` text, greedy-decode accuracy on every evaldata/*.jsonl
file, save_pretrained (bf16 safetensors) + tokenizer files + generation_config.json, metrics.json.

Example (GPU machine):
  python3 tools/train/train_tiny.py --arch llama3 --train .carry/train.jsonl.xz \
      --heldout .carry/heldout.jsonl.xz --out $OUT/tiny-llama3 --train-seconds 400
CPU check (tiny config, a few steps):
  python3 tools/train/train_tiny.py --arch qwen3 --tiny --train data/corpus/train.jsonl \
      --heldout data/corpus/heldout.jsonl --out /tmp/t --max-steps 3 --seq-len 512 --short-len 256
"""
from __future__ import annotations

import argparse
import collections
import json
import lzma
import math
import multiprocessing as mp
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "tasks"))
import ruler  # noqa: E402

TASK_WEIGHTS = {"passkey": 0.25, "multikey": 0.35, "kv": 0.2, "vt": 0.2}


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def read_jsonl(path: str) -> list[str]:
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


# ----------------------------------------------------------------------------- synthetic workers
_W = {}


def _worker_init(tok_path: str, name: str, eos_id: int):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    _W["tok"] = tok
    _W["name"] = name
    _W["counter"] = ruler.Counter({name: tok})
    _W["eos"] = eos_id


def _worker_make(spec):
    task, length, seed = spec
    try:
        ex = ruler.generate(task, length, seed, _W["source"], _W["counter"], train=True)
    except RuntimeError:  # too many needles for a short length: the feed skips it
        return None
    tok = _W["tok"]
    ids = tok.encode(ex["prompt"] + ex["answer"]).ids + [_W["eos"]]
    n_prompt = ex["prompt_tokens"][_W["name"]]
    return np.asarray(ids, dtype=np.int32), n_prompt


class SyntheticFeed:
    """Keeps `depth` generation jobs in flight in a process pool; hands out finished examples."""

    def __init__(self, pool, seed: int, depth: int = 96):
        self.pool = pool
        self.rng = random.Random(seed)
        self.seed_base = (seed % 100) * 10_000_000  # training seeds stay far below ruler.EVAL_SEED_BASE
        self.n = 0
        self.max_len = 2048
        self.pending = collections.deque()
        self.depth = depth
        self.tasks = list(TASK_WEIGHTS)
        self.weights = [TASK_WEIGHTS[t] for t in self.tasks]
        self.made = collections.Counter()

    def _submit(self):
        task = self.rng.choices(self.tasks, self.weights)[0]
        length = self.rng.randint(min(384, self.max_len), self.max_len)
        spec = (task, length, self.seed_base + self.n)
        self.n += 1
        self.pending.append((task, self.pool.apply_async(_worker_make, (spec,))))

    def fill(self):
        while len(self.pending) < self.depth:
            self._submit()

    def get(self):
        self.fill()
        task, r = self.pending.popleft()
        self._submit()
        ex = r.get()
        if ex is None:
            return self.get()
        self.made[task] += 1
        return ex


class Batcher:
    def __init__(self, stream: np.ndarray, feed: SyntheticFeed, syn_frac: float, seed: int):
        self.stream = stream
        self.feed = feed
        self.syn_frac = syn_frac
        self.rng = np.random.default_rng(seed)
        self.syn_tokens = 0
        self.all_tokens = 0
        self.carry = None  # an example that did not fit the previous row

    def _prose(self, n):
        start = int(self.rng.integers(0, len(self.stream) - n - 1))
        return self.stream[start:start + n]

    def row(self, S):
        row = np.empty(S + 1, dtype=np.int64)
        amask = np.zeros(S + 1, dtype=np.float32)  # 1 at positions holding answer tokens
        pos = 0
        want_syn = self.all_tokens == 0 or self.syn_tokens / self.all_tokens < self.syn_frac
        if want_syn:
            while pos < S + 1:
                ex = self.carry if self.carry is not None else self.feed.get()
                self.carry = None
                ids, n_prompt = ex
                if len(ids) > S + 1:
                    continue  # made for a longer phase; drop
                if len(ids) > S + 1 - pos:
                    self.carry = ex
                    break
                row[pos:pos + len(ids)] = ids
                amask[pos + n_prompt:pos + len(ids) - 1] = 1.0
                pos += len(ids)
                self.syn_tokens += len(ids)
        if pos < S + 1:
            row[pos:] = self._prose(S + 1 - pos)
        self.all_tokens += S + 1
        return row, amask

    def batch(self, B, S):
        rows, masks = zip(*(self.row(S) for _ in range(B)))
        rows = np.stack(rows)
        masks = np.stack(masks)
        return rows[:, :-1], rows[:, 1:], masks[:, 1:]


# ----------------------------------------------------------------------------- model
def make_config(arch: str, tok, seq_len: int, tiny: bool):
    from transformers import LlamaConfig, Qwen3Config
    dims = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=2, head_dim=32)
    if tiny:
        dims = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16)
    common = dict(vocab_size=tok.get_vocab_size(), max_position_embeddings=seq_len, tie_word_embeddings=True,
                  attention_bias=False, hidden_act="silu", initializer_range=0.02, use_cache=True, **dims)
    if arch == "llama3":
        # llama3 rope scaling as if pre-trained at seq_len/4 and extended 4x (the curriculum does the same)
        return LlamaConfig(
            rms_norm_eps=1e-5, mlp_bias=False,
            rope_theta=500000.0,
            rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": seq_len // 4},
            bos_token_id=tok.token_to_id("<|begin_of_text|>"), eos_token_id=tok.token_to_id("<|end_of_text|>"),
            **common)
    return Qwen3Config(
        rms_norm_eps=1e-6, rope_theta=1000000.0, use_sliding_window=False, sliding_window=None,
        bos_token_id=tok.token_to_id("<|endoftext|>"), eos_token_id=tok.token_to_id("<|endoftext|>"), **common)


def fix_config_json(path: Path, arch: str, cfg) -> None:
    """Also write the classic top-level rope_theta / rope_scaling keys (as real Llama 3.x / Qwen 3
    config.json files have them) next to transformers 5's rope_parameters."""
    d = json.loads(path.read_text())
    rp = d.get("rope_parameters") or {}
    d["rope_theta"] = rp.get("rope_theta", getattr(cfg, "rope_theta", None))
    if arch == "llama3":
        d["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
    else:
        d["rope_scaling"] = None
    d["torch_dtype"] = "bfloat16"
    path.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- eval
def greedy(model, ids, max_new, eos_ids, device):
    import torch
    x = torch.tensor([ids], device=device)
    out = model(input_ids=x, use_cache=True)
    past = out.past_key_values
    nxt = out.logits[:, -1].argmax(-1)
    gen = [int(nxt)]
    for _ in range(max_new - 1):
        if gen[-1] in eos_ids:
            break
        out = model(input_ids=nxt[:, None], past_key_values=past, use_cache=True)
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1)
        gen.append(int(nxt))
    return [g for g in gen if g not in eos_ids]


def evaluate_tasks(model, tok, eval_dir: Path, eos_ids, device, max_files=None, tasks=None):
    """Greedy-decode accuracy on the RULER task files `<task>_<length>.jsonl` of `eval_dir`
    (other files there, e.g. heldout_docs.jsonl, are not task files and are skipped)."""
    import re
    import torch
    res = {}
    pat = re.compile(r"^([a-z]+)_(\d+)$")
    files = [f for f in sorted(eval_dir.glob("*.jsonl"))
             if (m := pat.match(f.stem)) and (not tasks or m.group(1) in tasks)]
    with torch.no_grad():
        for f in files[:max_files]:
            rows = [json.loads(line) for line in open(f, encoding="utf-8")]
            ok = 0
            samples = []
            for r in rows:
                ids = tok.encode(r["prompt"]).ids
                n_ans = len(tok.encode(r["answer"], add_special_tokens=False).ids)
                gen = greedy(model, ids, n_ans + 3, eos_ids, device)
                text = tok.decode(gen)
                good = ruler.score(r["task"], r["answer"], text)
                ok += good
                if len(samples) < 2:
                    samples.append({"answer": r["answer"], "got": text})
            res[f.stem] = {"acc": ok / len(rows), "n": len(rows), "samples": samples}
            log(f"eval {f.stem}: {ok}/{len(rows)}")
    return res


def heldout_loss(model, stream, S, n_windows, device):
    import torch
    import torch.nn.functional as F
    rng = np.random.default_rng(1234)
    losses = []
    with torch.no_grad():
        for _ in range(n_windows):
            if len(stream) <= S + 1:
                break
            st = int(rng.integers(0, len(stream) - S - 1))
            w = torch.tensor(stream[st:st + S + 1][None].astype(np.int64), device=device)
            logits = model(input_ids=w[:, :-1]).logits.float()
            losses.append(F.cross_entropy(logits.view(-1, logits.shape[-1]), w[:, 1:].reshape(-1)).item())
    return float(np.mean(losses)) if losses else float("nan")


# ----------------------------------------------------------------------------- main
def tokenize_docs(tok, texts, eos_id, batch=2048):
    parts = []
    for i in range(0, len(texts), batch):
        for e in tok.encode_batch(texts[i:i + batch]):
            parts.append(np.asarray(e.ids + [eos_id], dtype=np.int32))
    return np.concatenate(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["llama3", "qwen3"], required=True)
    ap.add_argument("--train", required=True, help="corpus train split, jsonl or jsonl.xz")
    ap.add_argument("--heldout", required=True, help="corpus held-out split, jsonl or jsonl.xz")
    ap.add_argument("--tokenizer-dir", help="default models/tiny-<arch>")
    ap.add_argument("--eval-dir", default=str(ROOT / "evaldata"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-seconds", type=float, default=400)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time only)")
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--short-len", type=int, default=2048)
    ap.add_argument("--short-batch", type=int, default=32)
    ap.add_argument("--short-frac", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--syn-frac", type=float, default=0.4)
    ap.add_argument("--answer-coef", type=float, default=0.3)
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="toy dimensions, for a CPU check")
    ap.add_argument("--eval-files", type=int, default=0, help="evaluate only the first N files (0: all)")
    ap.add_argument("--eval-tasks", default="", help="comma list of tasks to evaluate (passkey,multikey,kv,vt; empty: all)")
    ap.add_argument("--heldout-windows", type=int, default=24)
    args = ap.parse_args(argv)
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = Path(args.tokenizer_dir or ROOT / "models" / f"tiny-{args.arch}")

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    if args.arch == "llama3":
        doc_eos = tok.token_to_id("<|end_of_text|>")
        eos_ids = {doc_eos, tok.token_to_id("<|eot_id|>")}
    else:
        doc_eos = tok.token_to_id("<|endoftext|>")
        eos_ids = {doc_eos, tok.token_to_id("<|im_end|>")}

    texts = read_jsonl(args.train)
    held_texts = read_jsonl(args.heldout)
    log(f"{args.arch}: {len(texts)} train docs, {sum(map(len, texts)) / 1e6:.1f} M chars")
    # synthetic workers fork before anything touches CUDA; they share the train text copy-on-write
    _W["source"] = ruler.TextSource(texts)
    ctx = mp.get_context("fork")
    pool = ctx.Pool(args.workers, initializer=_worker_init, initargs=(str(tok_dir / "tokenizer.json"), args.arch, doc_eos))
    feed = SyntheticFeed(pool, args.seed)
    feed.max_len = min(args.short_len, args.seq_len) if args.short_frac > 0 else args.seq_len
    feed.fill()

    stream = tokenize_docs(tok, texts, doc_eos)
    held_stream = tokenize_docs(tok, held_texts, doc_eos)
    del texts
    log(f"prose tokens: train {len(stream) / 1e6:.2f} M, held-out {len(held_stream) / 1e6:.2f} M "
        f"({time.time() - t_start:.0f} s)")

    import torch
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM, Qwen3ForCausalLM
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cfg = make_config(args.arch, tok, args.seq_len, args.tiny)
    cls = LlamaForCausalLM if args.arch == "llama3" else Qwen3ForCausalLM
    cfg._attn_implementation = "sdpa"
    model = cls(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model {cls.__name__}: {n_params / 1e6:.2f} M parameters, device {device}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=(device == "cuda"))
    batcher = Batcher(stream, feed, args.syn_frac, args.seed)

    step, tokens_seen = 0, 0
    loss_hist, ans_hist = collections.deque(maxlen=50), collections.deque(maxlen=50)
    t_train = time.time()
    log_every = 25
    phase_long = args.short_frac <= 0
    history = []
    while True:
        elapsed = time.time() - t_train
        frac = elapsed / args.train_seconds
        if frac >= 1.0 or (args.max_steps and step >= args.max_steps):
            break
        if not phase_long and frac >= args.short_frac:
            phase_long = True
            feed.max_len = args.seq_len
            log(f"step {step}: switching to sequences of {args.seq_len}")
        S, B = (args.seq_len, args.batch) if phase_long else (args.short_len, args.short_batch)
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, am = batcher.batch(B, S)
        x = torch.from_numpy(x).to(device, non_blocking=True)
        y = torch.from_numpy(y).to(device, non_blocking=True)
        am = torch.from_numpy(am).to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=(device == "cuda")):
            logits = model(input_ids=x).logits
        lt = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        lm = lt.mean()
        am = am.reshape(-1)
        ans = (lt * am).sum() / am.sum().clamp(min=1.0)
        loss = lm + args.answer_coef * ans
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens_seen += B * S
        if step % log_every == 0 or step <= 3:
            loss_hist.append(lm.item())
            ans_hist.append(ans.item())
            el = time.time() - t_train
            rec = {"step": step, "t": round(el, 1), "seq": S, "lr": lr, "loss": round(lm.item(), 4),
                   "answer_loss": round(ans.item(), 4), "grad_norm": round(float(gn), 3),
                   "tokens": tokens_seen, "tok_per_s": round(tokens_seen / max(el, 1e-9)),
                   "syn_frac": round(batcher.syn_tokens / max(1, batcher.all_tokens), 3)}
            history.append(rec)
            log(json.dumps(rec))
    train_time = time.time() - t_train
    log(f"trained {step} steps, {tokens_seen / 1e6:.1f} M tokens in {train_time:.0f} s")
    pool.terminate()

    model.eval()
    model_bf16 = model.to(torch.bfloat16) if device == "cuda" else model
    t_eval = time.time()
    hl = heldout_loss(model_bf16, held_stream, min(args.seq_len, 8192), args.heldout_windows, device)
    log(f"held-out loss {hl:.4f} (ppl {math.exp(hl):.2f})")
    # Save before the task evaluation, so that a failure there cannot lose the trained weights.
    model_bf16 = model_bf16.to(torch.bfloat16)
    model_bf16.save_pretrained(out, safe_serialization=True)
    fix_config_json(out / "config.json", args.arch, cfg)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if (tok_dir / name).exists():
            shutil.copy(tok_dir / name, out / name)
    eval_res = evaluate_tasks(model_bf16, tok, Path(args.eval_dir), eos_ids, device,
                              max_files=args.eval_files or None,
                              tasks=set(args.eval_tasks.split(",")) if args.eval_tasks else None)
    eval_time = time.time() - t_eval
    tail = list(loss_hist)[-10:]
    metrics = {
        "arch": args.arch, "class": cls.__name__, "params": n_params, "steps": step, "tokens_seen": tokens_seen,
        "train_seconds": round(train_time, 1), "eval_seconds": round(eval_time, 1),
        "wall_seconds": round(time.time() - t_start, 1),
        "final_train_loss_mean_last10_logged": round(float(np.mean(tail)), 4) if tail else None,
        "final_answer_loss_mean_last10_logged": round(float(np.mean(list(ans_hist)[-10:])), 4) if ans_hist else None,
        "heldout_loss": round(hl, 4), "heldout_ppl": round(math.exp(hl), 3),
        "synthetic_token_share": round(batcher.syn_tokens / max(1, batcher.all_tokens), 4),
        "synthetic_examples_by_task": dict(feed.made),
        "prose_tokens_train": int(len(stream)), "prose_tokens_heldout": int(len(held_stream)),
        "eval": eval_res, "args": vars(args), "history": history,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    summary = {k: v["acc"] for k, v in eval_res.items()}
    log("summary", json.dumps(summary))
    log(f"done in {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
