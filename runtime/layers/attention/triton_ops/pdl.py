"""Programmatic dependent launch (PDL) for the one-token decode chain on Hopper and later.

A decode layer at batch size 1 is seven short kernels; each pays a few microseconds between the
previous kernel's last block and its own first useful load. Launched with PDL, a kernel's blocks
are scheduled while its predecessor drains: they read what no earlier kernel writes (weights),
then `gdc_wait` until the predecessor has finished and its writes are visible, then signal their
own dependents. Every kernel that is launched this way waits before it reads activations or
writes anything, so ordering is preserved transitively along the chain, CUDA graphs included.

`SGLANG_NB_PDL=0` turns it off.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl


@triton.jit
def gdc_enter(USE_GDC: tl.constexpr):  # noqa: ANN201 - Triton JIT
    """Wait for the predecessor grid, then let the next kernel's blocks be scheduled."""
    if USE_GDC:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


@functools.lru_cache(maxsize=8)
def _supported(device_index: int) -> bool:
    if os.environ.get("SGLANG_NB_PDL", "1") == "0" or os.environ.get("TRITON_INTERPRET") == "1":
        return False
    if torch.version.hip is not None or torch.cuda.get_device_capability(device_index)[0] < 9:
        return False
    cuda_extra = getattr(getattr(tl, "extra", None), "cuda", None)
    return hasattr(cuda_extra, "gdc_wait") and hasattr(cuda_extra, "gdc_launch_dependents")


def use_pdl(t: torch.Tensor) -> bool:
    """Whether kernels reading `t` launch with PDL (CUDA, compute capability 9.0+, Triton with GDC)."""
    return t.is_cuda and _supported(t.device.index if t.device.index is not None else torch.cuda.current_device())
