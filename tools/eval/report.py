#!/usr/bin/env python3
"""Markdown tables from akcb-eval results (for docs/RESULTS.md).

    python3 tools/eval/report.py OUT_DIR [OUT_DIR ...] [--subset test] > tables.md

Per model and input set: one row per policy / budget mode, one column per budget (share of the full
KV bytes). A cell reads `exact% (share of full) · held/full bytes`; perplexity sets read
`ppl (ppl / full ppl) · held/full`. Then the verdict on `mix` at 1/4 of the full bytes: does it
keep >= 97% of full-cache accuracy (with 95% Wilson intervals), and does it beat window, origin and
quant at equal bytes (paired on the same examples: discordant counts and the exact two-sided McNemar
p-value). Then per-layer needle survival at 1/4 (why a policy loses the answer).

--subset dev|test keeps, from cells run on `--split all`, only the even (dev) or odd (test)
indexed examples of each file (akcb-eval's split rule), recomputing the counts: the tuned setting,
chosen on dev, is compared with the defaults on the test examples only. --tag tuned puts the mix
cells of that tag (e.g. `akcb-eval --tune`'s) in the verdict against the untagged other policies.
"""
import argparse
import collections
import copy
import json
import math
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


def wilson95(k, n):
    """95% Wilson score interval of k successes in n trials."""
    if n <= 0:
        return 0.0, 1.0
    z = 1.959963984540054
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def mcnemar_p(b, c):
    """Exact two-sided McNemar (binomial sign test on the b + c discordant pairs)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def example_index(ex_id):
    return int(ex_id.rsplit("_", 1)[-1])


def subset(cells, which):
    """Cells of split 'all' restricted to dev (even index) or test (odd index) examples; other
    cells of that split are kept as they are."""
    out = []
    want = 0 if which == "dev" else 1
    for c in cells:
        if c["split"] == which:
            out.append(c)
            continue
        if c["split"] != "all" or c["kind"] != "retrieval":
            continue
        c = copy.deepcopy(c)
        exs = [e for e in c["examples"] if example_index(e["id"]) % 2 == want]
        c["examples"] = exs
        c["split"] = which
        c["n"] = len(exs)
        c["n_exact"] = sum(bool(e["exact"]) for e in exs)
        c["n_contains"] = sum(bool(e["contains"]) for e in exs)
        c["acc_exact"] = c["n_exact"] / len(exs) if exs else 0.0
        c["acc_contains"] = c["n_contains"] / len(exs) if exs else 0.0
        kept = [e["needle_kept_after_prefill"] for e in exs if e.get("needle_kept_after_prefill", -1) >= 0]
        c["needle_kept_after_prefill"] = sum(kept) / len(kept) if kept else None
        c["key"] = c["key"] + "|" + which
        out.append(c)
    # shares of full, recomputed on the subset
    full = {(c["model"], c["set"], c["split"]): c for c in out if c["policy"] == "full" and not c.get("tag")}
    for c in out:
        f = full.get((c["model"], c["set"], c["split"]))
        if f and c["kind"] == "retrieval":
            c["acc_exact_share_full"] = c["acc_exact"] / f["acc_exact"] if f["acc_exact"] else None
    return out


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


POLICIES_AT_QUARTER = [("window", "tokens=bytes"), ("origin", "tokens=bytes"), ("quant", "bytes"), ("mix", "bytes")]


def quarter_cells(cells, tag=""):
    """{(model, length, split): {"full" | (policy, mode): [cells over the tasks]}} at 1/4."""
    by = collections.defaultdict(lambda: collections.defaultdict(list))
    for c in cells:
        if c["kind"] != "retrieval":
            continue
        want_tag = tag if c["policy"] == "mix" else ""  # --tag selects the mix cells; the rest untagged
        if c["policy"] == "full" and not c.get("tag", ""):
            name = "full"
        elif c.get("tag", "") == want_tag and c["policy"] != "full" and abs(c["fraction"] - 0.25) < 1e-9:
            name = (c["policy"], c["budget_mode"])
        else:
            continue
        by[(c["model"], c["set"].split("_")[-1], c["split"])][name].append(c)
    return by


def outcomes(cs):
    """{example id: exact} over the cells of one policy (the tasks of one length)."""
    return {e["id"]: bool(e["exact"]) for c in cs for e in c["examples"]}


def verdict(cells, tag=""):
    out = ["\n| model | length | split | full | window | origin | quant (bytes) | mix (bytes) | mix / full | "
           "mix >= 97% of full? | mix vs window / origin / quant, paired (mix-only wins : other-only wins, McNemar p) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (model, length, split), d in sorted(quarter_cells(cells, tag).items()):
        if "full" not in d or ("mix", "bytes") not in d:
            continue
        res = {k: outcomes(v) for k, v in d.items()}
        full = res["full"]
        ids = sorted(full)

        def cnt(name):
            o = res.get(name)
            if o is None:
                return None
            k = sum(o[i] for i in ids if i in o)
            n = sum(1 for i in ids if i in o)
            lo, hi = wilson95(k, n)
            return k, n, f"{k}/{n} ({lo:.2f}-{hi:.2f})"

        cols = [cnt("full")] + [cnt(p) for p in POLICIES_AT_QUARTER]
        fk, fn, _ = cols[0]
        mk, mn, _ = cols[-1]
        share = (mk / mn) / (fk / fn) if fk else float("nan")
        mix = res[("mix", "bytes")]
        pairs = []
        for p in POLICIES_AT_QUARTER[:3]:
            o = res.get(p)
            if o is None:
                pairs.append(f"{p[0]}: n/a")
                continue
            b = sum(1 for i in ids if mix.get(i) and not o.get(i))
            c = sum(1 for i in ids if o.get(i) and not mix.get(i))
            verdict_word = "beats" if b > c else ("ties" if b == c else "loses to")
            pairs.append(f"{verdict_word} {p[0]} {b}:{c} (p={mcnemar_p(b, c):.2g})")
        out.append(f"| {model} | {length} | {split} | " + " | ".join(x[2] if x else "" for x in cols)
                   + f" | {share:.2f} | {'yes' if share >= 0.97 else 'no'} | " + "; ".join(pairs) + " |")
    return "\n".join(out)


def per_task_line(cells, tag=""):
    rows = ["\n| model | set | split | " + " | ".join(["full"] + [f"{p} ({m})" for p, m in POLICIES_AT_QUARTER]) + " |",
            "|---|---|---|" + "---|" * (1 + len(POLICIES_AT_QUARTER))]
    by = collections.defaultdict(dict)
    for c in cells:
        if c["kind"] != "retrieval":
            continue
        want_tag = tag if c["policy"] == "mix" else ""
        if c["policy"] == "full" and not c.get("tag", ""):
            by[(c["model"], c["set"], c["split"])]["full"] = c
        elif c.get("tag", "") == want_tag and c["policy"] != "full" and abs(c["fraction"] - 0.25) < 1e-9:
            by[(c["model"], c["set"], c["split"])][(c["policy"], c["budget_mode"])] = c
    for k, d in sorted(by.items()):
        if ("mix", "bytes") not in d:
            continue
        cols = [d.get(n) for n in ["full"] + POLICIES_AT_QUARTER]
        rows.append(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(f"{c['n_exact']}/{c['n']}" if c else "" for c in cols)
                    + " |")
    return "\n".join(rows)


def needle_layers(cells, tag=""):
    """Per-layer share of the needle's (KV head, answer token) pairs held after the prefill, at 1/4,
    mean over examples; for mix also split by whether the example was answered exactly."""
    out = []
    for (model, length, split), d in sorted(quarter_cells(cells, tag).items()):
        rows = []
        for name in POLICIES_AT_QUARTER:
            exs = [e for c in d.get(name, []) for e in c["examples"] if e.get("needle_kept_per_layer")]
            if not exs:
                continue
            L = len(exs[0]["needle_kept_per_layer"])

            def mean_row(es):
                if not es:
                    return None
                return [sum(e["needle_kept_per_layer"][l] for e in es) / len(es) for l in range(L)]

            groups = [("all", exs)]
            if name == ("mix", "bytes") or name == ("quant", "bytes"):
                groups += [("exact", [e for e in exs if e["exact"]]), ("wrong", [e for e in exs if not e["exact"]])]
            for g, es in groups:
                r = mean_row(es)
                if r is None:
                    continue
                allheld = sum(1 for e in es if min(e["needle_kept_per_layer"]) > 0) / len(es)
                rows.append(f"| {name[0]} ({name[1]}) | {g} (n={len(es)}) | " + " | ".join(f"{100 * v:.0f}" for v in r)
                            + f" | {100 * allheld:.0f}% |")
        if rows:
            L = len(rows[0].split("|")) - 5
            out.append(f"\n**{model} · {length} ({split})**: % of the needle's (KV head, answer token) pairs held after the "
                       "prefill, per layer; last column: examples where every layer still holds some of the needle\n")
            out.append("| policy | examples | " + " | ".join(f"L{l}" for l in range(L)) + " | needle in every layer |")
            out.append("|---|---|" + "---|" * (L + 1))
            out += rows
    return "\n".join(out)


def layer_ratios(cells, tag=""):
    out = ["\n| model | set | split | policy | origin ratio r_l per layer (mean over examples) | Original / Quantized / Evicted share per layer (%) |",
           "|---|---|---|---|---|---|"]
    for c in cells:
        if c["kind"] != "retrieval" or c.get("tag", "") != tag or c["policy"] != "mix" or c["budget_mode"] != "bytes" \
                or abs(c["fraction"] - 0.25) > 1e-9:
            continue
        r = " ".join(f"{x['origin_ratio']:.2f}" for x in c["layers"])
        st = " ".join(f"{100 * x['original_share']:.0f}/{100 * x['quantized_share']:.0f}/{100 * x['evicted_share']:.0f}"
                      for x in c["layers"])
        out.append(f"| {c['model']} | {c['set']} | {c['split']} | mix (bytes) 1/4 | {r} | {st} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--subset", choices=["dev", "test"], help="restrict split-all cells to these examples")
    ap.add_argument("--tag", default="", help="cell tag of the mix cells in the verdict (e.g. tuned); the others untagged")
    args = ap.parse_args()
    cells, extras = load(args.dirs)
    if args.subset:
        cells = subset(cells, args.subset)
    print("## Verdict: mix at 1/4 of the full KV bytes (exact match, passkey + multikey pooled; 95% Wilson intervals)")
    print(verdict(cells, args.tag))
    print(per_task_line(cells, args.tag))
    print("\n## Needle survival per layer at 1/4")
    print(needle_layers(cells, args.tag))
    print("\n## Origin ratios and token states per layer, mix (bytes) at 1/4")
    print(layer_ratios(cells, args.tag))
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
