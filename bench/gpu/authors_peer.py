#!/usr/bin/env python3
"""The authors' PyTorch ToMA (WenboLuu/ToMA) as the peer for toma's plan + merge + unmerge.

Their modules are fetched for the run into bench/.cache/authors-toma (ignored by git, never
committed) and carried to the GPU machine; without them this script says so and exits 0. Timed with
CUDA events (median): destination selection (local_tile_wise_facility, batch element 0 shared, as
their processor does), the merge weights (tile_attention_merge, scale 1000), merge (A @ tiles) and
unmerge (A_inv @ y, scattered back) at SDXL 64x64 (B=2, C=640) and Flux (B=1, 4096 image tokens,
C=3072), 256 tiles of 4x4, ratios 0.25/0.5/0.75, float16 and bfloat16.
"""
import argparse
import json
import os
import sys

import cuda_timing  # beside this file

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "..", ".cache", "authors-toma")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("authors_peer: PyTorch is not installed here; skipped")
        return 0
    if not torch.cuda.is_available():
        print("authors_peer: no CUDA device; skipped")
        return 0
    if not os.path.isfile(os.path.join(CACHE, "toma", "facility_location.py")):
        print(f"authors_peer: the authors' modules are not in {CACHE}; skipped")
        return 0
    sys.path.insert(0, CACHE)
    from toma.facility_location import local_tile_wise_facility  # noqa: E402  (theirs)
    from toma.merge_methods import tile_attention_merge  # noqa: E402
    from toma.utils import fold_with_indices, unfold_with_indices  # noqa: E402

    dev = torch.device("cuda")

    def time_ms(fn, reps=args.reps, warm=3):
        return cuda_timing.time_ms(torch, fn, reps, warm)[0]

    tiles = 256
    rows = []
    for name, B, N, C in (("sdxl64", 2, 4096, 640), ("flux", 1, 4096, 3072)):
        for dtype in (torch.float16, torch.bfloat16):
            x = torch.randn(B, N, C, device=dev, dtype=dtype)
            for ratio in (0.25, 0.5, 0.75):
                num_dst = N - int(N * ratio)
                xn = x / x.norm(dim=-1, keepdim=True)

                def plan():
                    dst = local_tile_wise_facility(xn[0].unsqueeze(0), num_dst, tiles).repeat(B, 1, 1)
                    return dst, tile_attention_merge(xn, dst, tiles, 1000.0)

                dst, (A, A_inv, flat) = plan()

                def merge():
                    xt, _ = fold_with_indices(x, tiles)
                    return (A @ xt).reshape(B, -1, C)

                y = merge()

                def unmerge():
                    return unfold_with_indices(A_inv @ y.reshape(B, tiles, -1, C), flat)

                row = {"shape": name, "dtype": str(dtype).split(".")[-1], "ratio": ratio, "B": B, "N": N, "C": C,
                       "plan_ms": time_ms(plan), "merge_ms": time_ms(merge), "unmerge_ms": time_ms(unmerge)}
                rows.append(row)
    with open(args.json, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(dev), "torch": torch.__version__, "rows": rows}, f, indent=1)
    print(f"{'shape':7} {'dtype':9} {'ratio':>5} {'plan ms':>9} {'merge ms':>9} {'unmerge ms':>10}  (authors' PyTorch ToMA)")
    for r in rows:
        print(f"{r['shape']:7} {r['dtype']:9} {r['ratio']:5.2f} {r['plan_ms']:9.3f} {r['merge_ms']:9.3f} {r['unmerge_ms']:10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
