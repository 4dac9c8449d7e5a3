"""Extend (prefill) attention: new tokens attend to their cached prefix in the KV pool and, causally,
to each other.

For request b the new tokens are rows `extend_start_loc[b] ..+ extend_seq_lens[b]` of q/k/v; its
prefix (`seq_lens[b] - extend_seq_lens[b]` tokens) is read from the pool through
`req_to_token[req_pool_indices[b]]`. One program computes BLOCK_M queries of one head with an online
softmax over two key streams: the prefix (gathered, no mask but the window) and the new tokens
(contiguous, causal). Cache hits and chunked prefill are therefore the same code path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .decode_attention import _tanh, dot_precision


@triton.jit
def _attend_block(q, k, v, qk_mask, m_i, l_i, acc, qk_scale, logit_cap, USE_CAP: tl.constexpr,
                  PREC: tl.constexpr, MASKED: tl.constexpr):  # noqa: ANN001, ANN202
    """One key block of the online softmax, in base 2 (qk_scale includes log2(e))."""
    qk = tl.dot(q, tl.trans(k), input_precision=PREC).to(tl.float32)
    if USE_CAP:
        qk = logit_cap * _tanh(qk * (qk_scale / 1.4426950408889634) / logit_cap) * 1.4426950408889634
    else:
        qk = qk * qk_scale
    if MASKED:
        qk = tl.where(qk_mask, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(qk - m_safe[:, None])
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC).to(tl.float32)
    l_i = l_i * alpha + tl.sum(p, 1)
    return m_new, l_i, acc


@triton.jit
def _extend_kernel(Q, K_ext, V_ext, Out, K_buf, V_buf, Req_to_token, Req_pool_idx, Seq_lens, Ext_lens, Ext_start,
                   sm_scale, logit_cap, window,
                   stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
                   stride_kb, stride_kbh, stride_vb, stride_vbh, stride_rt,
                   GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_DV: tl.constexpr, D: tl.constexpr, DV: tl.constexpr, USE_CAP: tl.constexpr,
                   CAUSAL: tl.constexpr, PREC: tl.constexpr):  # noqa: ANN001
    b = tl.program_id(0)
    h = tl.program_id(1)
    mb = tl.program_id(2)
    kv_h = h // GROUP
    ext_len = tl.load(Ext_lens + b).to(tl.int32)
    if mb * BLOCK_M >= ext_len:
        return
    seq_len = tl.load(Seq_lens + b).to(tl.int32)
    prefix_len = seq_len - ext_len
    start = tl.load(Ext_start + b).to(tl.int64)
    row = tl.load(Req_pool_idx + b).to(tl.int64)

    offs_m = mb * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < ext_len
    q_pos = prefix_len + offs_m  # absolute positions of the queries
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask_d = offs_d < D
    mask_dv = offs_dv < DV
    q = tl.load(Q + (start + offs_m[:, None]) * stride_qt + h * stride_qh + offs_d[None, :],
                mask=mask_m[:, None] & mask_d[None, :], other=0.0)
    qk_scale = sm_scale * 1.4426950408889634
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)

    # Keys before the first query's window start are invisible to every query of this block.
    lo = 0
    if window > 0:
        lo = tl.maximum(prefix_len + mb * BLOCK_M - window + 1, 0)
    # 1) cached prefix, read from the pool.
    lo_prefix = (tl.minimum(lo, prefix_len) // BLOCK_N) * BLOCK_N
    for n0 in range(lo_prefix, prefix_len, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < prefix_len
        loc = tl.load(Req_to_token + row * stride_rt + offs_n, mask=mask_n, other=0).to(tl.int64)
        k = tl.load(K_buf + loc[:, None] * stride_kb + kv_h * stride_kbh + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        v = tl.load(V_buf + loc[:, None] * stride_vb + kv_h * stride_vbh + offs_dv[None, :],
                    mask=mask_n[:, None] & mask_dv[None, :], other=0.0)
        qk_mask = mask_m[:, None] & mask_n[None, :]
        if window > 0:
            qk_mask = qk_mask & ((q_pos[:, None] - offs_n[None, :]) < window)
        m_i, l_i, acc = _attend_block(q, k, v, qk_mask, m_i, l_i, acc, qk_scale, logit_cap, USE_CAP, PREC, True)

    # 2) the new tokens themselves (causal within the extend).
    hi = ext_len
    if CAUSAL:
        hi = tl.minimum(ext_len, (mb + 1) * BLOCK_M)
    lo_ext = (tl.maximum(lo - prefix_len, 0) // BLOCK_N) * BLOCK_N
    if CAUSAL and window <= 0:
        # Key blocks wholly below this query block's diagonal and inside the request: no mask.
        full_hi = tl.minimum((mb * BLOCK_M // BLOCK_N) * BLOCK_N, (ext_len // BLOCK_N) * BLOCK_N)
        if (mb + 1) * BLOCK_M > ext_len:
            full_hi = 0  # last (partial) query block: keep every key masked for its padded rows
        for n0 in range(0, full_hi, BLOCK_N):
            offs_n = n0 + tl.arange(0, BLOCK_N)
            k = tl.load(K_ext + (start + offs_n[:, None]) * stride_kt + kv_h * stride_kh + offs_d[None, :],
                        mask=mask_d[None, :], other=0.0)
            v = tl.load(V_ext + (start + offs_n[:, None]) * stride_vt + kv_h * stride_vh + offs_dv[None, :],
                        mask=mask_dv[None, :], other=0.0)
            m_i, l_i, acc = _attend_block(q, k, v, None, m_i, l_i, acc, qk_scale, logit_cap, USE_CAP, PREC, False)
        lo_ext = full_hi
    for n0 in range(lo_ext, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < ext_len
        k = tl.load(K_ext + (start + offs_n[:, None]) * stride_kt + kv_h * stride_kh + offs_d[None, :],
                    mask=mask_n[:, None] & mask_d[None, :], other=0.0)
        v = tl.load(V_ext + (start + offs_n[:, None]) * stride_vt + kv_h * stride_vh + offs_dv[None, :],
                    mask=mask_n[:, None] & mask_dv[None, :], other=0.0)
        qk_mask = mask_m[:, None] & mask_n[None, :]
        if CAUSAL:
            qk_mask = qk_mask & (offs_n[None, :] <= offs_m[:, None])
        if window > 0:
            qk_mask = qk_mask & ((offs_m[:, None] - offs_n[None, :]) < window)
        m_i, l_i, acc = _attend_block(q, k, v, qk_mask, m_i, l_i, acc, qk_scale, logit_cap, USE_CAP, PREC, True)

    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(Out + (start + offs_m[:, None]) * stride_ot + h * stride_oh + offs_dv[None, :],
             out.to(Out.dtype.element_ty), mask=mask_m[:, None] & mask_dv[None, :])


def extend_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor, k_buffer: torch.Tensor,
                     v_buffer: torch.Tensor, req_to_token: torch.Tensor, req_pool_indices: torch.Tensor,
                     seq_lens: torch.Tensor, extend_seq_lens: torch.Tensor, extend_start_loc: torch.Tensor,
                     max_extend_len: int, sm_scale: float, logit_cap: float = 0.0, sliding_window: int = -1,
                     causal: bool = True) -> None:
    """q [N, H, D], k [N, KVH, D], v [N, KVH, Dv] (the new tokens, packed); writes o [N, H, Dv]."""
    num_heads, head_dim = q.shape[1], q.shape[2]
    kv_heads, dv = k.shape[1], v.shape[2]
    bs = seq_lens.shape[0]
    block_d, block_dv = triton.next_power_of_2(head_dim), triton.next_power_of_2(dv)
    if max(block_d, block_dv) >= 256:
        block_m, block_n, warps = 64, 32, 8
    else:
        block_m, block_n, warps = 128, 64, 8
    stages = 3 if max(block_d, block_dv) <= 128 else 2
    if max_extend_len <= 64:
        block_m, warps, stages = 64, 4, 2
    grid = (bs, num_heads, triton.cdiv(max_extend_len, block_m))
    _extend_kernel[grid](
        q, k, v, o, k_buffer, v_buffer, req_to_token, req_pool_indices, seq_lens, extend_seq_lens,
        extend_start_loc, sm_scale, float(logit_cap), int(sliding_window),
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), o.stride(0), o.stride(1),
        k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0), v_buffer.stride(1), req_to_token.stride(0),
        GROUP=num_heads // kv_heads, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, BLOCK_DV=block_dv,
        D=head_dim, DV=dv, USE_CAP=logit_cap > 0, CAUSAL=causal, PREC=dot_precision(q.dtype), num_warps=warps,
        num_stages=stages)
