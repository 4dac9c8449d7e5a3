"""Linear layers that know how to shard themselves for tensor parallelism.

Every parameter carries a `weight_loader(param, loaded_weight, shard_id=None)` that narrows the
full checkpoint tensor to this rank's slice and copies it into the right offset, so models map
checkpoint names to parameters and never slice tensors themselves.

| layer                      | shard per rank                        | communication          |
|----------------------------|---------------------------------------|------------------------|
| ColumnParallelLinear       | output rows                           | none                   |
| MergedColumnParallelLinear | each fused part's output rows         | none                   |
| QKVParallelLinear          | q heads; kv heads (replicated if few) | none                   |
| RowParallelLinear          | input columns                         | all-reduce of outputs  |
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import get_tp_group, tensor_model_parallel_all_reduce
from .cpu_linear import packed_linear
from .fused_decode import linear as fused_linear


def _set_loader(param: nn.Parameter, loader: Any) -> nn.Parameter:
    param.weight_loader = loader  # type: ignore[attr-defined]
    return param


def default_weight_loader(param: nn.Parameter, loaded_weight: torch.Tensor, shard_id: Any = None) -> None:
    if param.shape != loaded_weight.shape:
        raise ValueError(f"shape mismatch: parameter {tuple(param.shape)} vs checkpoint {tuple(loaded_weight.shape)}")
    param.data.copy_(loaded_weight)


class LinearBase(nn.Module):
    def __init__(self, input_size: int, output_size: int, bias: bool, params_dtype: torch.dtype | None) -> None:
        super().__init__()
        dtype = params_dtype or torch.get_default_dtype()
        self.input_size = input_size
        self.output_size = output_size
        self.weight = _set_loader(nn.Parameter(torch.empty(output_size, input_size, dtype=dtype),
                                               requires_grad=False), self.weight_loader)
        self.bias = (_set_loader(nn.Parameter(torch.empty(output_size, dtype=dtype), requires_grad=False),
                                 self.weight_loader) if bias else None)

    def weight_loader(self, param: nn.Parameter, loaded_weight: torch.Tensor, shard_id: Any = None) -> None:
        default_weight_loader(param, loaded_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = fused_linear(x, self.weight, self.bias)  # one-row GPU inputs: a full-bandwidth GEMV
        if y is None:
            y = packed_linear(x, self.weight, self.bias, self)  # small CPU batches: oneDNN
        return y if y is not None else F.linear(x, self.weight, self.bias)


class ReplicatedLinear(LinearBase):
    def __init__(self, input_size: int, output_size: int, bias: bool = False,
                 params_dtype: torch.dtype | None = None) -> None:
        super().__init__(input_size, output_size, bias, params_dtype)


class ColumnParallelLinear(LinearBase):
    """Output dimension split across ranks."""

    def __init__(self, input_size: int, output_size: int, bias: bool = False,
                 params_dtype: torch.dtype | None = None) -> None:
        tp = get_tp_group()
        if output_size % tp.size:
            raise ValueError(f"output size {output_size} is not divisible by tp size {tp.size}")
        self.tp_rank, self.tp_size = tp.rank, tp.size
        super().__init__(input_size, output_size // tp.size, bias, params_dtype)

    def weight_loader(self, param: nn.Parameter, loaded_weight: torch.Tensor, shard_id: Any = None) -> None:
        rows = param.shape[0]
        default_weight_loader(param, loaded_weight.narrow(0, self.tp_rank * rows, rows))


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several column-parallel projections fused into one matmul (gate_up_proj: shard ids 0, 1)."""

    def __init__(self, input_size: int, output_sizes: list[int], bias: bool = False,
                 params_dtype: torch.dtype | None = None) -> None:
        self.output_sizes = output_sizes
        super().__init__(input_size, sum(output_sizes), bias, params_dtype)

    def weight_loader(self, param: nn.Parameter, loaded_weight: torch.Tensor, shard_id: Any = None) -> None:
        if shard_id is None:  # an already-fused checkpoint tensor
            parts = torch.split(loaded_weight, self.output_sizes, dim=0)
            for i, part in enumerate(parts):
                self.weight_loader(param, part, i)
            return
        size = self.output_sizes[shard_id] // self.tp_size
        offset = sum(self.output_sizes[:shard_id]) // self.tp_size
        shard = loaded_weight.narrow(0, self.tp_rank * size, size)
        target = param.data.narrow(0, offset, size)
        if target.shape != shard.shape:
            raise ValueError(f"shape mismatch for shard {shard_id}: {tuple(target.shape)} vs {tuple(shard.shape)}")
        target.copy_(shard)


