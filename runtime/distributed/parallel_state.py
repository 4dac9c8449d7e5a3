"""The tensor-parallel group of this process. With tp_size 1 every collective is the identity."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class TPGroup:
    rank: int = 0
    size: int = 1
    group: object | None = None


_TP = TPGroup()


def get_tp_group() -> TPGroup:
    return _TP


def init_tp_group(rank: int, size: int, init_method: str, backend: str) -> None:
    """Join the default process group (one process per TP rank); side effect: global TP state."""
    global _TP
    if size > 1:
        dist.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=size)
        _TP = TPGroup(rank=rank, size=size, group=dist.group.WORLD)
    else:
        _TP = TPGroup()


def tensor_model_parallel_all_reduce(x: torch.Tensor) -> torch.Tensor:
    if _TP.size == 1:
        return x
    dist.all_reduce(x, group=_TP.group)  # type: ignore[arg-type]
    return x


def tensor_model_parallel_all_gather(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    if _TP.size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(_TP.size)]
    dist.all_gather(parts, x.contiguous(), group=_TP.group)  # type: ignore[arg-type]
    return torch.cat(parts, dim=dim)
