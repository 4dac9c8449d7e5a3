"""Reference checks of the Triton kernels against plain torch, usable on a GPU or (small shapes) under
TRITON_INTERPRET=1 on CPU."""

from __future__ import annotations

import math

import torch


def make_pool(lens: list[int], kv_heads: int, head_dim: int, dtype: torch.dtype, device: str,
              v_dim: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random K/V buffers and a req_to_token table whose rows hold shuffled slots (page size 1)."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(lens)
    v_dim = v_dim or head_dim
    k_buf = torch.randn(total + 1, kv_heads, head_dim, generator=gen).to(dtype).to(device)
    v_buf = torch.randn(total + 1, kv_heads, v_dim, generator=gen).to(dtype).to(device)
    slots = torch.randperm(total, generator=gen) + 1
    table = torch.zeros(len(lens) + 2, max(lens) + 8, dtype=torch.int32)
    rows = torch.randperm(len(lens) + 2, generator=gen)[: len(lens)]
    off = 0
    for r, n in zip(rows.tolist(), lens):
        table[r, :n] = slots[off:off + n].to(torch.int32)
        off += n
    return k_buf, v_buf, table.to(device), rows.to(device)


def ref_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos: torch.Tensor, scale: float,
                  cap: float = 0.0, window: int = -1) -> torch.Tensor:
    """q [n, H, D] at absolute positions q_pos; k/v [s, KVH, *] at positions 0..s-1 (fp32 math)."""
    group = q.shape[1] // k.shape[1]
    k = k.float().repeat_interleave(group, 1)
    v = v.float().repeat_interleave(group, 1)
    scores = torch.einsum("nhd,shd->hns", q.float(), k) * scale
    if cap > 0:
        scores = cap * torch.tanh(scores / cap)
    k_pos = torch.arange(k.shape[0], device=q.device)
    mask = k_pos[None, :] <= q_pos[:, None]
    if window > 0:
        mask &= (q_pos[:, None] - k_pos[None, :]) < window
    scores = scores.masked_fill(~mask[None], float("-inf"))
    return torch.einsum("hns,shd->nhd", torch.softmax(scores, -1), v)


def check_decode(lens: list[int], heads: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device: str,
                 splits: int = 8, cap: float = 0.0, window: int = -1, atol: float = 2e-2) -> float:
    from sglang_nb.runtime.layers.attention.triton_ops import decode_attention

    k_buf, v_buf, table, rows = make_pool(lens, kv_heads, head_dim, dtype, device)
    bs = len(lens)
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(bs, heads, head_dim, generator=gen).to(dtype).to(device)
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=device)
    o = torch.empty(bs, heads, head_dim, dtype=dtype, device=device)
    att_out = torch.empty(bs, heads, splits, head_dim, dtype=torch.float32, device=device)
    att_lse = torch.empty(bs, heads, splits, dtype=torch.float32, device=device)
    scale = 1 / math.sqrt(head_dim)
    decode_attention(q, k_buf, v_buf, o, table, rows.to(torch.int64), seq_lens, att_out, att_lse, scale, cap, window)
    worst = 0.0
    for i, n in enumerate(lens):
        loc = table[rows[i], :n].long()
        ref = ref_attention(q[i:i + 1], k_buf[loc], v_buf[loc], torch.tensor([n - 1], device=device), scale, cap,
                            window)
        worst = max(worst, (o[i:i + 1].float() - ref).abs().max().item())
    assert worst < atol, worst
    return worst


def check_extend(prefix_lens: list[int], ext_lens: list[int], heads: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: str, cap: float = 0.0, window: int = -1, atol: float = 2e-2) -> float:
    from sglang_nb.runtime.layers.attention.triton_ops import extend_attention

    lens = [p + e for p, e in zip(prefix_lens, ext_lens)]
    k_buf, v_buf, table, rows = make_pool(lens, kv_heads, head_dim, dtype, device)
    gen = torch.Generator().manual_seed(2)
    n = sum(ext_lens)
    q = torch.randn(n, heads, head_dim, generator=gen).to(dtype).to(device)
    # The new tokens' K/V are the pool rows at their positions (as the backend writes them first).
    ks, vs, starts = [], [], []
    off = 0
    for i, (p, e) in enumerate(zip(prefix_lens, ext_lens)):
        loc = table[rows[i], p:p + e].long()
        ks.append(k_buf[loc])
        vs.append(v_buf[loc])
        starts.append(off)
        off += e
    k, v = torch.cat(ks), torch.cat(vs)
    o = torch.empty(n, heads, head_dim, dtype=dtype, device=device)
    scale = 1 / math.sqrt(head_dim)
    t = lambda xs, dt: torch.tensor(xs, dtype=dt, device=device)  # noqa: E731
    extend_attention(q, k, v, o, k_buf, v_buf, table, rows.to(torch.int64), t(lens, torch.int32),
                     t(ext_lens, torch.int32), t(starts, torch.int64), max(ext_lens), scale, cap, window)
    worst = 0.0
    for i, (p, e) in enumerate(zip(prefix_lens, ext_lens)):
        loc = table[rows[i], :p + e].long()
        q_pos = torch.arange(p, p + e, device=device)
        ref = ref_attention(q[starts[i]:starts[i] + e], k_buf[loc], v_buf[loc], q_pos, scale, cap, window)
        worst = max(worst, (o[starts[i]:starts[i] + e].float() - ref).abs().max().item())
    assert worst < atol, worst
    return worst


