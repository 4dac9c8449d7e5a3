"""The attention backend interface. Every backend reads and writes the same KV pool."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ...model_executor.forward_batch import ForwardBatch
    from ..radix_attention import RadixAttention


class AttentionBackend(ABC):
    """One instance per model runner; `init_forward_metadata` runs once per batch, then every layer
    calls `forward`. Backends that support CUDA graphs also implement the `*_cuda_graph` hooks."""

    name: str = ""

    @abstractmethod
    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        """Build per-batch index structures shared by all layers (side effect: stored on self)."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: RadixAttention,
                forward_batch: ForwardBatch, save_kv_cache: bool = True) -> torch.Tensor:
        if forward_batch.forward_mode.is_decode():
            return self.forward_decode(q, k, v, layer, forward_batch, save_kv_cache)
        return self.forward_extend(q, k, v, layer, forward_batch, save_kv_cache)

    @abstractmethod
    def forward_extend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: RadixAttention,
                       forward_batch: ForwardBatch, save_kv_cache: bool = True) -> torch.Tensor:
        """Write the new tokens' K/V to `out_cache_loc`, then attend causally over prefix + new tokens."""

    @abstractmethod
    def forward_decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: RadixAttention,
                       forward_batch: ForwardBatch, save_kv_cache: bool = True) -> torch.Tensor:
        """Write one token's K/V per request, then attend over the request's whole sequence."""

    # CUDA-graph hooks (GPU backends).
    def init_cuda_graph_state(self, max_bs: int, num_heads: int = 0, v_head_dim: int = 0,
                              num_kv_heads: int = 0) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not support CUDA graphs")

    def init_forward_metadata_capture_cuda_graph(self, forward_batch: ForwardBatch) -> None:
        raise NotImplementedError

    def init_forward_metadata_replay_cuda_graph(self, forward_batch: ForwardBatch) -> None:
        raise NotImplementedError

    def get_cuda_graph_seq_len_fill_value(self) -> int:
        return 1
