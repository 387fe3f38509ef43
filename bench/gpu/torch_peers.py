#!/usr/bin/env python3
"""Peers for toma's GPU numbers, measured with PyTorch on the GPU machine (no network there).

Prints and writes JSON: the card's bf16 matmul rate and copy bandwidth (the references for
TFLOP/s and GB/s figures), and PyTorch scaled_dot_product_attention (FlashAttention on Hopper)
at the shapes of SPEC section 10, dense and at the merged lengths P + K for ratios 0.25/0.5/0.75
(the ideal a merge method approaches if merging cost nothing).
"""
import argparse
import json
import math
import sys

import cuda_timing  # beside this file


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch_peers: PyTorch is not installed here; skipped")
        return 0
    if not torch.cuda.is_available():
        print("torch_peers: no CUDA device; skipped")
        return 0

    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)

    def time_ms(fn, reps=args.reps, warm=10):
        return cuda_timing.time_ms(torch, fn, reps, warm)

    out = {"device": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
           "cuda": torch.version.cuda, "rows": []}

    n = 8192
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    med, _, _ = time_ms(lambda: a @ b, reps=20)
    out["matmul_bf16_tflops"] = 2 * n**3 / (med * 1e-3) / 1e12
    del a, b
    x = torch.empty(1 << 28, device=dev, dtype=torch.float32)  # 1 GiB
    y = torch.empty_like(x)
    med, _, _ = time_ms(lambda: y.copy_(x), reps=20)
    out["copy_gbps"] = 2 * x.numel() * 4 / (med * 1e-3) / 1e9
    del x, y

    shapes = [("sdxl64", 2, 0, 4096, 10, 64), ("sdxl32", 2, 0, 1024, 20, 64), ("flux", 1, 512, 4096, 24, 128)]
    for name, B, P, N, heads, d in shapes:
        for dtype in (torch.float16, torch.bfloat16):
            for ratio in (0.0, 0.25, 0.5, 0.75):
                T = P + (N if ratio == 0 else N - int(math.floor(ratio * N + 0.5)))
                q = torch.randn(B, heads, T, d, device=dev, dtype=dtype)
                k = torch.randn_like(q)
                v = torch.randn_like(q)
                med, lo, hi = time_ms(lambda: F.scaled_dot_product_attention(q, k, v))
                flops = 4 * B * heads * T * T * d
                out["rows"].append({"shape": name, "dtype": str(dtype).split(".")[-1], "ratio": ratio,
                                    "tokens": T, "ms": med, "min": lo, "max": hi,
                                    "tflops": flops / (med * 1e-3) / 1e12})
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print(f"{props.name}: bf16 matmul {out['matmul_bf16_tflops']:.0f} TFLOP/s, copy {out['copy_gbps']:.0f} GB/s")
    print(f"{'shape':8} {'dtype':9} {'ratio':>5} {'tokens':>6} {'SDPA ms':>9} {'TFLOP/s':>8}")
    for r in out["rows"]:
        print(f"{r['shape']:8} {r['dtype']:9} {r['ratio']:5.2f} {r['tokens']:6d} {r['ms']:9.3f} {r['tflops']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
