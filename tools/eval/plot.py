#!/usr/bin/env python3
"""Plots of akcb-eval results (matplotlib, PNG).

    python3 tools/eval/plot.py OUT_DIR [OUT_DIR ...] --out docs/plots

For every (model, set) with retrieval or perplexity cells: quality against the KV bytes held
(measured, as a share of a full cache at the same length), one line per policy and budget mode;
the full cache is the star at 1.0; accuracies carry 95% Wilson intervals. For every model:
per-layer origin ratio r_l and the Original / Quantized / Evicted shares of the token-heads of `mix`
(bytes mode) at each budget. For every model and context length with cells at 1/4 of the bytes:
the verdict bars (accuracy of every policy at equal bytes, with intervals, k/n on the bars) and the
per-layer share of the needle still held after the prefill.
"""
import argparse
import collections
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from report import load as load_runs, wilson95  # noqa: E402  (tools/eval/report.py)

STYLE = {
    ("window", "tokens=bytes"): ("tab:gray", "s", "-"),
    ("origin", "tokens=bytes"): ("tab:blue", "o", "-"),
    ("quant", "tokens"): ("tab:orange", "v", "--"),
    ("quant", "bytes"): ("tab:orange", "^", "-"),
    ("mix", "tokens"): ("tab:green", "D", "--"),
    ("mix", "bytes"): ("tab:green", "P", "-"),
}


def save(fig, outdir, name):
    """Lays out, writes OUTDIR/NAME (PNG, 110 dpi), closes the figure; returns NAME."""
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, name), dpi=110)
    plt.close(fig)
    return name


def load(dirs):
    """Cells of the runs in `dirs`, each key once (the first run that has it)."""
    return load_runs(dirs)[0]



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
            ci = wilson95(c["n_exact"], c["n"]) if "n_exact" in c else None
            series[(name, label_tag)].append((c["held_over_full"], quality(c), c["fraction_str"], ci))
        for ((pol, mode), tag), pts in sorted(series.items()):
            pts.sort(key=lambda p: p[0])
            color, marker, ls = STYLE.get((pol, mode), ("black", "x", ":"))
            if tag:
                ls = ":"
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            if all(p[3] for p in pts):
                err = [[y - p[3][0] for y, p in zip(ys, pts)], [p[3][1] - y for y, p in zip(ys, pts)]]
                ax.errorbar(xs, ys, yerr=err, marker=marker, ls=ls, color=color, capsize=2, elinewidth=0.7,
                            label=f"{pol} ({mode}){tag}")
            else:
                ax.plot(xs, ys, marker=marker, ls=ls, color=color, label=f"{pol} ({mode}){tag}")
            for x, y, fs, _ in pts:
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
        files.append(save(fig, outdir, f"quality_{model}_{set_}_{split}_n{n}.png"))
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
        files.append(save(fig, outdir, f"layers_{model}_{longest}.png"))
    return files


QUARTER = [("full", "tokens=bytes"), ("window", "tokens=bytes"), ("origin", "tokens=bytes"), ("quant", "bytes"),
           ("mix", "bytes")]
COLORS = {"full": "black", "window": "tab:gray", "origin": "tab:blue", "quant": "tab:orange", "mix": "tab:green"}


def quarter_groups(cells):
    """{model: {length: {(policy, mode, tag): [cells over tasks]}}} for full and every policy at 1/4."""
    g = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(list)))
    for c in cells:
        if c["kind"] != "retrieval":
            continue
        tag = c.get("tag", "")
        if tag not in ("", "tuned"):
            continue
        if c["policy"] != "full" and abs(c["fraction"] - 0.25) > 1e-9:
            continue
        if c["policy"] == "full" and tag:
            continue
        g[c["model"]][int(c["set"].split("_")[-1])][(c["policy"], c["budget_mode"], tag)].append(c)
    return g


