#!/usr/bin/env python3
"""Plots of akcb-eval results (matplotlib, PNG).

    python3 tools/eval/plot.py OUT_DIR [OUT_DIR ...] --out docs/plots

For every (model, set) with retrieval or perplexity cells: quality against the KV bytes held
(measured, as a share of a full cache at the same length), one line per policy and budget mode;
the full cache is the star at 1.0. For every model: per-layer origin ratio r_l and the
Original / Quantized / Evicted shares of the token-heads of `mix` (bytes mode) at each budget.
"""
import argparse
import collections
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    ("window", "tokens=bytes"): ("tab:gray", "s", "-"),
    ("origin", "tokens=bytes"): ("tab:blue", "o", "-"),
    ("quant", "tokens"): ("tab:orange", "v", "--"),
    ("quant", "bytes"): ("tab:orange", "^", "-"),
    ("mix", "tokens"): ("tab:green", "D", "--"),
    ("mix", "bytes"): ("tab:green", "P", "-"),
}


def load(dirs):
    cells = []
    for d in dirs:
        with open(os.path.join(d, "results.json")) as f:
            cells += json.load(f)["cells"]
    # de-duplicate by key (the same cell may appear in several runs)
    seen, out = set(), []
    for c in cells:
        if c["key"] in seen:
            continue
        seen.add(c["key"])
        out.append(c)
    return out


def quality(c):
    if c["kind"] == "ppl":
        return c.get("ppl")
    return c.get("acc_exact")


def plot_quality(cells, outdir):
    groups = collections.defaultdict(list)
    for c in cells:
        if c["kind"] in ("retrieval", "ppl") and c.get("tag", "") in ("", "tuned"):
            groups[(c["model"], c["set"], c["split"], c["n"])].append(c)
    files = []
    for (model, set_, split, n), cs in sorted(groups.items()):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        full = [c for c in cs if c["policy"] == "full"]
        series = collections.defaultdict(list)
        for c in cs:
            if c["policy"] == "full":
                continue
            name = (c["policy"], c["budget_mode"])
            label_tag = " tuned" if c.get("tag") == "tuned" else ""
            series[(name, label_tag)].append((c["held_over_full"], quality(c), c["fraction_str"]))
        for ((pol, mode), tag), pts in sorted(series.items()):
            pts.sort()
            color, marker, ls = STYLE.get((pol, mode), ("black", "x", ":"))
            if tag:
                ls = ":"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, ls=ls, color=color,
                    label=f"{pol} ({mode}){tag}")
            for x, y, fs in pts:
                ax.annotate(fs, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6, color=color)
        for f in full:
            ax.plot([f["held_over_full"]], [quality(f)], marker="*", ms=14, color="black", ls="none", label="full")
        ax.set_xlabel("KV bytes held at the end / full cache (measured)")
        is_ppl = cs[0]["kind"] == "ppl"
        ax.set_ylabel("perplexity (lower is better)" if is_ppl else "exact-match accuracy")
        ax.set_title(f"{model}: {set_} ({split}, n={n} {'docs' if is_ppl else 'examples'})", fontsize=10)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        name = f"quality_{model}_{set_}_{split}_n{n}.png"
        fig.savefig(os.path.join(outdir, name), dpi=110)
        plt.close(fig)
        files.append(name)
    return files


def plot_layers(cells, outdir):
    files = []
    by_model = collections.defaultdict(list)
    for c in cells:
        if c["policy"] == "mix" and c["budget_mode"] == "bytes" and c["kind"] == "retrieval" and c.get("tag", "") == "":
            by_model[c["model"]].append(c)
    for model, cs in sorted(by_model.items()):
        # the longest context, every budget
        longest = max(cs, key=lambda c: int(c["set"].split("_")[-1]))["set"]
        cs = sorted([c for c in cs if c["set"] == longest], key=lambda c: -c["fraction"])
        fig, axes = plt.subplots(1, len(cs), figsize=(max(5.5, 3.6 * len(cs)), 3.8), squeeze=False)
        for ax, c in zip(axes[0], cs):
            L = [r["layer"] for r in c["layers"]]
            o = [r["original_share"] for r in c["layers"]]
            q = [r["quantized_share"] for r in c["layers"]]
            e = [r["evicted_share"] for r in c["layers"]]
            ax.bar(L, o, color="tab:green", label="Original")
            ax.bar(L, q, bottom=o, color="tab:orange", label="Quantized")
            ax.bar(L, e, bottom=[a + b for a, b in zip(o, q)], color="lightgray", label="Evicted")
            ax.plot(L, [r["origin_ratio"] for r in c["layers"]], "k.-", label="origin ratio r_l")
            ax.set_title(f"mix (bytes) at {c['fraction_str']}", fontsize=9)
            ax.set_xlabel("layer")
            ax.set_ylim(0, 1.02)
        axes[0][0].set_ylabel("share of token-heads / r_l")
        axes[0][-1].legend(fontsize=7, loc="lower right")
        fig.suptitle(f"{model}: per-layer states at the end, {longest}", fontsize=10)
        fig.tight_layout()
        name = f"layers_{model}_{longest}.png"
        fig.savefig(os.path.join(outdir, name), dpi=110)
        plt.close(fig)
        files.append(name)
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="akcb-eval output directories (with results.json)")
    ap.add_argument("--out", default="docs/plots")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cells = load(args.dirs)
    for f in plot_quality(cells, args.out) + plot_layers(cells, args.out):
        print(os.path.join(args.out, f))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
