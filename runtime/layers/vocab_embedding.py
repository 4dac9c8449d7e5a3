"""Token embedding and LM head, split by vocabulary rows across tensor-parallel ranks."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import get_tp_group, tensor_model_parallel_all_reduce


class VocabParallelEmbedding(nn.Module):
    """Rows [rank * V/tp, (rank + 1) * V/tp) of a vocabulary padded to a multiple of tp."""

    def __init__(self, num_embeddings: int, embedding_dim: int, params_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        tp = get_tp_group()
        self.tp_rank, self.tp_size = tp.rank, tp.size
        self.org_vocab_size = num_embeddings
        padded = -(-num_embeddings // tp.size) * tp.size
        self.num_embeddings_per_partition = padded // tp.size
        self.vocab_start = tp.rank * self.num_embeddings_per_partition
        self.vocab_end = min(self.vocab_start + self.num_embeddings_per_partition, num_embeddings)
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.empty(self.num_embeddings_per_partition, embedding_dim,
                                               dtype=params_dtype or torch.get_default_dtype()), requires_grad=False)
        self.weight.weight_loader = self.weight_loader  # type: ignore[attr-defined]

    def weight_loader(self, param: nn.Parameter, loaded_weight: torch.Tensor, shard_id: Any = None) -> None:
        rows = self.vocab_end - self.vocab_start
        if loaded_weight.shape[1] != self.embedding_dim:
            raise ValueError(f"embedding width {loaded_weight.shape[1]} != {self.embedding_dim}")
        param.data[:rows].copy_(loaded_weight[self.vocab_start:self.vocab_end])
        param.data[rows:].zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            return F.embedding(input_ids, self.weight)
        mask = (input_ids < self.vocab_start) | (input_ids >= self.vocab_end)
        local = (input_ids - self.vocab_start).masked_fill(mask, 0)
        out = F.embedding(local, self.weight).masked_fill(mask.unsqueeze(-1), 0)
        return tensor_model_parallel_all_reduce(out)


class ParallelLMHead(VocabParallelEmbedding):
    """The output projection; logits are gathered across ranks by the LogitsProcessor."""

    def __init__(self, num_embeddings: int, embedding_dim: int, bias: bool = False,
                 params_dtype: torch.dtype | None = None) -> None:
        super().__init__(num_embeddings, embedding_dim, params_dtype)
        self.bias = None
        if bias:
            self.bias = nn.Parameter(torch.zeros(self.num_embeddings_per_partition,
                                                 dtype=params_dtype or torch.get_default_dtype()), requires_grad=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called
        raise RuntimeError("ParallelLMHead is applied by the LogitsProcessor")
