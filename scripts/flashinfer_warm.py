"""Compile (JIT) the FlashInfer modules the GPU tests and benchmarks use, once, before they run:
bf16 with head dim 128 (prefill, merged extend and tensor-core decode) and the CUDA-core decode
kernel (MHA). Later processes load the cached builds."""

from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "runtime", "gpu"))
from backend_checks import compare_backend  # noqa: E402

t0 = time.time()
print("merged extend (32, 8, 128):", compare_backend("flashinfer", [0, 9], [5, 3], 32, 8, 128, torch.bfloat16, "cuda"),
      flush=True)
print("decode (32, 8, 128):", compare_backend("flashinfer", [9, 4], [1, 1], 32, 8, 128, torch.bfloat16, "cuda"),
      flush=True)
print("decode (8, 8, 128):", compare_backend("flashinfer", [9, 4], [1, 1], 8, 8, 128, torch.bfloat16, "cuda"),
      flush=True)
print(f"FlashInfer modules ready in {time.time() - t0:.0f} s", flush=True)
