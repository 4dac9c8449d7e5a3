"""Top-k / top-p filtering without sorting the vocabulary.

Both filters keep the tokens whose probability is at least some threshold: top-k the k-th largest
probability, top-p the probability of the last token of the smallest descending prefix whose mass
reaches p. Applied jointly (both to the original distribution, as SGLang does), the kept set is
{p_i >= max(t_k, t_p)}, and max(t_k, t_p) is the largest t with count(p >= t) >= k or
mass(p >= t) >= top_p, a predicate that only grows as t falls. One program per row bisects over
the bit patterns of non-negative fp32 values (their integer order is their numeric order), so 31
passes over the row, mostly from L2, find the exact threshold; no [bs, vocab] sort or cumsum.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _threshold_kernel(P, TopK, TopP, Out, stride_p, V, BLOCK: tl.constexpr):  # noqa: ANN001
    row = tl.program_id(0).to(tl.int64)
    base = P + row * stride_p
    k = tl.load(TopK + row).to(tl.int32)
    top_p = tl.load(TopP + row).to(tl.float32)
    use_p = top_p < 1.0
    offs = tl.arange(0, BLOCK)
    # hi: one past the largest bit pattern present (predicate false there); lo: 0 (always true).
    mx = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, V, BLOCK):
        m = start + offs < V
        mx = tl.maximum(mx, tl.load(base + start + offs, mask=m, other=0.0).to(tl.float32))
    lo = tl.zeros([1], dtype=tl.int32)
    hi = tl.max(mx, 0).to(tl.int32, bitcast=True) + tl.zeros([1], dtype=tl.int32) + 1
    for _ in range(32):
        mid = lo + (hi - lo) // 2
        t = mid.to(tl.float32, bitcast=True)
        cnt = tl.zeros([BLOCK], dtype=tl.int32)
        mass = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, V, BLOCK):
            m = start + offs < V
            p = tl.load(base + start + offs, mask=m, other=0.0).to(tl.float32)
            keep = (p >= t) & m
            cnt += keep.to(tl.int32)
            mass += tl.where(keep, p, 0.0)
        ok = (tl.sum(cnt, 0) >= k) | (use_p & (tl.sum(mass, 0) >= top_p))
        active = hi - lo > 1
        lo = tl.where(ok & active, mid, lo)
        hi = tl.where(ok | (~active), hi, mid)
    tl.store(Out + row + tl.arange(0, 1), lo.to(tl.float32, bitcast=True))


def top_k_top_p_threshold(probs: torch.Tensor, top_ks: torch.Tensor, top_ps: torch.Tensor) -> torch.Tensor:
    """Per-row threshold t ([bs] fp32): keep probs >= t. probs [bs, V] (fp32, non-negative, rows
    with unit inner stride); top_ks [bs] (>= 1; V means no top-k); top_ps [bs] (1.0 means no top-p)."""
    bs, vocab = probs.shape
    out = torch.empty(bs, dtype=torch.float32, device=probs.device)
    if bs:
        _threshold_kernel[(bs,)](probs, top_ks, top_ps, out, probs.stride(0), vocab,
                                 BLOCK=min(4096, triton.next_power_of_2(vocab)), num_warps=8)
    return out
