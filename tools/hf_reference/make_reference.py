#!/usr/bin/env python3
"""Makes tiny random Hugging Face checkpoints and their reference outputs for the C++ runtime tests.

Run by ctest as the setup fixture `make_hf_reference` (tests/models/runtime.cmake):

    python3 tools/hf_reference/make_reference.py --out <build>/fixtures/hf_reference

Writes, under --out:
  <name>/                 a checkpoint saved with `save_pretrained` (fp32 safetensors, config.json,
                          generation_config.json); `llama_untied` is sharded (model.safetensors.index.json)
  <name>/reference.json   {"input_ids": [[...]] (B x S), "logits": flat fp32 list (B x S x V),
                           "greedy": [[...]] (B x N), "greedy_prompt": [[...]]}
  dtypes/dtypes.safetensors  one small tensor per dtype (F32, F16, BF16) + its fp32 value, for loader tests
  manifest.json           the list of models and their properties
  bundled_<name>/reference.json  with --bundled DIR...: transformers' outputs of a shipped checkpoint
                          (bf16 weights computed in fp32, eager attention) on held-out text, and the
                          tokenizer's ids of that text (see make_bundled)

Nothing here is committed: checkpoints are made at test time.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import (GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

VOCAB = 256
PROMPT_LEN = 40
BATCH = 2
GREEDY_PROMPT_LEN = 12
GREEDY_NEW = 24


def llama_config(tied: bool, n_heads: int, n_kv: int, head_dim: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=112, num_hidden_layers=3,
        num_attention_heads=n_heads, num_key_value_heads=n_kv, head_dim=head_dim,
        max_position_embeddings=2048, rms_norm_eps=1e-5,
        # llama3 scaling with a short original context so that it changes the frequencies seen
        # inside the test's sequence lengths (low, medium and high bands all present).
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
        rope_theta=500000.0, tie_word_embeddings=tied, attention_bias=False, mlp_bias=False,
        initializer_range=0.2, bos_token_id=1, eos_token_id=[2, 3])


def qwen3_config() -> Qwen3Config:
    return Qwen3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000000.0,
        tie_word_embeddings=True, initializer_range=0.2, bos_token_id=None, eos_token_id=5)


@torch.no_grad()
def randomize_norms(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Norm weights are initialised to ones; make them random so that they are really tested."""
    for name, p in model.named_parameters():
        if "norm" in name:
            p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))


@torch.no_grad()
def greedy(model, prompt: torch.Tensor, n_new: int) -> torch.Tensor:
    """Greedy continuation by full recomputation (no KV cache, no eos): the unambiguous oracle."""
    ids = prompt
    for _ in range(n_new):
        logits = model(input_ids=ids, use_cache=False).logits[:, -1, :]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[:, prompt.shape[1]:]


def make_model(out_dir: str, name: str, config, cls, seed: int, shard: bool) -> dict:
    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    model = cls(config).eval().to(torch.float32)
    gen = torch.Generator().manual_seed(seed + 1)
    randomize_norms(model, gen)
    path = os.path.join(out_dir, name)
    os.makedirs(path, exist_ok=True)
    kwargs = {"max_shard_size": "100KB"} if shard else {}
    model.save_pretrained(path, **kwargs)
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                     do_sample=True, temperature=0.7, top_k=40, top_p=0.9,
                     max_new_tokens=33).save_pretrained(path)

    ids = torch.randint(4, VOCAB, (BATCH, PROMPT_LEN), generator=gen)
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits.float()
    gprompt = ids[:, :GREEDY_PROMPT_LEN]
    gtokens = greedy(model, gprompt, GREEDY_NEW)
    ref = {
        "input_ids": ids.tolist(),
        "logits_shape": list(logits.shape),
        "logits": logits.reshape(-1).tolist(),
        "greedy_prompt": gprompt.tolist(),
        "greedy": gtokens.tolist(),
    }
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump(ref, f)
    files = sorted(os.listdir(path))
    return {"name": name, "model_type": config.model_type, "tied": bool(config.tie_word_embeddings),
            "sharded": "model.safetensors.index.json" in files, "files": files}


