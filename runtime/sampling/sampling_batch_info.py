"""SamplingBatchInfo: the batch's sampling parameters as tensors, built once per step from its requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .sampling_params import TOP_K_ALL

if TYPE_CHECKING:
    from ..scheduler.req import Req


@dataclass
class SamplingBatchInfo:
    temperatures: torch.Tensor  # [bs, 1] float32
    top_ps: torch.Tensor  # [bs]
    top_ks: torch.Tensor  # [bs] int64
    min_ps: torch.Tensor  # [bs]
    is_all_greedy: bool
    greedy_rows: list[bool]
    need_top_p: bool
    need_top_k: bool
    need_min_p: bool
    vocab_size: int
    generators: list[torch.Generator | None] = field(default_factory=list)
    # Additive logit adjustments, applied in this order: bias, penalties, min-new-tokens mask.
    logit_bias: torch.Tensor | None = None  # [bs, vocab]
    frequency_penalties: torch.Tensor | None = None  # [bs, 1]
    presence_penalties: torch.Tensor | None = None  # [bs, 1]
    repetition_penalties: torch.Tensor | None = None  # [bs, 1]
    output_counts: torch.Tensor | None = None  # [bs, vocab] occurrences in the generated tokens
    seen_mask: torch.Tensor | None = None  # [bs, vocab] token occurs in prompt or output
    min_tokens_mask: torch.Tensor | None = None  # [bs, vocab] True = banned (EOS before min_new_tokens)
    # Grammar-constrained decoding: one matcher per row (None = unconstrained).
    grammars: list[Any] | None = None
    vocab_mask: torch.Tensor | None = None  # [bs, ceil(vocab / 32)] int32 bitmask, filled by the grammar backend

    @classmethod
    def from_reqs(cls, reqs: list[Req], vocab_size: int, device: str) -> SamplingBatchInfo:
        params = [r.sampling_params for r in reqs]
        greedy = [p.is_greedy for p in params]
        # One host-to-device copy for the four vectors (top-k values up to 2^24 are exact in fp32).
        packed = torch.tensor([[p.temperature for p in params], [p.top_p for p in params],
                               [p.min_p for p in params], [min(p.top_k, vocab_size) for p in params]],
                              dtype=torch.float32).to(device, non_blocking=True)
        info = cls(
            temperatures=packed[0].view(-1, 1),
            top_ps=packed[1],
            top_ks=packed[3].to(torch.int64),
            min_ps=packed[2],
            is_all_greedy=all(greedy),
            greedy_rows=greedy,
            need_top_p=any(p.top_p < 1.0 for p in params),
            need_top_k=any(p.top_k < TOP_K_ALL and not p.is_greedy for p in params),
            need_min_p=any(p.min_p > 0.0 for p in params),
            vocab_size=vocab_size,
            generators=[r.generator for r in reqs],
        )
        info._init_adjustments(reqs, device)
        if any(r.grammar is not None for r in reqs):
            info.grammars = [r.grammar for r in reqs]
        return info

    def _init_adjustments(self, reqs: list[Req], device: str) -> None:
        bs, vocab = len(reqs), self.vocab_size
        params = [r.sampling_params for r in reqs]
        if any(p.logit_bias for p in params):
            bias = torch.zeros(bs, vocab, dtype=torch.float32)
            for i, p in enumerate(params):
                for key, value in (p.logit_bias or {}).items():
                    bias[i, int(key)] += float(value)
            self.logit_bias = bias.to(device)
        if any(p.has_penalties for p in params):
            self.frequency_penalties = torch.tensor([p.frequency_penalty for p in params]).view(-1, 1).to(device)
            self.presence_penalties = torch.tensor([p.presence_penalty for p in params]).view(-1, 1).to(device)
            self.repetition_penalties = torch.tensor([p.repetition_penalty for p in params]).view(-1, 1).to(device)
            counts = torch.zeros(bs, vocab, dtype=torch.float32)
            seen = torch.zeros(bs, vocab, dtype=torch.bool)
            for i, r in enumerate(reqs):
                if r.output_ids:
                    out = torch.tensor(r.output_ids, dtype=torch.int64)
                    counts[i].index_add_(0, out, torch.ones(len(out)))
                if r.sampling_params.repetition_penalty != 1.0:
                    seen[i, torch.tensor(r.origin_input_ids, dtype=torch.int64)] = True
            seen |= counts > 0
            self.output_counts = counts.to(device)
            self.seen_mask = seen.to(device)
        banned = [(i, r.stop_ids_for_min_tokens()) for i, r in enumerate(reqs)]
        banned = [(i, ids) for i, ids in banned if ids]
        if banned:
            mask = torch.zeros(bs, vocab, dtype=torch.bool)
            for i, ids in banned:
                mask[i, [t for t in ids if 0 <= t < vocab]] = True
            self.min_tokens_mask = mask.to(device)

    def apply_adjustments(self, logits: torch.Tensor) -> torch.Tensor:
        """Return logits with bias, penalties and the min-new-tokens mask applied (a new tensor)."""
        if self.logit_bias is not None:
            logits = logits + self.logit_bias
        if self.output_counts is not None:
            assert self.seen_mask is not None and self.repetition_penalties is not None
            assert self.frequency_penalties is not None and self.presence_penalties is not None
            rep = torch.where(logits > 0, logits / self.repetition_penalties, logits * self.repetition_penalties)
            logits = torch.where(self.seen_mask, rep, logits)
            logits = logits - self.frequency_penalties * self.output_counts
            logits = logits - self.presence_penalties * (self.output_counts > 0).float()
        if self.min_tokens_mask is not None:
            logits = logits.masked_fill(self.min_tokens_mask, float("-inf"))
        return logits
