#!/usr/bin/env python3
"""Prints the CPU decode-step benchmark (tests/bench/bench_cache.cpp) as a Markdown table, each
row's time as a ratio to the `full` row measured in the same run with the same thread count.

    build/tests/bench/bench_cache --benchmark_out=bench.json --benchmark_out_format=json
    python3 tools/bench_table.py bench.json
"""
import json
import sys


def main(path: str) -> None:
    runs = json.load(open(path))["benchmarks"]
    rows = {}
    for r in runs:
        # name: decode_step/<policy>/<threads>/min_time:1.000
        parts = r["name"].split("/")
        rows[(parts[1], int(parts[2]))] = r
    print("| policy | threads | us / step | vs full | held tokens | KV bytes held | vs full bytes | compressions |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (policy, threads), r in rows.items():
        base = rows.get(("full", threads))
        ratio = r["real_time"] / base["real_time"] if base else float("nan")
        print(f"| {policy} | {threads} | {r['real_time']:.0f} | {ratio:.2f} | {r['held_tokens']:.0f} | "
              f"{r['kv_bytes_held'] / 2**20:.1f} MiB | {r['kv_bytes_vs_full']:.3f} | {r['compressions']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1])
