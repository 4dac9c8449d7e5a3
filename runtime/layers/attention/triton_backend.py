"""triton: the GPU attention backend built on our own kernels (see triton_ops/).

Extend runs one kernel over the cached prefix (read from the pool through `req_to_token`) plus the
new tokens (causal). Decode runs split-k attention in two kernels. Neither needs per-batch index
tensors beyond what `ForwardBatch` already carries, so decode can be captured in CUDA graphs with no
extra metadata work at replay time; only the split scratch must live at a fixed address, which
`init_cuda_graph_state` provides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import triton

from .base import AttentionBackend
from .triton_ops import decode_attention, extend_attention
from .triton_ops.decode_attention import heads_per_program
from .triton_ops.elementwise import store_kv

if TYPE_CHECKING:
    from ...model_executor.forward_batch import ForwardBatch
    from ...model_executor.model_runner import ModelRunner
    from ..radix_attention import RadixAttention


MAX_FILL_SPLITS = 32  # splits a small batch may take to fill the GPU


class TritonAttnBackend(AttentionBackend):
    name = "triton"

    def __init__(self, runner: ModelRunner) -> None:
        self.device = runner.device
        self.max_kv_splits = max(1, int(runner.server_args.triton_attention_num_kv_splits))
        self.num_sms = (torch.cuda.get_device_properties(self.device).multi_processor_count
                        if str(self.device).startswith("cuda") else 8)
        self.max_extend_len = 0
        self._scratch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._graph_max_bs = 0

    # ---- metadata ----------------------------------------------------------------------------

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        if forward_batch.forward_mode.is_extend():
            self.max_extend_len = max(forward_batch.extend_seq_lens_cpu) if forward_batch.extend_seq_lens_cpu else 0

    def num_kv_splits(self, bs: int, num_heads: int, num_kv_heads: int) -> int:
        """At least --triton-attention-num-kv-splits, more while the batch is too small to fill the GPU.

        Splitting only until the GPU is full left a large batch with one program per (request, KV
        head): ragged lengths then serialise on the longest requests (1.9 TB/s of KV read at ~144
        requests of ~2.5k tokens on an H100; 2.64 TB/s with 8 splits). A small batch with a long
        context needs programs to fill the SMs twice over (bs 1 at 32k: 0.49 TB/s with 8 splits,
        2.5 with 16). The split partials are small next to the KV read."""
        head_blocks = num_heads // heads_per_program(num_heads // num_kv_heads)
        fill = triton.cdiv(2 * self.num_sms, bs * head_blocks)
        return max(self.max_kv_splits, min(MAX_FILL_SPLITS, fill))

    def _decode_scratch(self, bs: int, num_heads: int, splits: int, dv: int) -> tuple[torch.Tensor, torch.Tensor]:
        need = (bs, num_heads, splits, dv)
        buf = self._scratch
        if buf is None or buf[0].numel() < bs * num_heads * splits * dv or buf[1].numel() < bs * num_heads * splits:
            if q_on_gpu(self.device) and torch.cuda.is_current_stream_capturing():
                raise RuntimeError("decode scratch must be allocated before CUDA-graph capture")
            buf = (torch.empty(bs * num_heads * splits * dv, dtype=torch.float32, device=self.device),
                   torch.empty(bs * num_heads * splits, dtype=torch.float32, device=self.device))
            # Captured graphs read the reserved scratch by address: a larger eager batch gets its
            # own buffer and the reserved one stays alive.
            if not self._graph_max_bs:
                self._scratch = buf
        out = buf[0][: bs * num_heads * splits * dv].view(need)
        lse = buf[1][: bs * num_heads * splits].view(bs, num_heads, splits)
        return out, lse

    # ---- CUDA graphs -------------------------------------------------------------------------

    def init_cuda_graph_state(self, max_bs: int, num_heads: int = 0, v_head_dim: int = 0,
                              num_kv_heads: int = 0) -> None:
        """Reserve the split scratch for the largest captured batch (a fixed address for replays)."""
        if num_heads and v_head_dim:
            # The largest bs * splits over the captured sizes, as one [bs=1] row of that many splits.
            kv_heads = max(1, num_kv_heads or num_heads)
            need = max(bs * self.num_kv_splits(bs, num_heads, kv_heads) for bs in range(1, max_bs + 1))
            self._decode_scratch(1, num_heads, need, v_head_dim)
        self._graph_max_bs = max_bs

    def init_forward_metadata_capture_cuda_graph(self, forward_batch: ForwardBatch) -> None:
        self.init_forward_metadata(forward_batch)

    def init_forward_metadata_replay_cuda_graph(self, forward_batch: ForwardBatch) -> None:
        self.init_forward_metadata(forward_batch)

    def get_cuda_graph_seq_len_fill_value(self) -> int:
        return 1

    # ---- forward -----------------------------------------------------------------------------

    def forward_extend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: RadixAttention,
                       forward_batch: ForwardBatch, save_kv_cache: bool = True) -> torch.Tensor:
        h, kvh, hd, vd = layer.tp_q_head_num, layer.tp_k_head_num, layer.qk_head_dim, layer.v_head_dim
        k = k.view(-1, kvh, hd)
        v = v.view(-1, kvh, vd)
        pool = forward_batch.token_to_kv_pool
        if save_kv_cache:
            _save_kv(pool, layer.layer_id, forward_batch.out_cache_loc, k, v)
        q = q.reshape(-1, h, hd)
        o = q.new_empty(q.shape[0], h, vd)
        assert forward_batch.extend_seq_lens is not None and forward_batch.extend_start_loc is not None
        k_buf, v_buf = pool.get_key_buffer(layer.layer_id), pool.get_value_buffer(layer.layer_id)
        extend_attention(q, k.to(k_buf.dtype), v.to(v_buf.dtype), o, k_buf, v_buf,
                         forward_batch.req_to_token_pool.req_to_token, forward_batch.req_pool_indices,
                         forward_batch.seq_lens, forward_batch.extend_seq_lens, forward_batch.extend_start_loc,
                         self.max_extend_len, layer.scaling, layer.logit_cap, layer.sliding_window_size,
                         causal=layer.is_causal)
        return o.view(-1, h * vd)

    def forward_decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: RadixAttention,
                       forward_batch: ForwardBatch, save_kv_cache: bool = True) -> torch.Tensor:
        h, kvh, hd, vd = layer.tp_q_head_num, layer.tp_k_head_num, layer.qk_head_dim, layer.v_head_dim
        pool = forward_batch.token_to_kv_pool
        if save_kv_cache:
            _save_kv(pool, layer.layer_id, forward_batch.out_cache_loc, k.view(-1, kvh, hd), v.view(-1, kvh, vd))
        bs = forward_batch.batch_size
        q = q.reshape(bs, h, hd)
        o = q.new_empty(bs, h, vd)
        splits = self.num_kv_splits(bs, h, kvh)
        att_out, att_lse = self._decode_scratch(bs, h, splits, vd)
        decode_attention(q, pool.get_key_buffer(layer.layer_id), pool.get_value_buffer(layer.layer_id), o,
                         forward_batch.req_to_token_pool.req_to_token, forward_batch.req_pool_indices,
                         forward_batch.seq_lens, att_out, att_lse, layer.scaling, layer.logit_cap,
                         layer.sliding_window_size)
        return o.view(bs, h * vd)


def q_on_gpu(device: Any) -> bool:
    return str(device).startswith("cuda")


def _save_kv(pool: Any, layer_id: int, loc: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """One fused store kernel when the layout allows (same dtype, rows with unit inner stride)."""
    k_buf, v_buf = pool.get_key_buffer(layer_id), pool.get_value_buffer(layer_id)
    if k.dtype == k_buf.dtype and v.dtype == v_buf.dtype and k.stride(-1) == 1 and v.stride(-1) == 1 \
            and k.stride(1) == k.shape[2] and v.stride(1) == v.shape[2] and k_buf.is_contiguous() and v_buf.is_contiguous():
        store_kv(k, v, loc, k_buf, v_buf)
    else:
        pool.set_kv_buffer(layer_id, loc, k, v)