class QKVParallelLinear(ColumnParallelLinear):
    """Fused q/k/v projection (shard ids "q", "k", "v"). KV heads are replicated when tp > kv heads."""

    def __init__(self, hidden_size: int, head_dim: int, total_num_heads: int, total_num_kv_heads: int,
                 bias: bool = False, params_dtype: torch.dtype | None = None, v_head_dim: int | None = None) -> None:
        tp = get_tp_group()
        self.head_dim = head_dim
        self.v_head_dim = v_head_dim or head_dim
        self.total_num_heads = total_num_heads
        self.total_num_kv_heads = total_num_kv_heads
        if total_num_heads % tp.size:
            raise ValueError(f"{total_num_heads} attention heads are not divisible by tp size {tp.size}")
        self.num_heads = total_num_heads // tp.size
        if tp.size >= total_num_kv_heads:
            self.num_kv_heads = 1
            self.kv_replicas = tp.size // total_num_kv_heads
        else:
            if total_num_kv_heads % tp.size:
                raise ValueError(f"{total_num_kv_heads} kv heads are not divisible by tp size {tp.size}")
            self.num_kv_heads = total_num_kv_heads // tp.size
            self.kv_replicas = 1
        self.q_size = self.num_heads * head_dim
        self.kv_size = self.num_kv_heads * head_dim
        self.v_size = self.num_kv_heads * self.v_head_dim
        out = (self.q_size + self.kv_size + self.v_size) * tp.size
        super().__init__(hidden_size, out, bias, params_dtype)

    def weight_loader(self, param: nn.Parameter, loaded_weight: torch.Tensor, shard_id: Any = None) -> None:
        if shard_id is None:  # fused [q; k; v] checkpoint tensor (e.g. Phi-3)
            sizes = [self.total_num_heads * self.head_dim, self.total_num_kv_heads * self.head_dim,
                     self.total_num_kv_heads * self.v_head_dim]
            for part, sid in zip(torch.split(loaded_weight, sizes, dim=0), ("q", "k", "v")):
                self.weight_loader(param, part, sid)
            return
        if shard_id == "q":
            offset, size, rank = 0, self.q_size, self.tp_rank
        elif shard_id == "k":
            offset, size, rank = self.q_size, self.kv_size, self.tp_rank // self.kv_replicas
        else:
            offset, size, rank = self.q_size + self.kv_size, self.v_size, self.tp_rank // self.kv_replicas
        shard = loaded_weight.narrow(0, rank * size, size)
        target = param.data.narrow(0, offset, size)
        if target.shape != shard.shape:
            raise ValueError(f"shape mismatch for {shard_id}: {tuple(target.shape)} vs {tuple(shard.shape)}")
        target.copy_(shard)


class RowParallelLinear(LinearBase):
    """Input dimension split across ranks; outputs are summed with an all-reduce."""

    def __init__(self, input_size: int, output_size: int, bias: bool = False,
                 params_dtype: torch.dtype | None = None, reduce_results: bool = True) -> None:
        tp = get_tp_group()
        if input_size % tp.size:
            raise ValueError(f"input size {input_size} is not divisible by tp size {tp.size}")
        self.tp_rank, self.tp_size = tp.rank, tp.size
        self.reduce_results = reduce_results
        super().__init__(input_size // tp.size, output_size, bias, params_dtype)

    def weight_loader(self, param: nn.Parameter, loaded_weight: torch.Tensor, shard_id: Any = None) -> None:
        if param.dim() == 1:  # bias: added once, on rank 0 only after the reduce
            default_weight_loader(param, loaded_weight)
            return
        cols = param.shape[1]
        default_weight_loader(param, loaded_weight.narrow(1, self.tp_rank * cols, cols))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias if self.tp_rank == 0 else None
        out = fused_linear(x, self.weight, bias)
        if out is None:
            out = packed_linear(x, self.weight, bias, self)
        if out is None:
            out = F.linear(x, self.weight, bias)
        if self.reduce_results and self.tp_size > 1:
            out = tensor_model_parallel_all_reduce(out)
        return out
