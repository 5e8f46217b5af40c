#!/usr/bin/env python3
"""Build evaldata/heldout_docs.jsonl: a small committed held-out text set for akcb-eval's perplexity task.

Takes documents of at least --min-chars characters from data/corpus/heldout.jsonl (made by
tools/corpus/build_corpus.py; held-out split, never trained on), round-robin over sources in
sorted-id order (deterministic), cut to --chars characters at a line boundary.

    python3 tools/corpus/build_corpus.py        # if data/corpus/ is missing
    python3 tools/eval/make_heldout_docs.py
"""
import argparse
import collections
import json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heldout", default="data/corpus/heldout.jsonl")
    ap.add_argument("--out", default="evaldata/heldout_docs.jsonl")
    ap.add_argument("--docs", type=int, default=24)
    ap.add_argument("--chars", type=int, default=16000)
    ap.add_argument("--min-chars", type=int, default=16000)
    args = ap.parse_args()

    by_source = collections.defaultdict(list)
    with open(args.heldout, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if len(d["text"]) >= args.min_chars:
                by_source[d["source"]].append(d)
    for v in by_source.values():
        v.sort(key=lambda d: d["id"])
    sources = sorted(by_source)
    out, i = [], 0
    while len(out) < args.docs and any(by_source.values()):
        s = sources[i % len(sources)]
        i += 1
        if by_source[s]:
            d = by_source[s].pop(0)
            text = d["text"][: args.chars]
            cut = text.rfind("\n")
            if cut > args.chars // 2:
                text = text[:cut]
            out.append({"id": d["id"], "source": d["source"], "text": text})
    with open(args.out, "w", encoding="utf-8") as f:
        for d in out:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(out)} documents from {sorted(collections.Counter(d['source'] for d in out).items())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
