"""The Triton kernels against the torch reference on random shapes (GPU only)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from kernel_checks import (  # noqa: E402
    check_decode,
    check_elementwise,
    check_extend,
    check_gemv,
    check_kv_indices,
    check_rope_store,
    check_top_k_top_p,
)

pytestmark = pytest.mark.gpu
DTYPES = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(32, 8, 128), (8, 8, 64), (16, 2, 256), (28, 4, 128)])
def test_decode_matches_reference(dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int) -> None:
    check_decode([1, 7, 130, 1000, 4097], heads, kv_heads, head_dim, dtype, "cuda", splits=8)


def test_decode_32k_context_and_hooks() -> None:
    check_decode([32768, 5], 32, 8, 128, torch.bfloat16, "cuda", splits=16)
    check_decode([300, 77], 8, 2, 128, torch.bfloat16, "cuda", splits=4, cap=30.0)
    check_decode([3000, 77, 1], 8, 2, 128, torch.bfloat16, "cuda", splits=8, window=256)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(32, 8, 128), (8, 8, 64), (16, 2, 256)])
def test_extend_matches_reference(dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int) -> None:
    # Ragged batch: fresh prompts, cache hits (prefix > 0), single-token extends.
    check_extend([0, 17, 300, 0, 1000], [33, 1, 129, 500, 64], heads, kv_heads, head_dim, dtype, "cuda")


def test_extend_long_prefix_and_hooks() -> None:
    check_extend([32000, 0], [768, 200], 32, 8, 128, torch.bfloat16, "cuda")
    check_extend([100, 0], [300, 257], 8, 2, 128, torch.bfloat16, "cuda", cap=20.0)
    check_extend([600, 0], [300, 700], 8, 2, 128, torch.bfloat16, "cuda", window=128)


def test_decode_fp32_exact() -> None:
    assert check_decode([513, 64], 8, 2, 64, torch.float32, "cuda", atol=1e-4) < 1e-4


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_elementwise(dtype: torch.dtype) -> None:
    check_elementwise("cuda", dtype, hidden=4096, tokens=33)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k", [(6144, 4096), (1000, 14336), (128256, 256)])
def test_gemv_and_fused_prologues(dtype: torch.dtype, n: int, k: int) -> None:
    check_gemv("cuda", dtype, n, k)


def test_rope_store_and_kv_indices() -> None:
    check_rope_store("cuda", torch.bfloat16)
    check_kv_indices("cuda")


def test_top_k_top_p_without_sort() -> None:
    check_top_k_top_p("cuda")
