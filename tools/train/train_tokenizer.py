#!/usr/bin/env python3
"""Train the byte-level BPE tokenizers of the bundled tiny models.

Two tokenizers, both with a vocabulary of 8192 (8187 BPE tokens + 5 special tokens placed after
them, as Llama 3 and Qwen 3 place theirs after the regular vocabulary), trained on the train split
of the corpus (data/corpus/train.jsonl, see tools/corpus/build_corpus.py):

  llama3  Llama 3 layout: no normalizer; pre-tokenizer Sequence[Split(Llama 3 pattern, isolated),
          ByteLevel(add_prefix_space=false, use_regex=false)]; ByteLevel decoder; post-processor
          Sequence[ByteLevel, TemplateProcessing adding <|begin_of_text|>].
          Special tokens <|begin_of_text|> <|end_of_text|> <|start_header_id|> <|end_header_id|> <|eot_id|>.
  qwen3   Qwen 2/3 layout: NFC normalizer; pre-tokenizer Sequence[Split(Qwen 2 pattern, isolated),
          ByteLevel(add_prefix_space=false, use_regex=false)]; ByteLevel decoder and post-processor,
          no BOS. Special tokens <|endoftext|> <|im_start|> <|im_end|> <think> </think>.

Writes, per tokenizer, into models/tiny-<name>/: tokenizer.json, tokenizer_config.json
(bos/eos, chat_template from tools/chat_templates/<name>.jinja, model_max_length) and
generation_config.json (bos/eos ids, eos list with the end-of-turn token).

Usage:
  python3 tools/train/train_tokenizer.py [--corpus data/corpus/train.jsonl] [--out models]
  python3 tools/train/train_tokenizer.py --configs-only   # rewrite the two json configs only
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

VOCAB_SIZE = 8192
MODEL_MAX_LENGTH = 8192

# Llama 3 (tiktoken cl100k-style) pre-tokenization pattern: numbers in groups of up to 3 digits.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen 2 / Qwen 3 pattern: the same, but every digit is its own pre-token.
QWEN3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SPECS = {
    "llama3": {
        "pattern": LLAMA3_PATTERN,
        "nfc": False,
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eot_id|>"],
        "bos": "<|begin_of_text|>",
        "eos": "<|end_of_text|>",       # end of a document (base model), as in Llama 3 base
        "eot": "<|eot_id|>",            # end of a chat turn
        "pad": None,
        "template": "llama3.jinja",
    },
    "qwen3": {
        "pattern": QWEN3_PATTERN,
        "nfc": True,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"],
        "bos": None,
        "eos": "<|endoftext|>",         # end of a document, as in Qwen 3 base
        "eot": "<|im_end|>",
        "pad": "<|endoftext|>",
        "template": "qwen3.jinja",
    },
}

ROOT = Path(__file__).resolve().parents[2]


def build_tokenizer(name: str) -> Tokenizer:
    spec = SPECS[name]
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False, ignore_merges=False))
    if spec["nfc"]:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(spec["pattern"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    return tok


def set_post_processor(tok: Tokenizer, name: str) -> None:
    spec = SPECS[name]
    byte_level = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    if spec["bos"]:
        bos = spec["bos"]
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.Sequence([
            byte_level,
            processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                          special_tokens=[(bos, bos_id)]),
        ])
    else:
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)


def corpus_iterator(path: Path, batch_chars: int = 1 << 20):
    buf, n = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            buf.append(text)
            n += len(text)
            if n >= batch_chars:
                yield buf
                buf, n = [], 0
    if buf:
        yield buf


def train(name: str, corpus: Path) -> Tokenizer:
    spec = SPECS[name]
    tok = build_tokenizer(name)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(spec["specials"]),
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus_iterator(corpus), trainer=trainer)
    n_regular = tok.get_vocab_size(with_added_tokens=False)
    if n_regular != VOCAB_SIZE - len(spec["specials"]):
        raise RuntimeError(f"{name}: BPE vocabulary has {n_regular} tokens, expected {VOCAB_SIZE - len(spec['specials'])}")
    tok.add_special_tokens(spec["specials"])
    if tok.get_vocab_size(with_added_tokens=True) != VOCAB_SIZE:
        raise RuntimeError(f"{name}: vocabulary is {tok.get_vocab_size(with_added_tokens=True)}, expected {VOCAB_SIZE}")
    set_post_processor(tok, name)
    return tok


def chat_template(name: str) -> str | None:
    p = ROOT / "tools" / "chat_templates" / SPECS[name]["template"]
    return p.read_text(encoding="utf-8") if p.exists() else None


def write_configs(name: str, tok: Tokenizer, out_dir: Path) -> None:
    spec = SPECS[name]
    added = {}
    for t in spec["specials"]:
        added[str(tok.token_to_id(t))] = {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True}
    cfg = {
        "added_tokens_decoder": added,
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "pad_token": spec["pad"],
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": MODEL_MAX_LENGTH,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    if name == "qwen3":
        cfg["add_bos_token"] = False
        cfg["errors"] = "replace"
        cfg["split_special_tokens"] = False
    tmpl = chat_template(name)
    if tmpl is not None:
        cfg["chat_template"] = tmpl
    else:
        print(f"warning: tools/chat_templates/{spec['template']} missing; tokenizer_config.json has no chat_template",
              file=sys.stderr)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    eos_ids = [tok.token_to_id(spec["eos"]), tok.token_to_id(spec["eot"])]
    gen = {
        "bos_token_id": tok.token_to_id(spec["bos"] or spec["eos"]),
        "eos_token_id": eos_ids,
        "do_sample": False,
        "transformers_version": "5.17.0",
    }
    if spec["pad"]:
        gen["pad_token_id"] = tok.token_to_id(spec["pad"])
    (out_dir / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(ROOT / "data/corpus/train.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "models"))
    ap.add_argument("--only", choices=sorted(SPECS), action="append")
    ap.add_argument("--configs-only", action="store_true",
                    help="keep tokenizer.json, rewrite tokenizer_config.json and generation_config.json")
    args = ap.parse_args(argv)
    for name in args.only or sorted(SPECS):
        out_dir = Path(args.out) / f"tiny-{name}"
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.configs_only:
            tok = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
        else:
            tok = train(name, Path(args.corpus))
            tok.save(str(out_dir / "tokenizer.json"))
        write_configs(name, tok, out_dir)
        sample = "The pass key is 48213. Remember it.\n\nWhat is the pass key? The pass key is"
        enc = tok.encode(sample)
        print(f"{name}: vocab {tok.get_vocab_size()} -> {out_dir}; sample {len(enc.ids)} tokens: {enc.tokens[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
