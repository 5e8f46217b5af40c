#!/usr/bin/env python3
"""Seed corpora for the tokenizer fuzzers (tests/fuzz/).

Usage: make_fuzz_seeds.py OUT_DIR
Writes OUT_DIR/tokenizer_json/ (small tokenizer.json files in the Llama 3, Qwen 3 and GPT-2
layouts, trained with HF tokenizers at vocab 300, plus a few broken variants) and
OUT_DIR/encode/ (the hard strings of make_fixtures.py, plus invalid UTF-8).
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402
from tokenizers import normalizers  # noqa: E402


def main():
    out = Path(sys.argv[1])
    (out / "tokenizer_json").mkdir(parents=True, exist_ok=True)
    (out / "encode").mkdir(parents=True, exist_ok=True)
    toks = {
        "llama3": mf.train(mf.LLAMA3_PATTERN, mf.LLAMA3_SPECIALS, None, vocab_size=300, ignore_merges=True),
        "qwen3": mf.train(mf.QWEN3_PATTERN, mf.QWEN3_SPECIALS, normalizers.NFC(), vocab_size=300),
        "gpt2": mf.train(None, ["<|endoftext|>"], normalizers.Sequence([normalizers.NFC()]),
                         use_split=False, vocab_size=300),
    }
    toks["llama3"].post_processor = mf.bos_template(toks["llama3"], "<|begin_of_text|>")
    for name, tok in toks.items():
        text = tok.to_str()
        (out / "tokenizer_json" / f"{name}.json").write_text(text)
        j = json.loads(text)
        j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
        (out / "tokenizer_json" / f"{name}_string_merges.json").write_text(json.dumps(j, ensure_ascii=False))
        j["normalizer"] = {"type": "NFKC"}
        (out / "tokenizer_json" / f"{name}_bad_normalizer.json").write_text(json.dumps(j))
    for i, s in enumerate(mf.hard_strings()):
        (out / "encode" / f"s{i:04d}").write_bytes(s.encode("utf-8"))
    for i, b in enumerate([b"\xff", b"abc\xc3", b"\xed\xa0\x80", b"a\xe2\x82", b"\xf4\x90\x80\x80"]):
        (out / "encode" / f"bad{i}").write_bytes(b)
    print("fuzz seeds ->", out)


if __name__ == "__main__":
    main()
