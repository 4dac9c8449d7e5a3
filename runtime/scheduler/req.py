"""Req: one sequence being generated, as the scheduler sees it.

Token bookkeeping of a request with prompt P and outputs o1..om:

    all tokens      [ p1 .. pP | o1 .. om ]
    KV computed     [ p1 .. pP | o1 .. o(m-1) ]   kv_committed_len = P + m - 1
    prefix_indices  the leading slots taken from the radix cache (locked through last_node)
    fill_ids        the tokens the next extend must have in KV (all tokens, or up to a chunk end)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..sampling.sampling_params import SamplingParams


class FinishReason:
    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class FinishMatchedToken(FinishReason):
    matched: int

    def to_json(self) -> dict[str, Any]:
        return {"type": "stop", "matched": self.matched}


@dataclass
class FinishMatchedStr(FinishReason):
    matched: str

    def to_json(self) -> dict[str, Any]:
        return {"type": "stop", "matched": self.matched}


@dataclass
class FinishLength(FinishReason):
    length: int

    def to_json(self) -> dict[str, Any]:
        return {"type": "length", "length": self.length}


@dataclass
class FinishAbort(FinishReason):
    message: str = "Aborted"
    status_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "abort", "message": self.message}
        if self.status_code is not None:
            out["status_code"] = self.status_code
        return out


@dataclass
class LogprobAccumulator:
    """Logprob values not yet sent to the front (flushed by the scheduler's output step)."""

    input_token_logprobs: list[tuple[float | None, int]] = field(default_factory=list)
    input_top_logprobs: list[tuple[list[float], list[int]] | None] = field(default_factory=list)
    input_token_ids_logprobs: list[list[float] | None] = field(default_factory=list)
    output_token_logprobs: list[tuple[float, int]] = field(default_factory=list)
    output_top_logprobs: list[tuple[list[float], list[int]] | None] = field(default_factory=list)
    output_token_ids_logprobs: list[list[float] | None] = field(default_factory=list)
    input_sum: float = 0.0
    input_count: int = 0


class Req:
    def __init__(self, rid: str, origin_input_text: str | None, origin_input_ids: list[int],
                 sampling_params: SamplingParams, *, return_logprob: bool = False, logprob_start_len: int = -1,
                 top_logprobs_num: int = 0, token_ids_logprob: list[int] | None = None,
                 stream: bool = False, eos_token_ids: list[int] | None = None) -> None:
        self.rid = rid
        self.origin_input_text = origin_input_text
        self.origin_input_ids = origin_input_ids
        self.sampling_params = sampling_params
        self.return_logprob = return_logprob
        self.logprob_start_len = logprob_start_len
        self.top_logprobs_num = top_logprobs_num
        self.token_ids_logprob = token_ids_logprob
        self.stream = stream
        self.output_ids: list[int] = []
        self.fill_ids: list[int] = []
        self.stop_token_ids: set[int] = set(sampling_params.stop_token_ids or [])
        if not sampling_params.ignore_eos:
            self.stop_token_ids.update(eos_token_ids or [])
        # KV state
        self.req_pool_idx: int | None = None
        self.prefix_indices: torch.Tensor = torch.empty(0, dtype=torch.int64)
        self.last_node: Any = None
        self.extend_input_len = 0
        self.kv_committed_len = 0
        self.is_chunked = 0  # > 0 while the prompt is being prefilled in chunks
        # Accounting
        self.cached_tokens = 0
        self.already_computed = 0
        self.finished_reason: FinishReason | None = None
        self.to_abort: FinishAbort | None = None
        self.num_retractions = 0
        self.sent_output_len = 0
        self.steps_since_stream = 0
        self.logprobs = LogprobAccumulator()
        self.input_logprobs_done = not return_logprob or logprob_start_len < 0
        self.generator: torch.Generator | None = None
        if sampling_params.sampling_seed is not None:
            self.generator = torch.Generator().manual_seed(sampling_params.sampling_seed)
        self.grammar: Any = None

    # ---- tokens ------------------------------------------------------------------------------

    def all_token_ids(self) -> list[int]:
        return self.origin_input_ids + self.output_ids

    def seqlen(self) -> int:
        return len(self.origin_input_ids) + len(self.output_ids)

    def finished(self) -> bool:
        return self.finished_reason is not None

    def max_prefix_len(self) -> int:
        """How much of the sequence may come from the cache: at least one token must be computed to get
        logits, and prompt positions that need logprobs must be computed too."""
        limit = len(self.fill_ids) - 1
        if not self.input_logprobs_done:
            limit = min(limit, max(self.logprob_start_len - 1, 0))
        return max(limit, 0)

    def init_next_round_input(self, tree_cache: Any) -> None:
        """Recompute what the next extend needs: fill_ids and the cached prefix (sets last_node)."""
        self.fill_ids = self.all_token_ids()
        if tree_cache is not None:
            indices, node = tree_cache.match_prefix(self.fill_ids[: self.max_prefix_len()])
            self.prefix_indices, self.last_node = indices, node
        self.extend_input_len = len(self.fill_ids) - len(self.prefix_indices)

    def release_kv_refs(self) -> None:
        self.req_pool_idx = None
        self.prefix_indices = torch.empty(0, dtype=torch.int64)
        self.last_node = None
        self.kv_committed_len = 0

    # ---- finishing ---------------------------------------------------------------------------

    def stop_ids_for_min_tokens(self) -> set[int]:
        """Stop ids the sampler must avoid while fewer than min_new_tokens were generated."""
        if len(self.output_ids) < self.sampling_params.min_new_tokens:
            return self.stop_token_ids
        return set()

    def check_finished(self, tokenizer: Any) -> None:
        if self.finished():
            return
        if self.to_abort is not None:
            self.finished_reason = self.to_abort
            return
        params = self.sampling_params
        if params.max_new_tokens is not None and len(self.output_ids) >= params.max_new_tokens:
            self.finished_reason = FinishLength(length=params.max_new_tokens)
            return
        if not self.output_ids:
            return
        last = self.output_ids[-1]
        if last in self.stop_token_ids and len(self.output_ids) > params.min_new_tokens - 1:
            self.finished_reason = FinishMatchedToken(matched=last)
            return
        if params.stop_strs and tokenizer is not None:
            tail = tokenizer.decode(self.output_ids[-(params.stop_str_max_len + 1):],
                                    skip_special_tokens=params.skip_special_tokens)
            for stop in params.stop_strs:
                if stop in tail:
                    self.finished_reason = FinishMatchedStr(matched=stop)
                    return

    def reset_for_retract(self) -> None:
        """Back to the waiting queue: outputs are kept, KV is re-found through the cache."""
        self.num_retractions += 1
        self.prefix_indices = torch.empty(0, dtype=torch.int64)
        self.last_node = None
        self.extend_input_len = 0
        self.is_chunked = 0

    def __repr__(self) -> str:
        return f"Req(rid={self.rid}, input_len={len(self.origin_input_ids)}, output_len={len(self.output_ids)})"
