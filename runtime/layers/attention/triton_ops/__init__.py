"""Triton kernels of the GPU path: paged attention (extend and split-k decode) and fused element-wise ops."""

from __future__ import annotations

from .decode_attention import decode_attention
from .elementwise import rmsnorm, rotary_embedding, silu_and_mul
from .extend_attention import extend_attention

__all__ = ["decode_attention", "extend_attention", "rmsnorm", "rotary_embedding", "silu_and_mul"]
