"""Measure this GPU's device-to-device copy bandwidth and bf16 matmul rate (the two roofline inputs).

    python benchmarks/gpu_roofline.py [--json out.json]

Copy bandwidth counts bytes read plus bytes written (a 4 GiB tensor copied 20 times); the matmul
rate is an 8192^3 bf16 product on random data (mean of 20 after warm-up). Both use CUDA events.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TypedDict

import torch


class Roofline(TypedDict):
    device: str
    copy_bandwidth_Bps: float
    bf16_matmul_flops: float


def _time_ms(fn: Callable[[], object], iters: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def _copy_bandwidth(copy_gib: float) -> float:
    """Bytes/s of a device-to-device copy (read + write) of `copy_gib` GiB."""
    src = torch.empty(int(copy_gib * 2**30) // 2, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    ms = _time_ms(lambda: dst.copy_(src), 20)
    return 2 * src.numel() * 2 / (ms / 1e3)


def measure(copy_gib: float = 4.0, n: int = 8192) -> Roofline:
    copy_bw = _copy_bandwidth(copy_gib)
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    ms = _time_ms(lambda: torch.mm(a, b), 20)
    flops = 2 * n**3 / (ms / 1e3)
    return {"device": torch.cuda.get_device_name(), "copy_bandwidth_Bps": copy_bw, "bf16_matmul_flops": flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    r = measure()
    print(f"{r['device']}: copy {r['copy_bandwidth_Bps'] / 1e12:.2f} TB/s, "
          f"bf16 matmul {r['bf16_matmul_flops'] / 1e12:.0f} TFLOP/s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f)


if __name__ == "__main__":
    main()
