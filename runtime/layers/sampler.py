"""Sampler: logits -> next token ids for a whole batch, and the output logprobs asked for."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..sampling.sampling_batch_info import SamplingBatchInfo


@dataclass
class OutputLogprobs:
    """Logprobs of the sampled tokens (from the raw logits), per request that asked."""

    token_logprobs: list[float | None]
    top_logprobs: list[tuple[list[float], list[int]] | None]
    token_ids_logprobs: list[list[float] | None]


def apply_token_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """Set logits of tokens whose bit is 0 in `bitmask` ([bs, ceil(V/32)] int32) to -inf."""
    vocab = logits.shape[-1]
    bits = torch.arange(32, device=bitmask.device, dtype=torch.int32)
    allowed = ((bitmask.unsqueeze(-1) >> bits) & 1).bool().flatten(1)[:, :vocab]
    return logits.masked_fill(~allowed, float("-inf"))


class Sampler(nn.Module):
    def forward(self, logits: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
        """logits: [bs, vocab] float32 (not modified) -> token ids [bs] int64."""
        logits = info.apply_adjustments(logits)
        if info.vocab_mask is not None:
            logits = apply_token_bitmask(logits, info.vocab_mask.to(logits.device))
        if info.is_all_greedy:
            return torch.argmax(logits, dim=-1)
        greedy_ids = torch.argmax(logits, dim=-1)
        probs = torch.softmax(logits / info.temperatures, dim=-1)
        probs = _filter_probs(probs, info)
        sampled = _multinomial(probs, info.generators)
        if any(info.greedy_rows):
            rows = torch.tensor(info.greedy_rows, device=logits.device)
            sampled = torch.where(rows, greedy_ids, sampled)
        return sampled


def _filter_probs(probs: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
    """Top-k, top-p and min-p over the original distribution, then renormalised."""
    if info.need_min_p:
        max_p = probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < info.min_ps.view(-1, 1) * max_p, 0.0)
    if (info.need_top_k or info.need_top_p) and probs.is_cuda:
        # Exact thresholds by bisection in one Triton kernel per row: no vocabulary sort.
        from .attention.triton_ops.sampling import top_k_top_p_threshold

        thr = top_k_top_p_threshold(probs.float().contiguous(), info.top_ks, info.top_ps)
        probs = probs.masked_fill(probs < thr.view(-1, 1), 0.0)
    elif info.need_top_k or info.need_top_p:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        if info.need_top_k:
            ranks = torch.arange(sorted_p.shape[-1], device=probs.device).view(1, -1)
            sorted_p = sorted_p.masked_fill(ranks >= info.top_ks.view(-1, 1), 0.0)
        if info.need_top_p:
            cum = sorted_p.cumsum(dim=-1)
            # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            sorted_p = sorted_p.masked_fill((cum - sorted_p) > info.top_ps.view(-1, 1), 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return probs / probs.sum(dim=-1, keepdim=True).clamp_min(1e-30)


def _multinomial(probs: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
    if not any(g is not None for g in generators):
        return torch.multinomial(probs, 1).view(-1)
    if probs.device.type != "cpu":
        return _seeded_sample_on_device(probs, generators)
    out = torch.empty(probs.shape[0], dtype=torch.int64, device=probs.device)
    for i, gen in enumerate(generators):
        out[i] = torch.multinomial(probs[i], 1, generator=gen).item() if gen is not None \
            else torch.multinomial(probs[i], 1).item()
    return out


def _seeded_sample_on_device(probs: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
    """Inverse-CDF sampling with one uniform per row drawn from the row's (CPU) generator, so a seeded
    request gives the same tokens whatever the batch; unseeded rows use the global generator."""
    u = torch.tensor([torch.rand(1, generator=g).item() if g is not None else torch.rand(1).item()
                      for g in generators], dtype=torch.float32).to(probs.device, non_blocking=True)
    cdf = probs.float().cumsum(dim=-1)
    ids = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).view(-1)
    return ids.clamp_(max=probs.shape[-1] - 1)


def compute_output_logprobs(logits: torch.Tensor, next_ids: torch.Tensor, want: list[bool], top_nums: list[int],
                            token_ids: list[list[int] | None]) -> OutputLogprobs:
    """Logprobs of `next_ids` under the raw `logits` for the rows in `want`."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    picked = logprobs.gather(1, next_ids.view(-1, 1)).squeeze(1).tolist()
    max_k = max(top_nums) if top_nums else 0
    top_vals = top_ids = None
    if max_k > 0:
        tv, ti = logprobs.topk(max_k, dim=-1)
        top_vals, top_ids = tv.tolist(), ti.tolist()
    out = OutputLogprobs([], [], [])
    for i, w in enumerate(want):
        if not w:
            out.token_logprobs.append(None)
            out.top_logprobs.append(None)
            out.token_ids_logprobs.append(None)
            continue
        out.token_logprobs.append(picked[i])
        k = top_nums[i]
        out.top_logprobs.append((top_vals[i][:k], top_ids[i][:k]) if k > 0 and top_vals and top_ids else None)
        ids = token_ids[i]
        out.token_ids_logprobs.append(logprobs[i, ids].tolist() if ids else None)
    return out
