"""One-row matmuls of the Llama-3.1-8B shapes: cuBLAS (F.linear) against our GEMV kernels, in read
bandwidth (weight bytes / device time per call, measured on CUDA-graph replays as in decode; weight
copies are cycled so that every call streams from HBM).

    python benchmarks/gpu_gemv_bench.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
import torch.nn.functional as F

SHAPES = {"qkv": (6144, 4096), "o_proj": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
          "lm_head": (128256, 4096)}


def graph_time_us(fn: Callable[[], object], iters: int = 30) -> float:
    """Device time per call: `iters` calls captured in one CUDA graph (no launch overhead), replayed."""
    for _ in range(5):  # warm-up: compilation and autotuning happen here, outside the capture
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(iters):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / (5 * iters)


def _bench_shape(gemv: Callable[..., torch.Tensor], n: int, k: int, dt: torch.dtype) -> dict[str, dict[str, float]]:
    # Several weight copies cycled so that each call streams from HBM, not L2.
    copies = max(2, int(200e6 // (n * k * 2)) + 1)
    ws = [torch.randn(n, k, dtype=dt, device="cuda") * 0.02 for _ in range(copies)]
    x = torch.randn(1, k, dtype=dt, device="cuda")
    x2 = torch.randn(1, 2 * k, dtype=dt, device="cuda")
    nw = torch.ones(k, dtype=dt, device="cuda")
    it = [0]

    def nxt() -> torch.Tensor:
        it[0] = (it[0] + 1) % copies
        return ws[it[0]]

    variants = {
        "cublas": lambda: F.linear(x, nxt()),
        "gemv": lambda: gemv(x, nxt()),
        "gemv_rmsnorm": lambda: gemv(x, nxt(), None, "rmsnorm", x, nw, 1e-5),
        "gemv_silu": lambda: gemv(x2, nxt(), None, "silu_mul"),
        "gemv_fp32_out": lambda: gemv(x, nxt(), out_dtype=torch.float32),
    }
    res: dict[str, dict[str, float]] = {}
    for vname, fn in variants.items():
        us = graph_time_us(fn)
        res[vname] = {"us": us, "TBps": n * k * 2 / (us * 1e-6) / 1e12}
    return res


def main() -> None:
    from sglang_nb.runtime.layers.attention.triton_ops.gemv import gemv

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--json", default="")
    args = p.parse_args()
    dt = torch.bfloat16
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for name, (n, k) in SHAPES.items():
        rows[name] = _bench_shape(gemv, n, k, dt)
        print(name, " ".join(f"{v}: {r['us']:.1f} us {r['TBps']:.2f} TB/s" for v, r in rows[name].items()),
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