def check_elementwise(device: str, dtype: torch.dtype, hidden: int = 256, tokens: int = 5) -> None:
    from sglang_nb.runtime.layers.activation import SiluAndMul
    from sglang_nb.runtime.layers.attention.triton_ops import rmsnorm, rotary_embedding, silu_and_mul
    from sglang_nb.runtime.layers.norm import RMSNorm
    from sglang_nb.runtime.layers.rotary import get_rope

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(tokens, hidden, generator=gen).to(dtype).to(device)
    r = torch.randn(tokens, hidden, generator=gen).to(dtype).to(device)
    norm = RMSNorm(hidden, 1e-6).to(device=device, dtype=dtype)
    norm.weight.data = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(dtype).to(device)
    ref = norm._norm(x)
    assert torch.allclose(rmsnorm(x, norm.weight, 1e-6).float(), ref.float(), atol=2e-2, rtol=2e-2)
    y, s = rmsnorm(x, norm.weight, 1e-6, residual=r)
    assert torch.allclose(s.float(), (x + r).float(), atol=1e-2)
    assert torch.allclose(y.float(), norm._norm(x + r).float(), atol=2e-2, rtol=2e-2)
    g = torch.randn(tokens, 2 * hidden, generator=gen).to(dtype).to(device)
    assert torch.allclose(silu_and_mul(g).float(), SiluAndMul().forward(g).float(), atol=2e-2, rtol=2e-2)
    for neox, rot in ((True, 64), (False, 64), (True, 32)):
        rope = get_rope(64, rot, 8 * tokens + 8, {"rope_theta": 10000.0, "rope_type": "default"}, is_neox_style=neox)
        rope.cos_cache, rope.sin_cache = rope.cos_cache.to(device), rope.sin_cache.to(device)
        qkv = torch.randn(tokens, 64 * 6, generator=gen).to(dtype).to(device)
        q = qkv[:, : 64 * 4]
        pos = torch.arange(tokens, device=device) * 7
        rotate = rope._rotate if hasattr(type(rope), "_rotate") else rope._apply
        ref_q = rotate(q, rope.cos_cache[pos].unsqueeze(1), rope.sin_cache[pos].unsqueeze(1))
        out = rotary_embedding(pos, q, rope.cos_cache, rope.sin_cache, 64, rot, neox)
        assert torch.allclose(out.float(), ref_q.float(), atol=3e-2, rtol=2e-2), (neox, rot)


def check_gemv(device: str, dtype: torch.dtype, n: int = 1000, k: int = 4096) -> None:
    """The one-row GEMVs (plain, +bias, fp32 out, fused residual+RMSNorm, fused SiLU-and-mul) against
    the unfused torch layers."""
    from sglang_nb.runtime.layers.activation import SiluAndMul
    from sglang_nb.runtime.layers.attention.triton_ops.gemv import gemv
    from sglang_nb.runtime.layers.norm import RMSNorm

    gen = torch.Generator().manual_seed(4)
    rnd = lambda *s: (torch.randn(*s, generator=gen) * 0.05).to(dtype).to(device)  # noqa: E731
    w, b, x, r = rnd(n, k), rnd(n), rnd(1, k) * 20, rnd(1, k) * 20
    tol = dict(atol=2e-2, rtol=2e-2) if dtype != torch.float32 else dict(atol=1e-4, rtol=1e-4)
    ref = x.float() @ w.float().t()
    assert torch.allclose(gemv(x, w).float(), ref, **tol)
    assert torch.allclose(gemv(x, w, b).float(), ref + b.float(), **tol)
    y32 = gemv(x, w, out_dtype=torch.float32)
    assert y32.dtype == torch.float32 and torch.allclose(y32, ref, atol=1e-3, rtol=1e-3)
    norm = RMSNorm(k, 1e-6).to(device=device, dtype=dtype)
    norm.weight.data = (1 + 0.1 * torch.randn(k, generator=gen)).to(dtype).to(device)
    y, s = gemv(x, w, None, "rmsnorm", r, norm.weight, 1e-6)
    assert torch.equal(s, x + r)
    assert torch.allclose(y.float(), (norm._norm(x + r).float() @ w.float().t()), **tol)
    y, s = gemv(x, w, None, "rmsnorm", None, norm.weight, 1e-6)
    assert s.data_ptr() == x.data_ptr() and torch.allclose(y.float(), norm._norm(x).float() @ w.float().t(), **tol)
    g = rnd(1, 2 * k) * 20
    act = SiluAndMul().forward_native(g) if hasattr(SiluAndMul, "forward_native") else \
        torch.nn.functional.silu(g[:, :k]) * g[:, k:]
    assert torch.allclose(gemv(g, w, None, "silu_mul").float(), act.float() @ w.float().t(), **tol)