BUNDLED_PROMPT = 512    # tokens of held-out text fed to a shipped checkpoint
BUNDLED_TAIL = 4        # last positions whose full logit rows are stored (a whole row is V floats)
BUNDLED_GREEDY = 16


def make_bundled(out_dir: str, model_dir: str, text_file: str) -> dict:
    """Reference outputs of a shipped checkpoint (models/tiny-*) for the C++ runtime's parity test.

    The text is the first held-out document of `text_file` (JSONL with a "text" field), cut to 4000
    characters; its ids come from transformers' AutoTokenizer (tokenizer.json + tokenizer_config.json,
    special tokens added as the checkpoint's post-processor says). The model is loaded with
    transformers in fp32 (the bf16 weights upcast exactly) with eager attention. Stored: the text and
    its ids, the first BUNDLED_PROMPT ids as input, the full logit rows of the last BUNDLED_TAIL
    positions, argmax and top-1 minus top-2 gap at every position, and BUNDLED_GREEDY greedy tokens.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    name = "bundled_" + os.path.basename(os.path.normpath(model_dir))
    with open(text_file, encoding="utf-8") as f:
        text = json.loads(f.readline())["text"][:4000]
    tok = AutoTokenizer.from_pretrained(model_dir)
    text_ids = tok(text)["input_ids"]
    if len(text_ids) < BUNDLED_PROMPT:
        raise SystemExit(f"{text_file}: first document has {len(text_ids)} tokens < {BUNDLED_PROMPT}")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    ids = torch.tensor([text_ids[:BUNDLED_PROMPT]])
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits.float()[0]
    top2 = logits.topk(2, dim=-1).values
    gtokens = greedy(model, ids, BUNDLED_GREEDY)
    ref = {
        "model_dir": os.path.abspath(model_dir), "text": text, "text_ids": text_ids,
        "input_ids": ids.tolist(), "tail_logits": logits[-BUNDLED_TAIL:].reshape(-1).tolist(),
        "tail": BUNDLED_TAIL, "vocab": int(logits.shape[-1]),
        "argmax": logits.argmax(-1).tolist(), "top2_gap": (top2[:, 0] - top2[:, 1]).tolist(),
        "greedy": gtokens[0].tolist(),
    }
    path = os.path.join(out_dir, name)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "reference.json"), "w") as f:
        json.dump(ref, f)
    return {"name": name, "model_dir": ref["model_dir"], "model_type": model.config.model_type}


def make_dtypes(out_dir: str) -> None:
    path = os.path.join(out_dir, "dtypes")
    os.makedirs(path, exist_ok=True)
    base = torch.tensor([[0.5, -1.25, 3.0], [1024.0, -0.0078125, 7.5]], dtype=torch.float32)
    save_file({"t_f32": base, "t_f16": base.half(), "t_bf16": base.bfloat16(),
               "expected": base.clone()}, os.path.join(path, "dtypes.safetensors"),
              metadata={"format": "pt"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--bundled", nargs="*", default=[],
                    help="shipped checkpoint directories (models/tiny-*) to make parity references for")
    ap.add_argument("--bundled-text", default="evaldata/heldout_docs.jsonl",
                    help="held-out documents (JSONL, field text) for --bundled")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    models = [
        make_model(args.out, "llama_tied", llama_config(True, 4, 2, 16), LlamaForCausalLM, 11, False),
        make_model(args.out, "llama_untied", llama_config(False, 8, 2, 8), LlamaForCausalLM, 12, True),
        make_model(args.out, "qwen3", qwen3_config(), Qwen3ForCausalLM, 13, False),
    ]
    make_dtypes(args.out)
    bundled = [make_bundled(args.out, d, args.bundled_text) for d in args.bundled
               if os.path.exists(os.path.join(d, "config.json"))]
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump({"models": models, "bundled": bundled, "transformers": __import__("transformers").__version__,
                   "torch": torch.__version__}, f, indent=1)
    for m in models:
        print(f"{m['name']}: {m['model_type']} tied={m['tied']} sharded={m['sharded']} files={m['files']}")
    for m in bundled:
        print(f"{m['name']}: {m['model_type']} from {m['model_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
