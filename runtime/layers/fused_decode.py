"""Fused GPU paths of a Llama-like decoder layer.

Two fusions, both used only where they apply (CUDA, fp16/bf16, one tensor-parallel rank) and
otherwise leaving the plain layer code in charge:

* `rope_and_store`: rotary q/k, the K/V pool write and a contiguous q in one kernel, for backends
  that attend straight from the pool (triton, flashinfer); the backend is then told not to store
  the K/V again.
* `gemv_layer_forward`: a one-token layer as four weight streams with the element-wise work folded
  in (residual add + RMSNorm before qkv and gate_up, SiLU-and-mul before down; see
  triton_ops/gemv.py). Single-row linears elsewhere (o_proj, lm_head) take the same GEMV.

`SGLANG_NB_DECODE_GEMV=0` turns the GEMV path off (cuBLAS for every matmul), for comparisons.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..model_executor.forward_batch import ForwardBatch
    from .radix_attention import RadixAttention
    from .rotary import RotaryEmbedding

_HALF = (torch.float16, torch.bfloat16)
FUSED_KV_BACKENDS = ("triton", "flashinfer")


def gemv_enabled() -> bool:
    return os.environ.get("SGLANG_NB_DECODE_GEMV", "1") != "0"


def use_gemv(x: torch.Tensor) -> bool:
    """A single contiguous half-precision row on the GPU, with the GEMV path on."""
    return x.is_cuda and x.dim() == 2 and x.shape[0] == 1 and x.dtype in _HALF and x.is_contiguous() \
        and gemv_enabled()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           out_dtype: torch.dtype | None = None) -> torch.Tensor | None:
    """GEMV for a one-row input, or None when the caller should use its usual matmul."""
    if not use_gemv(x) or weight.stride(1) != 1:
        return None
    from .attention.triton_ops.gemv import gemv

    out = gemv(x, weight, bias, out_dtype=out_dtype)
    assert isinstance(out, torch.Tensor)
    return out


def rope_and_store(rotary: RotaryEmbedding, attn: RadixAttention, positions: torch.Tensor, qkv: torch.Tensor,
                   forward_batch: ForwardBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(q, k, v) with the rotated K and the V already in the pool, or None when not applicable."""
    backend = forward_batch.attn_backend
    if not qkv.is_cuda or qkv.stride(1) != 1 or getattr(backend, "name", "") not in FUSED_KV_BACKENDS:
        return None
    if attn.v_head_dim != attn.qk_head_dim or rotary.head_dim != attn.qk_head_dim:
        return None
    pool = forward_batch.token_to_kv_pool
    k_buf, v_buf = pool.get_key_buffer(attn.layer_id), pool.get_value_buffer(attn.layer_id)
    if k_buf.dtype != qkv.dtype or not (k_buf.is_contiguous() and v_buf.is_contiguous()):
        return None
    from .attention.triton_ops.elementwise import rope_and_store_kv

    return rope_and_store_kv(positions, qkv, rotary.cos_cache, rotary.sin_cache, attn.tp_q_head_num,
                             attn.tp_k_head_num, attn.qk_head_dim, rotary.rotary_dim, rotary.is_neox_style,
                             forward_batch.out_cache_loc, k_buf, v_buf)


def gemv_layer_applies(layer: Any, hidden_states: torch.Tensor) -> bool:
    """The layer is RMSNorm + SiLU-gated MLP on one rank and the input is a single GPU row."""
    from ..distributed import get_tp_group
    from .activation import SiluAndMul
    from .norm import RMSNorm

    return use_gemv(hidden_states) and get_tp_group().size == 1 and isinstance(layer.mlp.act_fn, SiluAndMul) \
        and isinstance(layer.input_layernorm, RMSNorm) and isinstance(layer.post_attention_layernorm, RMSNorm)


def gemv_layer_forward(layer: Any, positions: torch.Tensor, hidden_states: torch.Tensor, forward_batch: ForwardBatch,
                       residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A Llama-like decoder layer for one token: returns (mlp output, residual) like the layer does."""
    from .attention.triton_ops.gemv import gemv

    attn, mlp = layer.self_attn, layer.mlp
    n1, n2 = layer.input_layernorm, layer.post_attention_layernorm
    qkv, residual = gemv(hidden_states, attn.qkv_proj.weight, attn.qkv_proj.bias, "rmsnorm", residual, n1.weight,
                         n1.variance_epsilon, n1.gemma_style)  # type: ignore[misc]
    h = attn.forward_qkv(positions, qkv, forward_batch)
    gate_up, residual = gemv(h, mlp.gate_up_proj.weight, mlp.gate_up_proj.bias, "rmsnorm", residual, n2.weight,
                             n2.variance_epsilon, n2.gemma_style)  # type: ignore[misc]
    out = gemv(gate_up, mlp.down_proj.weight, mlp.down_proj.bias, "silu_mul")
    assert isinstance(out, torch.Tensor) and isinstance(residual, torch.Tensor)
    return out, residual
