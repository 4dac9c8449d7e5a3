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
