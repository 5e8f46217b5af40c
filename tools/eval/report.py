#!/usr/bin/env python3
"""Markdown tables from akcb-eval results (for docs/RESULTS.md).

    python3 tools/eval/report.py OUT_DIR [OUT_DIR ...] > tables.md

Per model and input set: one row per policy / budget mode, one column per budget (share of the full
KV bytes). A cell reads `exact% (share of full) · held/full bytes`; perplexity sets read
`ppl (ppl / full ppl) · held/full`. Then the verdict on `mix` at 1/4 of the full bytes: does it
keep >= 97% of full-cache accuracy, and does it beat window, origin and quant at equal bytes.
"""
import argparse
import collections
import json
import os

ROWS = [("window", "tokens=bytes"), ("origin", "tokens=bytes"), ("quant", "tokens"), ("quant", "bytes"),
        ("mix", "tokens"), ("mix", "bytes")]


def load(dirs):
    cells, seen, extras = [], set(), []
    for d in dirs:
        with open(os.path.join(d, "results.json")) as f:
            j = json.load(f)
        extras.append((d, j))
        for c in j["cells"]:
            if c["key"] not in seen:
                seen.add(c["key"])
                cells.append(c)
    return cells, extras


def fmt(c):
    b = c["held_over_full"]
    if c["kind"] == "ppl":
        r = c.get("ppl_over_full")
        return f"{c['ppl']:.2f} ({r:.3f}) · {b:.2f}" if r is not None else f"{c['ppl']:.2f} · {b:.2f}"
    s = c.get("acc_exact_share_full")
    share = f" ({s:.2f})" if s is not None else ""
    return f"{100 * c['acc_exact']:.0f}%{share} · {b:.2f}"


def tables(cells, tag=""):
    out = []
    groups = collections.defaultdict(list)
    for c in cells:
        if c.get("tag", "") == tag and c["kind"] in ("retrieval", "ppl", "short"):
            groups[(c["model"], c["kind"], c["set"], c["split"], c["n"])].append(c)
    for (model, kind, set_, split, _n), cs in sorted(groups.items()):
        full = [c for c in cs if c["policy"] == "full"]
        fracs = sorted({c["fraction"] for c in cs if c["policy"] != "full"}, reverse=True)
        fstr = {c["fraction"]: c["fraction_str"] for c in cs}
        n = cs[0]["n"]
        unit = "documents" if kind == "ppl" else "examples"
        out.append(f"\n**{model} · {set_} ({split} split, n = {n} {unit})**")
        if full:
            f = full[0]
            q = f"ppl {f['ppl']:.3f}" if kind == "ppl" else \
                f"exact {100 * f['acc_exact']:.0f}%, contains {100 * f['acc_contains']:.0f}%"
            out.append(f"full cache: {q}; prefill {f['prefill_tps']:.0f} tok/s, decode {f['decode_tps']:.1f} tok/s\n")
        out.append("| policy (budget mode) | " + " | ".join(f"budget {fstr[x]}" for x in fracs) + " |")
        out.append("|---|" + "---|" * len(fracs))
        for pol, mode in ROWS:
            row = []
            for x in fracs:
                m = [c for c in cs if c["policy"] == pol and c["budget_mode"] == mode and abs(c["fraction"] - x) < 1e-9]
                row.append(fmt(m[0]) if m else "")
            if any(row):
                out.append(f"| {pol} ({mode}) | " + " | ".join(row) + " |")
    return "\n".join(out)


