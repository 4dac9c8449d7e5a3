"""Split-k decode attention over the paged (page size 1) KV pool.

One query token per request. Stage 1 splits each request's keys into `num_kv_splits` ranges and
computes, per range, a softmax-normalised partial output and its log-sum-exp; stage 2 merges the
ranges. Query heads that share a KV head are processed together (GQA), so each K/V row is read
once per group. Keys are found through `req_to_token[req_pool_indices[b], pos]` inside the kernel,
so the kernels need no per-batch index tensors and can be captured in CUDA graphs as they are.

Hooks for later models: `sliding_window` (a query at position i sees keys j with i - j < window)
and `logit_cap` (scores become cap * tanh(score / cap)).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import gdc_enter, use_pdl


@triton.jit
def _tanh(x):  # noqa: ANN001, ANN202 - Triton JIT
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _decode_stage1(Q, K_buf, V_buf, Req_to_token, Req_pool_idx, Seq_lens, Att_out, Att_lse,
                   sm_scale, logit_cap, window,
                   stride_qb, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh, stride_rt,
                   stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
                   GROUP: tl.constexpr, HEADS_PER_PROG: tl.constexpr, NUM_SPLITS: tl.constexpr,
                   BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
                   D: tl.constexpr, DV: tl.constexpr, USE_CAP: tl.constexpr, PREC: tl.constexpr,
                   USE_GDC: tl.constexpr):  # noqa: ANN001
    gdc_enter(USE_GDC)
    b = tl.program_id(0)
    hb = tl.program_id(1)
    split = tl.program_id(2)
    kv_head = (hb * HEADS_PER_PROG) // GROUP
    offs_h = tl.arange(0, BLOCK_H)
    heads = hb * HEADS_PER_PROG + offs_h
    mask_h = offs_h < HEADS_PER_PROG
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_d = offs_d < D
    mask_dv = offs_dv < DV

    seq_len = tl.load(Seq_lens + b).to(tl.int32)
    row = tl.load(Req_pool_idx + b).to(tl.int64)
    kv_start = 0
    if window > 0:
        kv_start = tl.maximum(seq_len - window, 0)
    span = seq_len - kv_start
    chunk = (span + NUM_SPLITS - 1) // NUM_SPLITS
    start = kv_start + split * chunk
    end = tl.minimum(start + chunk, seq_len)

    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=mask_h[:, None] & mask_d[None, :], other=0.0)
    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_DV], dtype=tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        loc = tl.load(Req_to_token + row * stride_rt + offs_n, mask=mask_n, other=0).to(tl.int64)
        k = tl.load(K_buf + loc[:, None] * stride_kb + kv_head * stride_kh + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=PREC).to(tl.float32) * sm_scale
        if USE_CAP:
            qk = logit_cap * _tanh(qk / logit_cap)
        qk = tl.where(mask_h[:, None] & mask_n[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        # Rows that saw no valid key yet keep m = -inf; use 0 there to avoid inf - inf.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp(m_i - m_safe)
        p = tl.exp(qk - m_safe[:, None])
        v = tl.load(V_buf + loc[:, None] * stride_vb + kv_head * stride_vh + offs_dv[None, :],
                    mask=mask_n[:, None] & mask_dv[None, :], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC).to(tl.float32)
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_new
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, m_i + tl.log(tl.where(has, l_i, 1.0)), float("-inf"))
    tl.store(Att_out + b * stride_ob + heads[:, None] * stride_oh + split * stride_os + offs_dv[None, :], out,
             mask=mask_h[:, None] & mask_dv[None, :])
    tl.store(Att_lse + b * stride_lb + heads * stride_lh + split, lse, mask=mask_h)


@triton.jit
def _decode_stage2(Att_out, Att_lse, Out, stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
                   stride_fb, stride_fh, NUM_SPLITS: tl.constexpr, BLOCK_S: tl.constexpr,
                   BLOCK_DV: tl.constexpr, DV: tl.constexpr, USE_GDC: tl.constexpr):  # noqa: ANN001
    gdc_enter(USE_GDC)
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_s = offs_s < NUM_SPLITS
    mask_dv = offs_dv < DV
    lse = tl.load(Att_lse + b * stride_lb + h * stride_lh + offs_s, mask=mask_s, other=float("-inf"))
    m = tl.max(lse, 0)
    w = tl.where(lse == float("-inf"), 0.0, tl.exp(lse - m))
    parts = tl.load(Att_out + b * stride_ob + h * stride_oh + offs_s[:, None] * stride_os + offs_dv[None, :],
                    mask=mask_s[:, None] & mask_dv[None, :], other=0.0)
    out = tl.sum(parts * w[:, None], 0) / tl.sum(w, 0)
    tl.store(Out + b * stride_fb + h * stride_fh + offs_dv, out.to(Out.dtype.element_ty), mask=mask_dv)


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs are multiplied exactly (not in TF32), so fp32 runs match the torch reference."""
    return "ieee" if dtype == torch.float32 else "tf32"


