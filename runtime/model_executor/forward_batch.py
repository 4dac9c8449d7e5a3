"""ForwardBatch: the tensors one model forward needs, built from a scheduler batch.

Layout for an EXTEND batch of requests r0, r1 (prefix = cached tokens, extend = computed now):

    input_ids      [ r0.extend tokens | r1.extend tokens ]          (num_tokens,)
    positions      [ p0 .. p0+e0-1    | p1 .. p1+e1-1    ]          (num_tokens,)
    out_cache_loc  [ new KV slots of r0 | new KV slots of r1 ]      (num_tokens,)
    seq_lens       [ p0 + e0, p1 + e1 ]                             (batch_size,)
    extend_start_loc [0, e0]                                        (batch_size,)

A DECODE batch has one token per request: positions = seq_lens - 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, auto
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..layers.attention.base import AttentionBackend
    from ..mem_cache.kv_pool import MHATokenToKVPool, ReqToTokenPool
    from ..sampling.sampling_batch_info import SamplingBatchInfo


class ForwardMode(IntEnum):
    EXTEND = auto()
    DECODE = auto()
    MIXED = auto()
    IDLE = auto()

    def is_extend(self) -> bool:
        return self in (ForwardMode.EXTEND, ForwardMode.MIXED)

    def is_decode(self) -> bool:
        return self == ForwardMode.DECODE


@dataclass
class ForwardBatch:
    forward_mode: ForwardMode
    batch_size: int
    input_ids: torch.Tensor  # [num_tokens] int64
    positions: torch.Tensor  # [num_tokens] int64
    req_pool_indices: torch.Tensor  # [bs] int64
    seq_lens: torch.Tensor  # [bs] int32
    seq_lens_cpu: list[int]
    out_cache_loc: torch.Tensor  # [num_tokens] int64
    req_to_token_pool: ReqToTokenPool
    token_to_kv_pool: MHATokenToKVPool
    attn_backend: AttentionBackend | None = None
    # Extend only (CPU lists are authoritative; tensors mirror them on the device).
    extend_prefix_lens_cpu: list[int] = field(default_factory=list)
    extend_seq_lens_cpu: list[int] = field(default_factory=list)
    extend_start_loc: torch.Tensor | None = None  # [bs]
    extend_prefix_lens: torch.Tensor | None = None  # [bs]
    extend_seq_lens: torch.Tensor | None = None  # [bs]
    # Logprobs: for each request, where (relative to its extend start) input logprobs begin;
    # -1 means none. `extend_logprob_target_ids` holds, per request, the token whose logprob
    # each of those positions scores.
    return_logprob: bool = False
    extend_logprob_start_lens_cpu: list[int] = field(default_factory=list)
    extend_logprob_target_ids: list[list[int]] = field(default_factory=list)
    top_logprobs_nums: list[int] = field(default_factory=list)
    token_ids_logprobs: list[list[int] | None] = field(default_factory=list)
    # Positions whose logits are needed for sampling: last token of each request, [bs].
    sample_indices: torch.Tensor | None = None
    sampling_info: SamplingBatchInfo | None = None
    # Multimodal inputs (per request) for models that take them.
    mm_inputs: list[Any] | None = None
    # CUDA-graph replay pads the batch; the real size is kept here.
    real_batch_size: int = 0

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])


def compute_positions(prefix_lens: list[int], extend_lens: list[int], device: str) -> torch.Tensor:
    """Positions prefix .. prefix + extend - 1 for each request, concatenated."""
    if len(prefix_lens) == 1:
        return torch.arange(prefix_lens[0], prefix_lens[0] + extend_lens[0], dtype=torch.int64, device=device)
    parts = [torch.arange(p, p + e, dtype=torch.int64) for p, e in zip(prefix_lens, extend_lens)]
    return torch.cat(parts).to(device, non_blocking=True)


def start_locs(extend_lens: list[int]) -> list[int]:
    out, acc = [], 0
    for n in extend_lens:
        out.append(acc)
        acc += n
    return out
