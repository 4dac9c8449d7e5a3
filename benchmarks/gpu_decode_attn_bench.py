"""Split-k decode attention over the paged KV pool at serving shapes, in KV read bandwidth.

Llama-3.1-8B attention (32 query heads, 8 KV heads, head dim 128, bf16). Each case is a batch of
requests with ragged lengths whose slots are laid out as the scheduler lays them out (a prefill run
of consecutive slots, then decode slots interleaved across requests). Device time per call comes
from CUDA-graph replays; bandwidth counts the K and V bytes read once.

    python benchmarks/gpu_decode_attn_bench.py [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpu_gemv_bench import graph_time_us  # noqa: E402  (benchmarks/ is on the path when run as a script)

from sglang_nb.runtime.layers.attention.triton_ops.decode_attention import decode_attention  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
CASES = {"bs144 ctx 1k-4k": (144, 1000, 4000), "bs64 ctx 1k": (64, 1024, 1056), "bs8 ctx 8k-32k": (8, 8000, 32000),
         "bs1 ctx 128": (1, 128, 129), "bs1 ctx 32k": (1, 32000, 32001)}


def _case(bs: int, lo: int, hi: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    lens = torch.randint(lo, hi, (bs,), generator=gen)
    decoded = torch.minimum(lens // 3, torch.full_like(lens, 512))
    prompt = lens - decoded
    total = int(lens.sum())
    table = torch.zeros(bs, int(lens.max()), dtype=torch.int32)
    nxt = 1
    for b in range(bs):  # prefill: consecutive slots per request
        n = int(prompt[b])
        table[b, :n] = torch.arange(nxt, nxt + n, dtype=torch.int32)
        nxt += n
    for step in range(int(decoded.max())):  # decode: one slot per running request per step
        for b in range(bs):
            if step < int(decoded[b]):
                table[b, int(prompt[b]) + step] = nxt
                nxt += 1
    dev = "cuda"
    return {"k": torch.randn(total + 1, KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev),
            "v": torch.randn(total + 1, KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev),
            "q": torch.randn(bs, HEADS, HEAD_DIM, dtype=torch.bfloat16, device=dev),
            "table": table.to(dev), "rows": torch.arange(bs, device=dev), "lens": lens.to(torch.int32).to(dev),
            "bytes": torch.tensor(total * KV_HEADS * HEAD_DIM * 2 * 2)}


def _sweep(name: str, c: dict[str, torch.Tensor], args: argparse.Namespace) -> list[dict[str, object]]:
    bs = c["q"].shape[0]
    o = torch.empty_like(c["q"])
    rows: list[dict[str, object]] = []
    best: dict[str, object] | None = None
    grid = itertools.product(*(list(map(int, a.split(","))) for a in (args.splits, args.block_n, args.warps,
                                                                      args.stages)))
    for splits, bn, w, st in grid:
        att_out = torch.empty(bs, HEADS, splits, HEAD_DIM, dtype=torch.float32, device="cuda")
        att_lse = torch.empty(bs, HEADS, splits, dtype=torch.float32, device="cuda")
        run = functools.partial(decode_attention, c["q"], c["k"], c["v"], o, c["table"], c["rows"], c["lens"],
                                att_out, att_lse, HEAD_DIM ** -0.5, block_n=bn, num_warps=w, num_stages=st)
        try:
            us = graph_time_us(run, iters=10)
        except Exception as e:  # noqa: BLE001 - a tiling that does not compile is reported, not fatal
            print(f"{name}: splits {splits} block_n {bn} warps {w} stages {st}: {type(e).__name__}")
            continue
        tbs = float(c["bytes"]) / (us * 1e-6) / 1e12
        row: dict[str, object] = {"case": name, "splits": splits, "block_n": bn, "warps": w, "stages": st,
                                  "us": us, "TBps": tbs}
        rows.append(row)
        if best is None or us < float(best["us"]):  # type: ignore[arg-type]
            best = row
        print(f"{name}: splits {splits:2d} block_n {bn:3d} warps {w} stages {st}: {us:8.1f} us {tbs:5.2f} TB/s",
              flush=True)
    print(f"BEST {name}: {best}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", default="")
    p.add_argument("--splits", default="4,8,16")
    p.add_argument("--block-n", default="32,64,128")
    p.add_argument("--warps", default="4,8")
    p.add_argument("--stages", default="2,3,4")
    args = p.parse_args()
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name, (bs, lo, hi) in CASES.items():
        rows += _sweep(name, _case(bs, lo, hi, gen), args)
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