def plot_verdict(cells, outdir, split_label):
    """Bars: exact accuracy (tasks pooled) of every policy at 1/4 of the bytes, per context length."""
    files = []
    for model, by_len in sorted(quarter_groups(cells).items()):
        lengths = sorted(by_len)
        names = [(p, m, "") for p, m in QUARTER]
        if any(("mix", "bytes", "tuned") in by_len[L] for L in lengths):
            names.append(("mix", "bytes", "tuned"))
        fig, ax = plt.subplots(figsize=(max(6.0, 1.6 + 2.6 * len(lengths)), 4.6))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            for j, L in enumerate(lengths):
                cs = by_len[L].get(name)
                if not cs:
                    continue
                outcome = {e["id"]: bool(e["exact"]) for c in cs for e in c["examples"]}  # runs may overlap
                k = sum(outcome.values())
                n = len(outcome)
                lo, hi = wilson95(k, n)
                x = j + (i - (len(names) - 1) / 2) * width
                ax.bar(x, k / n, width, color=COLORS[name[0]], alpha=0.55 if name[2] else 1.0,
                       hatch="//" if name[2] else None,
                       label=(f"{name[0]}" + ("" if name[0] in ("full", "window", "origin") else f" ({name[1]})")
                              + (" tuned" if name[2] else "")) if j == 0 else None)
                ax.errorbar(x, k / n, yerr=[[k / n - lo], [hi - k / n]], color="black", capsize=2, lw=0.8)
                ax.annotate(f"{k}/{n}", (x, hi), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=6)
        ax.set_xticks(range(len(lengths)))
        ax.set_xticklabels([f"{L} tokens" for L in lengths])
        ax.set_ylabel("exact match (passkey + multikey)")
        ax.set_ylim(0, 1.12)
        ax.set_title(f"{model}: every policy at 1/4 of the full KV bytes\n({split_label}; bars: 95% Wilson intervals)", fontsize=9)
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
        ax.grid(True, axis="y", alpha=0.3)
        files.append(save(fig, outdir, f"verdict_{model}.png"))
    return files


def plot_needle_layers(cells, outdir):
    """Per layer: share of the needle's (KV head, answer token) pairs held after the prefill, at 1/4."""
    files = []
    for model, by_len in sorted(quarter_groups(cells).items()):
        lengths = sorted(by_len)
        fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.6), squeeze=False)
        for ax, L in zip(axes[0], lengths):
            for pol, mode in QUARTER[1:]:
                exs = list({e["id"]: e for c in by_len[L].get((pol, mode, ""), []) for e in c["examples"]
                            if e.get("needle_kept_per_layer")}.values())
                if not exs:
                    continue
                nl = len(exs[0]["needle_kept_per_layer"])
                ys = [sum(e["needle_kept_per_layer"][l] for e in exs) / len(exs) for l in range(nl)]
                ax.plot(range(nl), ys, marker="o", color=COLORS[pol], label=f"{pol} ({mode})")
            ax.set_title(f"{L} tokens", fontsize=9)
            ax.set_xlabel("layer")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel("needle token-heads held after prefill")
        axes[0][-1].legend(fontsize=7)
        fig.suptitle(f"{model}: needle survival per layer at 1/4 of the bytes", fontsize=10)
        files.append(save(fig, outdir, f"needle_layers_{model}.png"))
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="akcb-eval output directories (with results.json)")
    ap.add_argument("--out", default="docs/plots")
    ap.add_argument("--verdict-only", action="store_true", help="only the verdict and needle-per-layer plots")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    cells = load(args.dirs)
    splits = sorted({c["split"] for c in cells if c["kind"] == "retrieval"})
    files = plot_verdict(cells, args.out, "/".join(splits) + " split") + plot_needle_layers(cells, args.out)
    if not args.verdict_only:
        files += plot_quality(cells, args.out) + plot_layers(cells, args.out)
    for f in files:
        print(os.path.join(args.out, f))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