def speed_table(cells):
    out = ["\n| model | set | policy (mode) | budget | prefill tok/s | decode tok/s | compress share | held/full end | "
           "peak held / full at end | allocated / full at end |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        if c.get("tag", "") or c["kind"] == "short":
            continue
        if c["policy"] != "full" and abs(c["fraction"] - 0.25) > 1e-9:
            continue
        out.append(f"| {c['model']} | {c['set']} | {c['policy']} ({c['budget_mode']}) | "
                   f"{'-' if c['policy'] == 'full' else c['fraction_str']} | {c['prefill_tps']:.0f} | "
                   f"{c['decode_tps']:.1f} | {c['compress_share']:.3f} | {c['held_over_full']:.3f} | "
                   f"{c['peak_held_bytes'] / c['full_bytes_end']:.3f} | {c['capacity_over_full']:.3f} |")
    return "\n".join(out)


def needle_table(cells):
    rows = [c for c in cells if c["kind"] == "retrieval" and c.get("needle_kept_after_prefill") is not None
            and c["policy"] != "full"]
    if not rows:
        return ""
    out = ["\n| model | set | policy (mode) | budget | tag | needle answer tokens held after prefill | exact | contains |",
           "|---|---|---|---|---|---|---|---|"]
    for c in sorted(rows, key=lambda c: (c["model"], c["set"], -c["fraction"], c["policy"], c["budget_mode"])):
        out.append(f"| {c['model']} | {c['set']} | {c['policy']} ({c['budget_mode']}) | {c['fraction_str']} | "
                   f"{c.get('tag', '')} | {100 * c['needle_kept_after_prefill']:.0f}% | {100 * c['acc_exact']:.0f}% | "
                   f"{100 * c['acc_contains']:.0f}% |")
    return "\n".join(out)


def verdict(cells):
    out = []
    by = collections.defaultdict(dict)
    for c in cells:
        if c["kind"] != "retrieval" or c.get("tag", ""):
            continue
        k = (c["model"], c["set"], c["split"])
        if c["policy"] == "full":
            by[k]["full"] = c
        elif abs(c["fraction"] - 0.25) < 1e-9:
            by[k][(c["policy"], c["budget_mode"])] = c
    # pooled per model and length over the tasks
    pooled = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    for (model, set_, split), d in by.items():
        length = set_.split("_")[-1]
        for name, c in d.items():
            pooled[(model, length, split)][name][0] += c["n_exact"]
            pooled[(model, length, split)][name][1] += c["n"]
    out.append("\n| model | length | full | window | origin | quant (bytes) | mix (bytes) | mix/full | mix >= 97% of full? | "
               "mix beats window / origin / quant at equal bytes? |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for (model, length, split), d in sorted(pooled.items()):
        def acc(name):
            e, n = d.get(name, [0, 0])
            return (e / n if n else None), e, n
        full, fe, fn = acc("full")
        mix, me, mn = acc(("mix", "bytes"))
        others = {k: acc(k) for k in [("window", "tokens=bytes"), ("origin", "tokens=bytes"), ("quant", "bytes")]}
        if full is None or mix is None:
            continue
        share = mix / full if full else float("nan")
        beats = []
        for (pol, _), (a, _, _) in others.items():
            if a is None:
                beats.append(f"{pol}: n/a")
            else:
                beats.append(f"{pol}: {'yes' if mix > a else ('tie' if mix == a else 'no')}")
        cols = [f"{fe}/{fn}"] + [f"{others[k][1]}/{others[k][2]}" for k in others] + [f"{me}/{mn}"]
        out.append(f"| {model} | {length} | " + " | ".join(cols) + f" | {share:.2f} | {'yes' if share >= 0.97 else 'no'} | "
                   + ", ".join(beats) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+")
    args = ap.parse_args()
    cells, extras = load(args.dirs)
    print("## Verdict: mix at 1/4 of the full KV bytes (exact match, passkey + multikey pooled)")
    print(verdict(cells))
    print("\n## Quality grid")
    print(tables(cells))
    tuned = tables(cells, "tuned")
    if tuned.strip():
        print("\n## Tuned mix (test split)")
        print(tuned)
    nt = needle_table(cells)
    if nt:
        print("\n## Needle survival (share of (layer, KV head, answer-token position) held after the prefill)")
        print(nt)
    print("\n## Speed and memory at 1/4 of the full bytes")
    print(speed_table(cells))
    for d, j in extras:
        print(f"\n- `{d}`: {j.get('cells_total')} cells ({j.get('cells_cached')} from earlier runs), "
              f"wall {j.get('wall_seconds', 0):.0f} s, threads {j.get('threads')}"
              + (f"; short-context check: {'identical' if j['short_check']['all_identical'] else 'MISMATCH'}"
                 if 'short_check' in j else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