def check_rope_store(device: str, dtype: torch.dtype, tokens: int = 7) -> None:
    """Rotary + K/V pool write + contiguous q in one kernel, against the rotary layer and a plain store."""
    from sglang_nb.runtime.layers.attention.triton_ops.elementwise import rope_and_store_kv
    from sglang_nb.runtime.layers.rotary import get_rope

    gen = torch.Generator().manual_seed(5)
    hq, hk, hd = 8, 2, 128
    for neox, rot in ((True, 128), (False, 128), (True, 64)):
        rope = get_rope(hd, rot, 4096, {"rope_theta": 500000.0, "rope_type": "default"}, is_neox_style=neox)
        cos, sin = rope.cos_cache.to(device), rope.sin_cache.to(device)
        qkv = torch.randn(tokens, (hq + 2 * hk) * hd, generator=gen).to(dtype).to(device)
        pos = (torch.arange(tokens) * 301).to(device)
        k_buf = torch.zeros(64, hk, hd, dtype=dtype, device=device)
        v_buf = torch.zeros_like(k_buf)
        loc = torch.randperm(63, generator=gen)[:tokens].add(1).to(device)
        q, k, v = rope_and_store_kv(pos, qkv, cos, sin, hq, hk, hd, rot, neox, loc, k_buf, v_buf)
        c, s = cos[pos].unsqueeze(1), sin[pos].unsqueeze(1)
        ref_q = rope._rotate(qkv[:, : hq * hd].float(), c, s)
        ref_k = rope._rotate(qkv[:, hq * hd:(hq + hk) * hd].float(), c, s)
        assert q.is_contiguous() and torch.allclose(q.float(), ref_q, atol=2e-2, rtol=2e-2), (neox, rot)
        assert torch.allclose(k.float(), ref_k, atol=2e-2, rtol=2e-2)
        assert torch.equal(k_buf[loc].view(tokens, -1), k)
        assert torch.equal(v_buf[loc].view(tokens, -1), qkv[:, (hq + hk) * hd:])
        assert k_buf[0].abs().sum() == 0


def check_kv_indices(device: str) -> None:
    from sglang_nb.runtime.layers.attention.triton_ops.kv_indices import build_kv_indices

    gen = torch.Generator().manual_seed(6)
    table = torch.randint(0, 1 << 20, (6, 3000), generator=gen, dtype=torch.int32).to(device)
    rows = torch.tensor([4, 0, 2], device=device)
    lens = torch.tensor([1000, 1, 2999], dtype=torch.int32, device=device)
    starts = torch.tensor([0, 5, 1], dtype=torch.int32, device=device)
    out = torch.full((5000,), -1, dtype=torch.int32, device=device)
    build_kv_indices(table, rows, lens, out, starts)
    want = torch.cat([table[4, :1000], table[0, 5:6], table[2, 1:3000]])
    assert torch.equal(out[:4000], want) and (out[4000:] == -1).all()


def check_top_k_top_p(device: str, vocab: int = 128256) -> None:
    """The sort-free thresholds keep exactly the tokens the sort-based filter keeps."""
    from sglang_nb.runtime.layers.attention.triton_ops.sampling import top_k_top_p_threshold

    gen = torch.Generator().manual_seed(7)
    probs = torch.softmax(torch.randn(6, vocab, generator=gen) * 4, -1)
    ks = torch.tensor([1, 5, vocab, vocab, 50, 3])
    ps = torch.tensor([1.0, 1.0, 0.9, 0.5, 0.8, 0.1])
    thr = top_k_top_p_threshold(probs.to(device), ks.to(device), ps.to(device)).cpu()
    sorted_p, order = probs.sort(-1, descending=True)
    for i in range(len(ks)):
        kept = (torch.arange(vocab) < ks[i]) & ~((sorted_p[i].cumsum(0) - sorted_p[i]) > ps[i])
        want = torch.zeros(vocab, dtype=torch.bool)
        want[order[i][kept]] = True
        assert torch.equal(probs[i] >= thr[i], want), i
