"""torch_native: attention over the KV pool with torch's scaled_dot_product_attention.

The CPU backend and the reference the GPU kernels are tested against. Extend attends each request
separately (its cached prefix gathered from the pool plus its new tokens); decode gathers every
request's keys into one padded [bs, max_len] batch and runs a single masked SDPA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .base import AttentionBackend

if TYPE_CHECKING:
    from ...model_executor.forward_batch import ForwardBatch
    from ...model_executor.model_runner import ModelRunner
    from ..radix_attention import RadixAttention


class TorchNativeAttnBackend(AttentionBackend):
    name = "torch_native"

    def __init__(self, runner: ModelRunner) -> None:
        self.device = runner.device
        self._kv_indices: list[torch.Tensor] | torch.Tensor = []
        self._decode_mask: torch.Tensor | None = None
        self._window_masks: dict[int, torch.Tensor | None] = {}
        self._extend_masks: dict[tuple[int, int, int], torch.Tensor] = {}

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        table = forward_batch.req_to_token_pool.req_to_token
        seq_lens = forward_batch.seq_lens_cpu
        self._window_masks = {}
        self._extend_masks = {}
        if forward_batch.forward_mode.is_decode():
            max_len = max(seq_lens)
            rows = table[forward_batch.req_pool_indices, :max_len].to(torch.int64)  # [bs, max_len]
            self._kv_indices = rows
            if min(seq_lens) == max_len:
                self._decode_mask = None
            else:
                lens = forward_batch.seq_lens.to(self.device).view(-1, 1)
                self._decode_mask = (torch.arange(max_len, device=self.device).view(1, -1) < lens)[:, None, None, :]
        else:
            idx = forward_batch.req_pool_indices.tolist()
            self._kv_indices = [table[r, :n].to(torch.int64) for r, n in zip(idx, seq_lens)]

    # ---- extend ------------------------------------------------------------------------------

    def forward_extend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: RadixAttention,
                       forward_batch: ForwardBatch, save_kv_cache: bool = True) -> torch.Tensor:
        h, kvh, hd, vd = layer.tp_q_head_num, layer.tp_k_head_num, layer.qk_head_dim, layer.v_head_dim
        k = k.view(-1, kvh, hd)
        v = v.view(-1, kvh, vd)
        if save_kv_cache:
            forward_batch.token_to_kv_pool.set_kv_buffer(layer.layer_id, forward_batch.out_cache_loc, k, v)
        k_buf = forward_batch.token_to_kv_pool.get_key_buffer(layer.layer_id)
        v_buf = forward_batch.token_to_kv_pool.get_value_buffer(layer.layer_id)
        q = q.view(-1, h, hd)
        out = q.new_empty(q.shape[0], h, vd)
        start = 0
        assert isinstance(self._kv_indices, list)
        for i, (prefix_len, ext_len) in enumerate(zip(forward_batch.extend_prefix_lens_cpu,
                                                      forward_batch.extend_seq_lens_cpu)):
            qi = q[start:start + ext_len].transpose(0, 1)  # [h, ext, hd]
            if prefix_len == 0:
                ki, vi = k[start:start + ext_len], v[start:start + ext_len]
            else:
                loc = self._kv_indices[i]
                ki, vi = k_buf.index_select(0, loc), v_buf.index_select(0, loc)
            ki, vi = ki.transpose(0, 1), vi.transpose(0, 1)  # [kvh, seq, d]
            mask = self._extend_mask(prefix_len, ext_len, layer.sliding_window_size)
            oi = _attend(qi.unsqueeze(0), ki.unsqueeze(0), vi.unsqueeze(0), mask, layer,
                         causal=mask is None and layer.is_causal)
            out[start:start + ext_len] = oi[0].transpose(0, 1)
            start += ext_len
        return out.view(-1, h * vd)

    def _extend_mask(self, prefix_len: int, ext_len: int, window: int) -> torch.Tensor | None:
        """[ext, prefix + ext] bool mask (True = attend); None when plain causal suffices."""
        if prefix_len == 0 and window <= 0:
            return None
        key = (prefix_len, ext_len, window)
        cached = self._extend_masks.get(key)
        if cached is not None:
            return cached
        q_pos = torch.arange(prefix_len, prefix_len + ext_len, device=self.device).view(-1, 1)
        k_pos = torch.arange(prefix_len + ext_len, device=self.device).view(1, -1)
        mask = k_pos <= q_pos
        if window > 0:
            mask &= (q_pos - k_pos) < window
        self._extend_masks[key] = mask
        return mask

    # ---- decode ------------------------------------------------------------------------------

    def forward_decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: RadixAttention,
                       forward_batch: ForwardBatch, save_kv_cache: bool = True) -> torch.Tensor:
        h, kvh, hd, vd = layer.tp_q_head_num, layer.tp_k_head_num, layer.qk_head_dim, layer.v_head_dim
        if save_kv_cache:
            forward_batch.token_to_kv_pool.set_kv_buffer(layer.layer_id, forward_batch.out_cache_loc,
                                                         k.view(-1, kvh, hd), v.view(-1, kvh, vd))
        loc = self._kv_indices
        assert isinstance(loc, torch.Tensor)
        bs = loc.shape[0]
        # index_select on the flattened slots is several times faster on CPU than 2-D advanced indexing.
        flat = loc.view(-1)
        keys = forward_batch.token_to_kv_pool.get_key_buffer(layer.layer_id).index_select(0, flat)
        keys = keys.view(bs, -1, kvh, hd).transpose(1, 2)  # [bs, kvh, L, hd]
        values = forward_batch.token_to_kv_pool.get_value_buffer(layer.layer_id).index_select(0, flat)
        values = values.view(bs, -1, kvh, vd).transpose(1, 2)
        mask = self._decode_mask
        if layer.sliding_window_size > 0:
            mask = self._decode_window_mask(forward_batch, layer.sliding_window_size, loc.shape[1])
        out = _attend(q.view(bs, h, 1, hd), keys, values, mask, layer, causal=False)
        return out.reshape(bs, h * vd)

    def _decode_window_mask(self, forward_batch: ForwardBatch, window: int, max_len: int) -> torch.Tensor:
        if window not in self._window_masks:
            lens = forward_batch.seq_lens.to(self.device).view(-1, 1)
            k_pos = torch.arange(max_len, device=self.device).view(1, -1)
            mask = (k_pos < lens) & ((lens - 1 - k_pos) < window)
            self._window_masks[window] = mask[:, None, None, :]
        out = self._window_masks[window]
        assert out is not None
        return out


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
            layer: RadixAttention, causal: bool) -> torch.Tensor:
    """q [b, h, n, d], k/v [b, kvh, s, d] -> [b, h, n, dv]."""
    if layer.logit_cap > 0:
        return _attend_softcap(q, k, v, mask, layer.scaling, layer.logit_cap, causal)
    if q.shape[1] != k.shape[1]:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=layer.scaling,
                                              enable_gqa=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=layer.scaling)


def _attend_softcap(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                    scale: float, cap: float, causal: bool) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    scores = cap * torch.tanh(scores / cap)
    if causal:
        n, s = q.shape[2], k.shape[2]
        mask = torch.ones(n, s, dtype=torch.bool, device=q.device).tril(s - n)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(v.dtype)
    return torch.matmul(probs, v)
