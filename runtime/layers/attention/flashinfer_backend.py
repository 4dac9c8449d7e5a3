"""flashinfer: attention through FlashInfer's paged kernels, over the same KV pool as every backend.

The pool is FlashInfer's NHD paged layout with page size 1: `k_buffer[layer]` ([slots, kv_heads,
dim]) seen as [pages, 1, kv_heads, dim], and a request's page list is its `req_to_token` row,
flattened on the device by `build_kv_indices`.

* Extend without a cached prefix: one ragged causal pass over the new tokens' own K/V.
* Extend with a cached prefix: the ragged causal pass over the new tokens, plus a paged non-causal
  pass of the new queries over the prefix, merged exactly by their log-sum-exp values. Sliding
  windows need absolute positions on both sides, so those models run one paged causal pass over
  prefix + new tokens instead (the new K/V are written to the pool first).
* Decode: the paged decode wrapper (tensor-core kernel for GQA groups of 4 or more).

Planning runs once per batch on host-side lengths (`seq_lens_cpu`), so no step waits on the device.
CUDA graphs get one decode wrapper per captured batch size over fixed index buffers; a replay
re-plans it and rebuilds the page list in place.

FlashInfer kernels exist for fp16/bf16 and for one attention setting per plan, so fp32 models and
models whose layers differ in window or soft-cap are refused (`FlashInferUnsupported`) and the
caller falls back to the Triton backend.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .base import AttentionBackend
from .triton_backend import _save_kv
from .triton_ops.kv_indices import build_kv_indices

if TYPE_CHECKING:
    from ...model_executor.forward_batch import ForwardBatch
    from ...model_executor.model_runner import ModelRunner
    from ..radix_attention import RadixAttention

WORKSPACE_BYTES = 256 << 20
# GQA groups at least this large decode on tensor cores (the prefill kernel with one query row).
TENSOR_CORE_MIN_GROUP = 4


class FlashInferUnsupported(ValueError):
    """The model or dtype is outside what the FlashInfer kernels cover."""


@dataclass(frozen=True)
class _LayerSetting:
    num_heads: int
    num_kv_heads: int
    head_dim: int
    v_head_dim: int
    window_left: int  # FlashInfer's convention: keys at positions >= q_pos - window_left; -1 = all
    logit_cap: float
    scaling: float
    causal: bool


def _layer_setting(model: torch.nn.Module) -> _LayerSetting:
    from ..radix_attention import RadixAttention

    found = {
        _LayerSetting(m.tp_q_head_num, m.tp_k_head_num, m.qk_head_dim, m.v_head_dim,
                      m.sliding_window_size - 1 if m.sliding_window_size > 0 else -1, float(m.logit_cap),
                      float(m.scaling), bool(m.is_causal))
        for m in model.modules() if isinstance(m, RadixAttention)
    }
    if len(found) != 1:
        raise FlashInferUnsupported(f"attention layers differ in shape, window or soft-cap ({len(found)} settings)")
    setting = found.pop()
    if setting.head_dim != setting.v_head_dim:
        raise FlashInferUnsupported("different K and V head dims")
    return setting


def _indptr(lens: list[int]) -> torch.Tensor:
    out = torch.zeros(len(lens) + 1, dtype=torch.int32)
    if lens:
        torch.cumsum(torch.tensor(lens, dtype=torch.int32), 0, out=out[1:])
    return out


class FlashInferAttnBackend(AttentionBackend):
    name = "flashinfer"

    def __init__(self, runner: ModelRunner) -> None:
        import flashinfer

        self.fi = flashinfer
        self.device = runner.device
        self.dtype = runner.kv_pool.dtype
        if self.dtype not in (torch.float16, torch.bfloat16):
            raise FlashInferUnsupported(f"FlashInfer kernels take fp16/bf16, not {self.dtype}")
        self.layer = _layer_setting(runner.model)
        group = self.layer.num_heads // self.layer.num_kv_heads
        tc_env = os.environ.get("SGLANG_NB_FLASHINFER_DECODE_TENSOR_CORES")
        self.decode_tensor_cores = group >= TENSOR_CORE_MIN_GROUP if tc_env is None else tc_env == "1"
        # fa2 everywhere: decode on tensor cores reuses the prefill module, so one JIT build serves all.
        self.prefill_impl = os.environ.get("SGLANG_NB_FLASHINFER_PREFILL_BACKEND", "fa2")
        self.workspace = torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=self.device)
        self.ragged = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(self.workspace, "NHD",
                                                                     backend=self.prefill_impl)
        self.paged = flashinfer.BatchPrefillWithPagedKVCacheWrapper(self.workspace, "NHD", backend=self.prefill_impl)
        self.decode = flashinfer.BatchDecodeWithPagedKVCacheWrapper(self.workspace, "NHD",
                                                                   use_tensor_cores=self.decode_tensor_cores)
        self.max_context = runner.req_to_token_pool.req_to_token.shape[1]
        self._indices = torch.empty(0, dtype=torch.int32, device=self.device)
        self._ones = torch.ones(1, dtype=torch.int32)
        self._active_decode: Any = self.decode
        self._extend_mode = "ragged"  # ragged | merged | paged
        self.graph_wrappers: dict[int, Any] = {}
        self._graph_indices: torch.Tensor | None = None
        self._graph_indptr: torch.Tensor | None = None
        self._graph_last_page: torch.Tensor | None = None

    # ---- helpers -----------------------------------------------------------------------------

    def _indices_buffer(self, need: int) -> torch.Tensor:
        if self._indices.numel() < need:
            self._indices = torch.empty(max(need, 2 * self._indices.numel(), 4096), dtype=torch.int32,
                                        device=self.device)
        return self._indices

    def _last_page_len(self, bs: int) -> torch.Tensor:
        if self._ones.numel() < bs:
            self._ones = torch.ones(max(bs, 2 * self._ones.numel()), dtype=torch.int32)
        return self._ones[:bs]

    def _common(self) -> dict[str, Any]:
        s = self.layer
        return dict(window_left=s.window_left, logits_soft_cap=s.logit_cap or None, sm_scale=s.scaling,
                    q_data_type=self.dtype, kv_data_type=self.dtype)

    def _plan_decode(self, wrapper: Any, forward_batch: ForwardBatch, indices: torch.Tensor) -> None:
        lens = forward_batch.seq_lens_cpu
        indptr = _indptr(lens)
        total = int(indptr[-1])
        build_kv_indices(forward_batch.req_to_token_pool.req_to_token, forward_batch.req_pool_indices,
                         forward_batch.seq_lens, indices)
        s = self.layer
        wrapper.plan(indptr, indices[:total], self._last_page_len(len(lens)), s.num_heads, s.num_kv_heads,
                     s.head_dim, 1, **self._common())

    # ---- metadata ----------------------------------------------------------------------------

    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        s = self.layer
        if forward_batch.forward_mode.is_decode():
            self._active_decode = self.decode
            self._plan_decode(self.decode, forward_batch, self._indices_buffer(sum(forward_batch.seq_lens_cpu)))
            return
        ext = forward_batch.extend_seq_lens_cpu
        prefix = forward_batch.extend_prefix_lens_cpu or [0] * len(ext)
        qo_indptr = _indptr(ext)
        table = forward_batch.req_to_token_pool.req_to_token
        if s.window_left >= 0 and any(prefix):
            # One causal pass over prefix + new tokens (queries align to the end of each sequence).
            self._extend_mode = "paged"
            lens = forward_batch.seq_lens_cpu
            kv_indptr = _indptr(lens)
            indices = self._indices_buffer(sum(lens))
            build_kv_indices(table, forward_batch.req_pool_indices, forward_batch.seq_lens, indices)
            self.paged.plan(qo_indptr, kv_indptr, indices[: int(kv_indptr[-1])], self._last_page_len(len(lens)),
                            s.num_heads, s.num_kv_heads, s.head_dim, 1, causal=s.causal, **self._common())
            return
        self.ragged.plan(qo_indptr, qo_indptr, s.num_heads, s.num_kv_heads, s.head_dim, causal=s.causal,
                         **self._common())
        if not any(prefix):
            self._extend_mode = "ragged"
            return
        self._extend_mode = "merged"
        kv_indptr = _indptr(prefix)
        indices = self._indices_buffer(sum(prefix))
        assert forward_batch.extend_prefix_lens is not None
        build_kv_indices(table, forward_batch.req_pool_indices, forward_batch.extend_prefix_lens, indices)
        self.paged.plan(qo_indptr, kv_indptr, indices[: int(kv_indptr[-1])], self._last_page_len(len(prefix)),
                        s.num_heads, s.num_kv_heads, s.head_dim, 1, causal=False, **self._common())

    # ---- CUDA graphs -------------------------------------------------------------------------

    def init_cuda_graph_state(self, max_bs: int, num_heads: int = 0, v_head_dim: int = 0,
                              num_kv_heads: int = 0) -> None:
        """Fixed index buffers shared by the per-size decode wrappers (a replay writes them in place)."""
        self._graph_indptr = torch.zeros(max_bs + 1, dtype=torch.int32, device=self.device)
        self._graph_last_page = torch.ones(max_bs, dtype=torch.int32, device=self.device)
        self._graph_indices = torch.zeros(max_bs * self.max_context, dtype=torch.int32, device=self.device)

    def init_forward_metadata_capture_cuda_graph(self, forward_batch: ForwardBatch) -> None:
        assert self._graph_indptr is not None and self._graph_indices is not None
        assert self._graph_last_page is not None
        bs = forward_batch.batch_size
        wrapper = self.fi.BatchDecodeWithPagedKVCacheWrapper(
            self.workspace, "NHD", use_cuda_graph=True, use_tensor_cores=self.decode_tensor_cores,
            paged_kv_indptr_buffer=self._graph_indptr[: bs + 1], paged_kv_indices_buffer=self._graph_indices,
            paged_kv_last_page_len_buffer=self._graph_last_page[:bs])
        self.graph_wrappers[bs] = wrapper
        self._active_decode = wrapper
        self._plan_decode(wrapper, forward_batch, self._graph_indices)

    def init_forward_metadata_replay_cuda_graph(self, forward_batch: ForwardBatch) -> None:
        """`forward_batch` is the padded batch over the graph's static buffers."""
        assert self._graph_indices is not None
        wrapper = self.graph_wrappers[forward_batch.batch_size]
        self._active_decode = wrapper
        self._plan_decode(wrapper, forward_batch, self._graph_indices)

    def get_cuda_graph_seq_len_fill_value(self) -> int:
        return 1

    # ---- forward -----------------------------------------------------------------------------

    def _pool(self, forward_batch: ForwardBatch, layer_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        pool = forward_batch.token_to_kv_pool
        return pool.get_key_buffer(layer_id).unsqueeze(1), pool.get_value_buffer(layer_id).unsqueeze(1)

    def forward_extend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: RadixAttention,
                       forward_batch: ForwardBatch, save_kv_cache: bool = True) -> torch.Tensor:
        h, kvh, hd, vd = layer.tp_q_head_num, layer.tp_k_head_num, layer.qk_head_dim, layer.v_head_dim
        k = k.view(-1, kvh, hd).to(self.dtype)
        v = v.view(-1, kvh, vd).to(self.dtype)
        if save_kv_cache:
            _save_kv(forward_batch.token_to_kv_pool, layer.layer_id, forward_batch.out_cache_loc, k, v)
        # Contiguous operands: the kernels index rows with the head count as the row stride.
        k, v = k.contiguous(), v.contiguous()
        q = q.reshape(-1, h, hd).to(self.dtype).contiguous()
        if self._extend_mode == "ragged":
            o = self.ragged.run(q, k, v)
        elif self._extend_mode == "paged":
            o = self.paged.run(q, self._pool(forward_batch, layer.layer_id))
        else:
            o_new, lse_new = self.ragged.run(q, k, v, return_lse=True)
            o_pre, lse_pre = self.paged.run(q, self._pool(forward_batch, layer.layer_id), return_lse=True)
            o, _ = self.fi.merge_state(o_new, lse_new, o_pre, lse_pre)
        return o.view(-1, h * vd)

    def forward_decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: RadixAttention,
                       forward_batch: ForwardBatch, save_kv_cache: bool = True) -> torch.Tensor:
        h, kvh, hd, vd = layer.tp_q_head_num, layer.tp_k_head_num, layer.qk_head_dim, layer.v_head_dim
        if save_kv_cache:
            _save_kv(forward_batch.token_to_kv_pool, layer.layer_id, forward_batch.out_cache_loc,
                     k.view(-1, kvh, hd), v.view(-1, kvh, vd))
        bs = forward_batch.batch_size
        o = self._active_decode.run(q.reshape(bs, h, hd).contiguous(), self._pool(forward_batch, layer.layer_id))
        return o.view(bs, h * vd)
