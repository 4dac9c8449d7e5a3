"""An attention backend against torch_native on one random batch over a real KV pool (page size 1):
ragged extends with and without cached prefixes, and decode. Usable on a GPU (triton, flashinfer)
or, on small shapes, on CPU with TRITON_INTERPRET=1 (triton)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn


def _runner(backend_kwargs: dict, pool: object, table: object, heads: int, kv_heads: int, head_dim: int,
            device: str) -> SimpleNamespace:
    from sglang_nb.runtime.layers.radix_attention import RadixAttention

    model = nn.ModuleList([RadixAttention(heads, head_dim, 1 / math.sqrt(head_dim), kv_heads, 0)])
    args = SimpleNamespace(triton_attention_num_kv_splits=8, **backend_kwargs)
    return SimpleNamespace(device=device, server_args=args, kv_pool=pool, req_to_token_pool=table, model=model)


def compare_backend(name: str, prefix_lens: list[int], ext_lens: list[int], heads: int, kv_heads: int,
                    head_dim: int, dtype: torch.dtype, device: str, seed: int = 0) -> float:
    """Max |out - torch_native out| over one extend (or decode when every ext_len is 1 and `decode`)."""
    from sglang_nb.runtime.layers.attention import create_attention_backend
    from sglang_nb.runtime.layers.radix_attention import RadixAttention
    from sglang_nb.runtime.mem_cache.kv_pool import MHATokenToKVPool, ReqToTokenPool
    from sglang_nb.runtime.model_executor.forward_batch import ForwardBatch, ForwardMode

    gen = torch.Generator().manual_seed(seed)
    bs = len(ext_lens)
    lens = [p + e for p, e in zip(prefix_lens, ext_lens)]
    total = sum(lens)
    table = ReqToTokenPool(bs + 3, max(lens) + 8, device)
    rows = torch.randperm(bs + 3, generator=gen)[:bs]
    slots = torch.randperm(total, generator=gen) + 1
    new_locs, off = [], 0
    results = {}
    for backend_name in ("torch_native", name):
        pool = MHATokenToKVPool(total, dtype, kv_heads, head_dim, 1, device)
        g = torch.Generator().manual_seed(seed + 1)
        pool.k_buffer[0].copy_(torch.randn(total + 1, kv_heads, head_dim, generator=g).to(dtype))
        pool.v_buffer[0].copy_(torch.randn(total + 1, kv_heads, head_dim, generator=g).to(dtype))
        pool.k_buffer[0][0].zero_()
        pool.v_buffer[0][0].zero_()
        off, new_locs = 0, []
        for r, p, n in zip(rows.tolist(), prefix_lens, lens):
            table.req_to_token[r, :n] = slots[off:off + n].to(torch.int32).to(device)
            new_locs.append(slots[off + p:off + n])
            off += n
        n_new = sum(ext_lens)
        q = torch.randn(n_new, heads * head_dim, generator=g).to(dtype).to(device)
        k = torch.randn(n_new, kv_heads * head_dim, generator=g).to(dtype).to(device)
        v = torch.randn(n_new, kv_heads * head_dim, generator=g).to(dtype).to(device)
        decode = all(p > 0 and e == 1 for p, e in zip(prefix_lens, ext_lens))
        starts = [sum(ext_lens[:i]) for i in range(bs)]
        t = lambda xs, dt: torch.tensor(xs, dtype=dt).to(device)  # noqa: E731
        fb = ForwardBatch(
            forward_mode=ForwardMode.DECODE if decode else ForwardMode.EXTEND, batch_size=bs,
            input_ids=torch.zeros(n_new, dtype=torch.int64, device=device),
            positions=torch.cat([torch.arange(p, p + e) for p, e in zip(prefix_lens, ext_lens)]).to(device),
            req_pool_indices=rows.to(device), seq_lens=t(lens, torch.int32), seq_lens_cpu=lens,
            out_cache_loc=torch.cat(new_locs).to(device), req_to_token_pool=table, token_to_kv_pool=pool,
            extend_prefix_lens_cpu=[] if decode else prefix_lens, extend_seq_lens_cpu=[] if decode else ext_lens,
            extend_start_loc=t(starts, torch.int64), extend_prefix_lens=t(prefix_lens, torch.int32),
            extend_seq_lens=t(ext_lens, torch.int32))
        runner = _runner({}, pool, table, heads, kv_heads, head_dim, device)
        backend = create_attention_backend(backend_name, runner)  # type: ignore[arg-type]
        assert backend.name == backend_name, f"{backend_name} fell back to {backend.name}"
        fb.attn_backend = backend
        layer = runner.model[0]
        assert isinstance(layer, RadixAttention)
        backend.init_forward_metadata(fb)
        results[backend_name] = backend.forward(q, k, v, layer, fb).float()
    return (results[name] - results["torch_native"]).abs().max().item()
