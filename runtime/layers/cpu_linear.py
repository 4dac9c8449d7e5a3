"""CPU matmuls for small batches through oneDNN with pre-packed weights.

MKL's sgemm is at its best for one row (a bandwidth-bound GEMV) and for large prefill batches, but
for 4..128 rows (batched decode) it runs 1.3-1.6x slower than oneDNN on weights reordered once into
its blocked layout (measured for SmolLM2's shapes on 2 Sapphire Rapids cores). The packed copy is
made on first use and kept beside the weight, so batched decode costs one more copy of the
weights in memory. `SGLANG_NB_CPU_PACKED_LINEAR=0` turns this off.
"""

from __future__ import annotations

import os
from typing import Any

import torch

PACKED_MIN_ROWS = 4
PACKED_MAX_ROWS = 128
_LAYOUT_HINT_ROWS = 32


def _enabled() -> bool:
    return os.environ.get("SGLANG_NB_CPU_PACKED_LINEAR", "1") != "0" and torch.backends.mkldnn.is_available()


def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, owner: Any) -> torch.Tensor | None:
    """x @ weight.T (+ bias) for a small batch of fp32 rows on CPU, or None when not applicable.

    `owner` keeps the packed weight (attribute `_packed_weight`)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 \
            or torch.compiler.is_compiling():  # inductor packs weights its own way
        return None
    rows = x.numel() // x.shape[-1]
    if not PACKED_MIN_ROWS <= rows <= PACKED_MAX_ROWS or not _enabled():
        return None
    packed = getattr(owner, "_packed_weight", None)
    if packed is None:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _LAYOUT_HINT_ROWS)
        owner._packed_weight = packed
    out = torch.ops.mkldnn._linear_pointwise(x.reshape(rows, x.shape[-1]).contiguous(), packed, bias, "none", [], "")
    return out.view(*x.shape[:-1], out.shape[-1])
