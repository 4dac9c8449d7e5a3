"""RadixAttention: the model-side attention layer. It carries the layer's shape and options and
hands q/k/v to the batch's attention backend, which reads and writes the shared KV pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ..model_executor.forward_batch import ForwardBatch


class RadixAttention(nn.Module):
    def __init__(self, num_heads: int, head_dim: int, scaling: float, num_kv_heads: int, layer_id: int,
                 logit_cap: float = 0.0, sliding_window_size: int = -1, v_head_dim: int | None = None,
                 is_causal: bool = True) -> None:
        super().__init__()
        self.tp_q_head_num = num_heads
        self.tp_k_head_num = num_kv_heads
        self.tp_v_head_num = num_kv_heads
        self.head_dim = head_dim
        self.qk_head_dim = head_dim
        self.v_head_dim = v_head_dim or head_dim
        self.scaling = scaling
        self.layer_id = layer_id
        self.logit_cap = logit_cap
        # HF semantics: a query at position i sees keys j with i - j < sliding_window_size.
        self.sliding_window_size = sliding_window_size if sliding_window_size and sliding_window_size > 0 else -1
        self.is_causal = is_causal

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, forward_batch: ForwardBatch,
                save_kv_cache: bool = True) -> torch.Tensor:
        """q: [num_tokens, heads * head_dim]; k, v: [num_tokens, kv_heads * head_dim] -> like q."""
        assert forward_batch.attn_backend is not None
        return forward_batch.attn_backend.forward(q, k, v, self, forward_batch, save_kv_cache)
