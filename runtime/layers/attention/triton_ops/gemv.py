"""Matrix-vector products for one-token decode, with the layer's element-wise prologue fused in.

At batch size 1 a decoder layer is four weight streams (qkv, o, gate_up, down) and a handful of
element-wise kernels between them; each of those is latency-bound (2-4 us) and the streams are
what the step is made of. These kernels read the weight once at full bandwidth (many short
programs, every one resident at once, fp32 accumulation) and fold the element-wise work into the
read of the input vector:

    prologue "none":     y = W x (+ b)
    prologue "rmsnorm":  s = x + r (written out once, the new residual); y = W rmsnorm(s) (+ b)
    prologue "silu_mul": y = W (silu(x[:K]) * x[K:])

Rounding follows the unfused layers (the residual sum, the normalised activation and the SiLU
product are rounded to the activation dtype where the torch layers round them), so outputs match
the separate kernels up to the summation order of the dot products.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .pdl import gdc_enter, use_pdl

PROLOGUES = {"none": 0, "rmsnorm": 1, "silu_mul": 2}


@triton.jit
def _x_tile(X, R, NW, K, offs_k, mk, rstd, PROLOGUE: tl.constexpr, HAS_RES: tl.constexpr,
            GEMMA: tl.constexpr):  # noqa: ANN001, ANN202 - Triton JIT
    """One tile of prologue(x) in fp32, rounded where the unfused layers round."""
    dt = X.dtype.element_ty
    if PROLOGUE == 0:
        xv = tl.load(X + offs_k, mask=mk, other=0.0).to(tl.float32)
    elif PROLOGUE == 1:
        x = tl.load(X + offs_k, mask=mk, other=0.0)
        if HAS_RES:
            x = (x.to(tl.float32) + tl.load(R + offs_k, mask=mk, other=0.0).to(tl.float32)).to(dt)
        xn = x.to(tl.float32) * rstd
        nw = tl.load(NW + offs_k, mask=mk, other=0.0).to(tl.float32)
        if GEMMA:
            xv = (xn * (1.0 + nw)).to(dt).to(tl.float32)
        else:
            xv = (xn.to(dt).to(tl.float32) * nw).to(dt).to(tl.float32)
    else:
        g = tl.load(X + offs_k, mask=mk, other=0.0).to(tl.float32)
        u = tl.load(X + K + offs_k, mask=mk, other=0.0)
        act = (g * tl.sigmoid(g)).to(dt)
        xv = (act.to(tl.float32) * u.to(tl.float32)).to(dt).to(tl.float32)
    return xv


@triton.jit
def _gemv_kernel(X, R, NW, W, B, Y, RES_OUT, N, K, stride_w, eps,
                 PROLOGUE: tl.constexpr, HAS_RES: tl.constexpr, HAS_BIAS: tl.constexpr, GEMMA: tl.constexpr,
                 USE_GDC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # noqa: ANN001
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_k0 = tl.arange(0, BLOCK_K)
    mk0 = offs_k0 < K
    w_rows = W + offs_n.to(tl.int64)[:, None] * stride_w
    # The first weight tile does not depend on earlier kernels: read it before waiting for them.
    w0 = tl.load(w_rows + offs_k0[None, :], mask=mask_n[:, None] & mk0[None, :], other=0.0)
    gdc_enter(USE_GDC)
    dt = X.dtype.element_ty
    rstd = 0.0
    if PROLOGUE == 1:
        ss = tl.zeros([BLOCK_K], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + offs_k0
            mk = offs_k < K
            x = tl.load(X + offs_k, mask=mk, other=0.0)
            if HAS_RES:
                x = (x.to(tl.float32) + tl.load(R + offs_k, mask=mk, other=0.0).to(tl.float32)).to(dt)
                tl.store(RES_OUT + offs_k, x, mask=mk & ((offs_k * 0 + pid) == 0))  # program 0 writes it
            xf = x.to(tl.float32)
            ss += xf * xf
        rstd = tl.math.rsqrt(tl.sum(ss, 0) / K + eps)
    acc = w0.to(tl.float32) * _x_tile(X, R, NW, K, offs_k0, mk0, rstd, PROLOGUE, HAS_RES, GEMMA)[None, :]
    for k0 in range(BLOCK_K, K, BLOCK_K):
        offs_k = k0 + offs_k0
        mk = offs_k < K
        xv = _x_tile(X, R, NW, K, offs_k, mk, rstd, PROLOGUE, HAS_RES, GEMMA)
        w = tl.load(w_rows + offs_k[None, :], mask=mask_n[:, None] & mk[None, :], other=0.0)
        acc += w.to(tl.float32) * xv[None, :]
    y = tl.sum(acc, 1)
    if HAS_BIAS:
        y += tl.load(B + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    tl.store(Y + offs_n, y.to(Y.dtype.element_ty), mask=mask_n)


_CONFIGS = [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w)
            for bn, bk, w in ((4, 512, 4), (8, 512, 4), (16, 512, 4), (4, 1024, 4), (8, 1024, 4), (16, 256, 4),
                              (8, 256, 2), (32, 256, 4))]
_gemv_tuned = triton.autotune(_CONFIGS, key=["N", "K", "PROLOGUE"])(_gemv_kernel)
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, prologue: str = "none",
         residual: torch.Tensor | None = None, norm_weight: torch.Tensor | None = None, eps: float = 1e-6,
         gemma: bool = False, out_dtype: torch.dtype | None = None
         ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """y = weight @ prologue(x) for one row x ([1, K] or [1, 2K] for silu_mul); weight [N, K] with unit
    inner stride. With prologue "rmsnorm" returns (y, x + residual) (x itself when no residual)."""
    code = PROLOGUES[prologue]
    n, k = weight.shape
    assert weight.stride(1) == 1 and x.shape[0] == 1
    x1 = x.reshape(-1)
    assert x1.is_contiguous() and x1.numel() == (2 * k if code == 2 else k)
    y = torch.empty((1, n), dtype=out_dtype or x.dtype, device=x.device)
    res_out = x1
    r1 = x1
    if code == 1 and residual is not None:
        r1 = residual.reshape(-1)
        res_out = torch.empty_like(x1)
    args = (x1, r1, norm_weight if norm_weight is not None else x1, weight, bias if bias is not None else y, y,
            res_out, n, k, weight.stride(0), eps)
    flags = dict(PROLOGUE=code, HAS_RES=code == 1 and residual is not None, HAS_BIAS=bias is not None, GEMMA=gemma)
    if _INTERPRET:
        _gemv_kernel[(triton.cdiv(n, 8),)](*args, **flags, USE_GDC=False, BLOCK_N=8, BLOCK_K=64)
    else:
        pdl = use_pdl(x)
        _gemv_tuned[lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)](*args, **flags, USE_GDC=pdl, launch_pdl=pdl)
    if code == 1:
        return y, res_out.view(x.shape)
    return y