def heads_per_program(group: int, block_h: int = 16) -> int:
    """Largest divisor of the GQA group size that fits one program's head block."""
    for n in range(min(group, block_h), 0, -1):
        if group % n == 0:
            return n
    return 1


def decode_attention(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor, o: torch.Tensor,
                     req_to_token: torch.Tensor, req_pool_indices: torch.Tensor, seq_lens: torch.Tensor,
                     att_out: torch.Tensor, att_lse: torch.Tensor, sm_scale: float, logit_cap: float = 0.0,
                     sliding_window: int = -1, block_n: int | None = None, num_warps: int = 4,
                     num_stages: int = 3) -> None:
    """Decode attention for one token per request; writes `o` ([bs, H, Dv]) in place.

    q [bs, H, D]; k_buffer [slots, KVH, D]; v_buffer [slots, KVH, Dv]; att_out [bs, H, splits, Dv] and
    att_lse [bs, H, splits] (float32) are scratch whose split count sets the parallelism.
    block_n / num_warps / num_stages tile stage 1 (benchmarks/gpu_decode_attn_bench.py compares them).
    """
    bs, num_heads, head_dim = q.shape
    kv_heads, dv = k_buffer.shape[1], v_buffer.shape[2]
    group = num_heads // kv_heads
    splits = att_out.shape[2]
    hpp = heads_per_program(group)
    block_d, block_dv = triton.next_power_of_2(head_dim), triton.next_power_of_2(dv)
    if block_n is None:
        block_n = 32 if max(block_d, block_dv) >= 256 else 64
    grid = (bs, num_heads // hpp, splits)
    pdl = use_pdl(q)
    _decode_stage1[grid](
        q, k_buffer, v_buffer, req_to_token, req_pool_indices, seq_lens, att_out, att_lse,
        sm_scale, float(logit_cap), int(sliding_window),
        q.stride(0), q.stride(1), k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0), v_buffer.stride(1),
        req_to_token.stride(0), att_out.stride(0), att_out.stride(1), att_out.stride(2),
        att_lse.stride(0), att_lse.stride(1),
        GROUP=group, HEADS_PER_PROG=hpp, NUM_SPLITS=splits, BLOCK_H=16, BLOCK_N=block_n, BLOCK_D=block_d,
        BLOCK_DV=block_dv, D=head_dim, DV=dv, USE_CAP=logit_cap > 0, PREC=dot_precision(q.dtype), USE_GDC=pdl,
        num_warps=num_warps, num_stages=num_stages, launch_pdl=pdl)
    _decode_stage2[(bs, num_heads)](
        att_out, att_lse, o, att_out.stride(0), att_out.stride(1), att_out.stride(2),
        att_lse.stride(0), att_lse.stride(1), o.stride(0), o.stride(1),
        NUM_SPLITS=splits, BLOCK_S=triton.next_power_of_2(splits), BLOCK_DV=block_dv, DV=dv, USE_GDC=pdl, num_warps=4,
        launch_pdl=pdl)
