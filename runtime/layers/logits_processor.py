"""LogitsProcessor: hidden states -> next-token logits (last position of each request only), plus
prompt logprobs for the positions a request asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..distributed import get_tp_group, tensor_model_parallel_all_gather
from .cpu_linear import packed_linear
from .fused_decode import linear as fused_linear

if TYPE_CHECKING:
    from ..model_executor.forward_batch import ForwardBatch


@dataclass
class InputLogprobs:
    """Prompt logprobs of one request for the positions computed in this forward."""

    token_logprobs: list[float]
    top_logprobs: tuple[list[list[float]], list[list[int]]] | None = None
    token_ids_logprobs: list[list[float]] | None = None


@dataclass
class LogitsProcessorOutput:
    next_token_logits: torch.Tensor  # [bs, vocab] float32
    input_logprobs: list[InputLogprobs | None] = field(default_factory=list)
    hidden_states: torch.Tensor | None = None


_MM_OUT_DTYPE = [True]  # torch.mm(..., out_dtype=) exists (CUDA, torch >= 2.8)


def _project(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """hidden @ weight.T; on the GPU, half-precision models get fp32 logits straight from the fp32
    accumulator (rounding logits to bf16 alone moves a logprob by up to 0.03 at |logit| ~ 8)."""
    if hidden.is_cuda and hidden.dtype in (torch.float16, torch.bfloat16):
        one_row = fused_linear(hidden, weight, None, out_dtype=torch.float32)
        if one_row is not None:
            return one_row
        if _MM_OUT_DTYPE[0]:
            try:
                return torch.mm(hidden, weight.t(), out_dtype=torch.float32)
            except (TypeError, RuntimeError, NotImplementedError):
                _MM_OUT_DTYPE[0] = False
    packed = packed_linear(hidden, weight, None, weight)
    return packed if packed is not None else torch.matmul(hidden, weight.t())


class LogitsProcessor(nn.Module):
    def __init__(self, config: Any, logit_scale: float | None = None) -> None:
        super().__init__()
        self.vocab_size = config.vocab_size
        self.final_logit_softcapping = getattr(config, "final_logit_softcapping", None)
        self.logit_scale = logit_scale
        self.tp_size = get_tp_group().size

    def _logits(self, hidden: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
        weight: torch.Tensor = lm_head.weight  # type: ignore[assignment]
        logits = _project(hidden, weight)
        bias = getattr(lm_head, "bias", None)
        if bias is not None:
            logits = logits + bias
        if self.tp_size > 1:
            logits = tensor_model_parallel_all_gather(logits)
        logits = logits[:, : self.vocab_size].float()
        if self.logit_scale is not None:
            logits = logits * self.logit_scale
        if self.final_logit_softcapping:
            cap = self.final_logit_softcapping
            logits = torch.tanh(logits / cap) * cap
        return logits

    def forward(self, input_ids: torch.Tensor, hidden_states: torch.Tensor, lm_head: nn.Module,
                forward_batch: ForwardBatch) -> LogitsProcessorOutput:
        if forward_batch.forward_mode.is_decode():
            last = hidden_states
        else:
            assert forward_batch.sample_indices is not None
            last = hidden_states[forward_batch.sample_indices]
        out = LogitsProcessorOutput(next_token_logits=self._logits(last, lm_head))
        if forward_batch.forward_mode.is_extend() and forward_batch.return_logprob:
            out.input_logprobs = self._input_logprobs(hidden_states, lm_head, forward_batch)
        return out

    def _input_logprobs(self, hidden_states: torch.Tensor, lm_head: nn.Module,
                        forward_batch: ForwardBatch) -> list[InputLogprobs | None]:
        rows: list[int] = []
        targets_flat: list[int] = []
        spans: list[tuple[int, int] | None] = []
        start = 0
        for i, ext_len in enumerate(forward_batch.extend_seq_lens_cpu):
            rel = forward_batch.extend_logprob_start_lens_cpu[i]
            targets = forward_batch.extend_logprob_target_ids[i]
            if rel < 0 or not targets:
                spans.append(None)
            else:
                spans.append((len(rows), len(targets)))
                rows.extend(range(start + rel, start + rel + len(targets)))
                targets_flat.extend(targets)
            start += ext_len
        if not rows:
            return [None] * len(spans)
        index = torch.tensor(rows, dtype=torch.int64, device=hidden_states.device)
        logprobs = torch.log_softmax(self._logits(hidden_states[index], lm_head), dim=-1)
        all_targets = torch.tensor(targets_flat, dtype=torch.int64, device=logprobs.device)
        picked = logprobs.gather(1, all_targets.view(-1, 1)).squeeze(1).tolist()
        out: list[InputLogprobs | None] = []
        for i, span in enumerate(spans):
            if span is None:
                out.append(None)
                continue
            off, n = span
            item = InputLogprobs(token_logprobs=picked[off:off + n])
            k = forward_batch.top_logprobs_nums[i]
            if k > 0:
                vals, ids = logprobs[off:off + n].topk(k, dim=-1)
                item.top_logprobs = (vals.tolist(), ids.tolist())
            wanted = forward_batch.token_ids_logprobs[i]
            if wanted:
                item.token_ids_logprobs = logprobs[off:off + n][:, wanted].tolist()
            out.append(item)
        return out
