#!/usr/bin/env python3
"""Probe: what a decode step's attention costs on this GPU when the key count changes every step.

AdaptiveCache::attend holds a different number of keys at every decode step (and, under `mix`,
per layer). This times, for one Llama-3-8B layer (32 query / 8 KV heads, D 128, bf16, batch 1):
  sdpa     torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True), the call
           the cache made before, on keys that are a narrow view of a preallocated block;
  grouped  the grouped-query matmul path of akcb::ops::decode_attention (matmul, softmax, matmul);
each (a) at a fixed key count, repeated (the shape seen before), and (b) with the key count
growing by one per call (a new shape every call, as in decode), and lists the CUDA kernels the
profiler saw for sdpa. Prints a Markdown table; run on the GPU machine:
    python3 tools/bench/sdpa_decode_probe.py > sdpa_probe.md
"""
import time

import torch
import torch.nn.functional as F


def grouped(q, k, v):
    B, Hq, _, D = q.shape
    Hkv = k.shape[1]
    qg = q.reshape(B, Hkv, Hq // Hkv, D)
    s = torch.matmul(qg, k.transpose(2, 3)) * (D ** -0.5)
    p = torch.softmax(s, -1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(p, v).view(B, Hq, 1, D)


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)


def timed(fn, q, kb, vb, T, grow, n=64):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(n):
        t = T + (i if grow else 0)
        fn(q, kb[:, :, :t], vb[:, :, :t])
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e3


def main():
    dev = "cuda"
    dt = torch.bfloat16
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, cudnn {torch.backends.cudnn.version()}\n")
    print("| keys T | sdpa fixed ms | sdpa growing ms | grouped fixed ms | grouped growing ms | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|")
    for T in (2048, 8192, 32768):
        q = torch.randn(1, 32, 1, 128, device=dev, dtype=dt)
        kb = torch.randn(1, 8, T + 1024, 128, device=dev, dtype=dt)
        vb = torch.randn(1, 8, T + 1024, 128, device=dev, dtype=dt)
        for fn in (sdpa, grouped):  # warm-up at the fixed shape
            fn(q, kb[:, :, :T], vb[:, :, :T])
        d = (sdpa(q, kb[:, :, :T], vb[:, :, :T]).float() - grouped(q, kb[:, :, :T], vb[:, :, :T]).float()).abs().max()
        row = [timed(sdpa, q, kb, vb, T, False), timed(sdpa, q, kb, vb, T + 100, True),
               timed(grouped, q, kb, vb, T, False), timed(grouped, q, kb, vb, T + 200, True)]
        print(f"| {T} | " + " | ".join(f"{x:.3f}" for x in row) + f" | {d.item():.2e} |")
    q = torch.randn(1, 32, 1, 128, device=dev, dtype=dt)
    kb = torch.randn(1, 8, 9000, 128, device=dev, dtype=dt)
    vb = torch.randn(1, 8, 9000, 128, device=dev, dtype=dt)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for i in range(8):
            sdpa(q, kb[:, :, :8000 + i], vb[:, :, :8000 + i])
        torch.cuda.synchronize()
    print("\nsdpa, 8 calls with growing T (~8k), top operators by CPU time:\n")
    print("```")
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=14, max_name_column_width=70))
    print("```")


if __name__ == "__main__":
    main()
