"""Fused element-wise kernels for the GPU path: RMSNorm (optionally with the residual add), SiLU-and-mul
and rotary embedding. Each replaces a chain of 5-20 small torch kernels with one, which matters most
for small-batch decode where every layer's non-matmul work is launch- and latency-bound.

Numerics follow the torch layers they replace: norms in fp32 then cast to the activation dtype
before the weight multiply (Hugging Face order), rotary in fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import gdc_enter, use_pdl


@triton.jit
def _rmsnorm_kernel(X, R, W, Y, RES_OUT, stride_x, stride_r, stride_y, stride_ro, n_cols, eps,
                    HAS_RESIDUAL: tl.constexpr, GEMMA: tl.constexpr, BLOCK: tl.constexpr):  # noqa: ANN001
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        x = (x + tl.load(R + row * stride_r + cols, mask=mask, other=0.0))
        tl.store(RES_OUT + row * stride_ro + cols, x, mask=mask)
    xf = x.to(tl.float32)
    var = tl.sum(xf * xf, 0) / n_cols
    xn = xf * tl.math.rsqrt(var + eps)
    w = tl.load(W + cols, mask=mask, other=0.0)
    if GEMMA:
        y = xn * (1.0 + w.to(tl.float32))
    else:
        y = xn.to(x.dtype).to(tl.float32) * w.to(tl.float32)
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None,
            gemma: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm over the last dim; with `residual`, returns (norm(x + residual), x + residual)."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    n_rows, n_cols = x2.shape
    out_dtype = x.dtype
    y = torch.empty((n_rows, n_cols), dtype=out_dtype, device=x.device)
    block = triton.next_power_of_2(n_cols)
    warps = min(max(block // 256, 1), 16)
    if residual is None:
        _rmsnorm_kernel[(n_rows,)](x2, x2, weight, y, y, x2.stride(0), 0, y.stride(0), 0, n_cols, eps,
                                   HAS_RESIDUAL=False, GEMMA=gemma, BLOCK=block, num_warps=warps)
        return y.view(shape)
    r2 = residual.reshape(-1, shape[-1])
    res_out = torch.empty_like(y)
    _rmsnorm_kernel[(n_rows,)](x2, r2, weight, y, res_out, x2.stride(0), r2.stride(0), y.stride(0),
                               res_out.stride(0), n_cols, eps, HAS_RESIDUAL=True, GEMMA=gemma, BLOCK=block,
                               num_warps=warps)
    return y.view(shape), res_out.view(shape)


@triton.jit
def _silu_and_mul_kernel(X, Y, stride_x, stride_y, d, BLOCK: tl.constexpr):  # noqa: ANN001
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < d
    g = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(X + row * stride_x + d + cols, mask=mask, other=0.0)
    act = (g * tl.sigmoid(g)).to(u.dtype)
    tl.store(Y + row * stride_y + cols, (act.to(tl.float32) * u.to(tl.float32)).to(Y.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """[..., 2d] -> silu(x[..., :d]) * x[..., d:]."""
    shape = x.shape
    d = shape[-1] // 2
    x2 = x.reshape(-1, shape[-1])
    y = torch.empty((x2.shape[0], d), dtype=x.dtype, device=x.device)
    block = min(triton.next_power_of_2(d), 2048)
    _silu_and_mul_kernel[(x2.shape[0], triton.cdiv(d, block))](x2, y, x2.stride(0), y.stride(0), d, BLOCK=block,
                                                               num_warps=4)
    return y.view(*shape[:-1], d)


@triton.jit
def _rotate_rows(Src, Dst, Dst2, cos, sin, num_heads, HEAD_DIM: tl.constexpr, ROT_HALF: tl.constexpr,
                 NEOX: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_REST: tl.constexpr,
                 HAS_DST2: tl.constexpr):  # noqa: ANN001
    """Rotate `num_heads` heads of one token from Src into Dst (and Dst2)."""
    offs_h = tl.arange(0, BLOCK_H)
    offs_r = tl.arange(0, BLOCK_R)
    if NEOX:
        i1 = offs_r
        i2 = offs_r + ROT_HALF
    else:
        i1 = offs_r * 2
        i2 = offs_r * 2 + 1
    m = (offs_h < num_heads)[:, None] & (offs_r < ROT_HALF)[None, :]
    rows = offs_h[:, None] * HEAD_DIM
    x1 = tl.load(Src + rows + i1[None, :], mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(Src + rows + i2[None, :], mask=m, other=0.0).to(tl.float32)
    y1 = (x1 * cos[None, :] - x2 * sin[None, :]).to(Dst.dtype.element_ty)
    y2 = (x2 * cos[None, :] + x1 * sin[None, :]).to(Dst.dtype.element_ty)
    tl.store(Dst + rows + i1[None, :], y1, mask=m)
    tl.store(Dst + rows + i2[None, :], y2, mask=m)
    if HAS_DST2:
        tl.store(Dst2 + rows + i1[None, :], y1, mask=m)
        tl.store(Dst2 + rows + i2[None, :], y2, mask=m)
    if BLOCK_REST > 0:  # partial rotary: the remaining dims pass through
        offs_rest = 2 * ROT_HALF + tl.arange(0, BLOCK_REST)
        mr = (offs_h < num_heads)[:, None] & (offs_rest < HEAD_DIM)[None, :]
        rest = tl.load(Src + rows + offs_rest[None, :], mask=mr, other=0.0)
        tl.store(Dst + rows + offs_rest[None, :], rest, mask=mr)
        if HAS_DST2:
            tl.store(Dst2 + rows + offs_rest[None, :], rest, mask=mr)


@triton.jit
def _rope_kernel(Pos, X, Y, Cos, Sin, stride_xt, stride_yt, stride_cos, num_heads,
                 HEAD_DIM: tl.constexpr, ROT_HALF: tl.constexpr, NEOX: tl.constexpr, BLOCK_H: tl.constexpr,
                 BLOCK_R: tl.constexpr, BLOCK_REST: tl.constexpr):  # noqa: ANN001
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(Pos + t).to(tl.int64)
    offs_r = tl.arange(0, BLOCK_R)
    mask_r = offs_r < ROT_HALF
    cos = tl.load(Cos + pos * stride_cos + offs_r, mask=mask_r, other=0.0).to(tl.float32)
    sin = tl.load(Sin + pos * stride_cos + offs_r, mask=mask_r, other=0.0).to(tl.float32)
    _rotate_rows(X + t * stride_xt, Y + t * stride_yt, Y, cos, sin, num_heads, HEAD_DIM, ROT_HALF, NEOX, BLOCK_H,
                 BLOCK_R, BLOCK_REST, False)


def rotary_embedding(positions: torch.Tensor, x: torch.Tensor, cos_cache: torch.Tensor, sin_cache: torch.Tensor,
                     head_dim: int, rotary_dim: int, is_neox_style: bool) -> torch.Tensor:
    """Rotate x ([num_tokens, heads * head_dim], rows may be strided views) at `positions`; returns a
    new contiguous tensor of the same shape."""
    num_tokens = x.shape[0]
    num_heads = x.shape[1] // head_dim
    y = torch.empty((num_tokens, x.shape[1]), dtype=x.dtype, device=x.device)
    if num_tokens == 0:
        return y
    assert x.stride(1) == 1 and cos_cache.stride(1) == 1
    rest = head_dim - rotary_dim
    _rope_kernel[(num_tokens,)](positions, x, y, cos_cache, sin_cache, x.stride(0), y.stride(0), cos_cache.stride(0),
                                num_heads, HEAD_DIM=head_dim, ROT_HALF=rotary_dim // 2, NEOX=is_neox_style,
                                BLOCK_H=triton.next_power_of_2(num_heads),
                                BLOCK_R=triton.next_power_of_2(max(rotary_dim // 2, 1)),
                                BLOCK_REST=triton.next_power_of_2(rest) if rest > 0 else 0, num_warps=4)
    return y


@triton.jit
def _store_kv_kernel(K, V, Loc, K_buf, V_buf, stride_kt, stride_vt, stride_kb, stride_vb,
                     K_ROW: tl.constexpr, V_ROW: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr):  # noqa: ANN001
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(Loc + t).to(tl.int64)
    ok = tl.arange(0, BLOCK_K)
    ov = tl.arange(0, BLOCK_V)
    tl.store(K_buf + slot * stride_kb + ok, tl.load(K + t * stride_kt + ok, mask=ok < K_ROW), mask=ok < K_ROW)
    tl.store(V_buf + slot * stride_vb + ov, tl.load(V + t * stride_vt + ov, mask=ov < V_ROW), mask=ov < V_ROW)


def store_kv(k: torch.Tensor, v: torch.Tensor, loc: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor) -> None:
    """k_buf[loc] = k; v_buf[loc] = v in one kernel. k/v: [n, kv_heads, dim] with unit stride inside a row."""
    n = k.shape[0]
    if n == 0:
        return
    k_row, v_row = k.shape[1] * k.shape[2], v.shape[1] * v.shape[2]
    _store_kv_kernel[(n,)](k, v, loc, k_buf, v_buf, k.stride(0), v.stride(0), k_buf.stride(0), v_buf.stride(0),
                           K_ROW=k_row, V_ROW=v_row, BLOCK_K=triton.next_power_of_2(k_row),
                           BLOCK_V=triton.next_power_of_2(v_row), num_warps=4)


@triton.jit
def _rope_store_kernel(Pos, QKV, Q_out, K_out, Loc, K_buf, V_buf, Cos, Sin, stride_qkv, stride_cos,
                       stride_kb, stride_vb, num_q_heads, num_kv_heads, V_ROW: tl.constexpr,
                       HEAD_DIM: tl.constexpr, ROT_HALF: tl.constexpr, NEOX: tl.constexpr, BLOCK_HQ: tl.constexpr,
                       BLOCK_HK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_REST: tl.constexpr,
                       BLOCK_V: tl.constexpr, USE_GDC: tl.constexpr):  # noqa: ANN001
    gdc_enter(USE_GDC)
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(Pos + t).to(tl.int64)
    slot = tl.load(Loc + t).to(tl.int64)
    offs_r = tl.arange(0, BLOCK_R)
    mask_r = offs_r < ROT_HALF
    cos = tl.load(Cos + pos * stride_cos + offs_r, mask=mask_r, other=0.0).to(tl.float32)
    sin = tl.load(Sin + pos * stride_cos + offs_r, mask=mask_r, other=0.0).to(tl.float32)
    src = QKV + t * stride_qkv
    q_row = num_q_heads * HEAD_DIM
    k_row = num_kv_heads * HEAD_DIM
    _rotate_rows(src, Q_out + t * q_row, Q_out, cos, sin, num_q_heads, HEAD_DIM, ROT_HALF, NEOX, BLOCK_HQ, BLOCK_R,
                 BLOCK_REST, False)
    _rotate_rows(src + q_row, K_out + t * k_row, K_buf + slot * stride_kb, cos, sin, num_kv_heads, HEAD_DIM,
                 ROT_HALF, NEOX, BLOCK_HK, BLOCK_R, BLOCK_REST, True)
    offs_v = tl.arange(0, BLOCK_V)
    mv = offs_v < V_ROW
    tl.store(V_buf + slot * stride_vb + offs_v, tl.load(src + q_row + k_row + offs_v, mask=mv), mask=mv)


def rope_and_store_kv(positions: torch.Tensor, qkv: torch.Tensor, cos_cache: torch.Tensor, sin_cache: torch.Tensor,
                      num_q_heads: int, num_kv_heads: int, head_dim: int, rotary_dim: int, is_neox_style: bool,
                      loc: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One kernel for rotary q/k, the K/V pool write and a contiguous q.

    qkv: [n, (q_heads + 2 * kv_heads) * head_dim] with unit inner stride. Writes rotated k and raw v
    to k_buf[loc] / v_buf[loc] (rows of kv_heads * head_dim, unit inner stride) and returns
    (q [n, q_heads * head_dim] rotated, k [n, kv_heads * head_dim] rotated, v view of qkv)."""
    n = qkv.shape[0]
    q_size, kv_size = num_q_heads * head_dim, num_kv_heads * head_dim
    q = torch.empty((n, q_size), dtype=qkv.dtype, device=qkv.device)
    k = torch.empty((n, kv_size), dtype=qkv.dtype, device=qkv.device)
    v = qkv[:, q_size + kv_size:]
    if n == 0:
        return q, k, v
    assert qkv.stride(1) == 1 and cos_cache.stride(1) == 1
    rest = head_dim - rotary_dim
    _rope_store_kernel[(n,)](positions, qkv, q, k, loc, k_buf, v_buf, cos_cache, sin_cache, qkv.stride(0),
                             cos_cache.stride(0), k_buf.stride(0), v_buf.stride(0), num_q_heads, num_kv_heads,
                             V_ROW=kv_size, HEAD_DIM=head_dim, ROT_HALF=rotary_dim // 2, NEOX=is_neox_style,
                             BLOCK_HQ=triton.next_power_of_2(num_q_heads),
                             BLOCK_HK=triton.next_power_of_2(num_kv_heads),
                             BLOCK_R=triton.next_power_of_2(max(rotary_dim // 2, 1)),
                             BLOCK_REST=triton.next_power_of_2(rest) if rest > 0 else 0,
                             BLOCK_V=triton.next_power_of_2(kv_size), USE_GDC=use_pdl(qkv), num_warps=4,
                             launch_pdl=use_pdl(qkv))
    return q, k, v
