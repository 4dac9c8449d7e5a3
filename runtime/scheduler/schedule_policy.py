"""Which waiting requests run next: queue ordering (LPM, FCFS, ...) and admission (PrefillAdder)."""

from __future__ import annotations

import random
from collections import defaultdict
from enum import Enum, auto
from typing import TYPE_CHECKING, Any

from .req import Req

if TYPE_CHECKING:
    from ..mem_cache.kv_pool import TokenToKVPoolAllocator
    from ..mem_cache.radix_cache import BasePrefixCache

# Future output of a running request is charged at most this many tokens when admitting others.
CLIP_MAX_NEW_TOKENS_ESTIMATION = 4096
# LPM costs a tree walk per waiting request each round; past this queue length it degrades to FCFS.
LPM_MAX_QUEUE = 128


class SchedulePolicy:
    """Orders the waiting queue in place. Cache-aware policies match every request against the tree
    (which also leaves `prefix_indices`/`last_node` set for admission)."""

    def __init__(self, policy: str, tree_cache: BasePrefixCache) -> None:
        self.policy = policy
        self.tree_cache = tree_cache

    def calc_priority(self, waiting_queue: list[Req]) -> bool:
        """Sort `waiting_queue`; returns True if prefixes were matched along the way."""
        policy = self.policy
        if policy in ("lpm", "dfs-weight") and len(waiting_queue) > LPM_MAX_QUEUE:
            policy = "fcfs"
        if policy == "fcfs":
            return False
        if policy == "random":
            random.shuffle(waiting_queue)
            return False
        if policy == "lof":
            waiting_queue.sort(key=lambda r: -(r.sampling_params.max_new_tokens or 0))
            return False
        for req in waiting_queue:
            req.init_next_round_input(self.tree_cache)
        if policy == "lpm":
            waiting_queue.sort(key=lambda r: -len(r.prefix_indices))
        else:  # dfs-weight: requests under the same deepest node run back to back, heaviest subtree first
            groups: dict[int, list[Req]] = defaultdict(list)
            for req in waiting_queue:
                groups[id(req.last_node)].append(req)
            ordered = sorted(groups.values(), key=lambda g: (-len(g), -len(g[0].prefix_indices)))
            waiting_queue[:] = [r for g in ordered for r in g]
        return True


class AddReqResult(Enum):
    CONTINUE = auto()  # admitted; try the next request
    NO_TOKEN = auto()  # the KV pool cannot hold it
    OTHER = auto()  # a budget other than memory is spent


class PrefillAdder:
    """Admits requests into one prefill batch under three budgets (see docs/structure.md):
    total KV tokens (with future output reserved at `new_token_ratio`), prefill input tokens, and the
    chunk size. At most one request is admitted truncated (the chunked request)."""

    def __init__(self, tree_cache: BasePrefixCache, allocator: TokenToKVPoolAllocator, running_reqs: list[Req],
                 new_token_ratio: float, max_prefill_tokens: int, chunked_prefill_size: int | None) -> None:
        self.tree_cache = tree_cache
        reserved = sum(_future_tokens(r) for r in running_reqs) * new_token_ratio
        self.rem_total_tokens = allocator.available_size() + tree_cache.evictable_size() - reserved
        self.rem_input_tokens = max_prefill_tokens
        self.rem_chunk_tokens = chunked_prefill_size
        self.new_token_ratio = new_token_ratio
        self.can_run_list: list[Req] = []
        self.new_chunked_req: Req | None = None

    def _lock(self, req: Req) -> None:
        before = self.tree_cache.evictable_size()
        self.tree_cache.inc_lock_ref(req.last_node)
        self.rem_total_tokens -= before - self.tree_cache.evictable_size()

    def _charge(self, extend_len: int, future: float) -> None:
        self.rem_total_tokens -= extend_len + future
        self.rem_input_tokens -= extend_len
        if self.rem_chunk_tokens is not None:
            self.rem_chunk_tokens -= extend_len

    def add_chunked_req(self, req: Req) -> None:
        """Continue a request whose prompt is being prefilled in chunks (its prefix is already locked)."""
        req.fill_ids = req.all_token_ids()
        req.extend_input_len = len(req.fill_ids) - len(req.prefix_indices)
        self._admit(req, locked=True)

    def add_one_req(self, req: Req) -> AddReqResult:
        future = min(req.sampling_params.max_new_tokens or 0, CLIP_MAX_NEW_TOKENS_ESTIMATION) * self.new_token_ratio
        if req.extend_input_len + future > self.rem_total_tokens:
            return AddReqResult.NO_TOKEN
        if req.extend_input_len > self.rem_input_tokens and self.can_run_list:
            return AddReqResult.OTHER
        if self.rem_chunk_tokens is not None and self.rem_chunk_tokens <= 0:
            return AddReqResult.OTHER
        return self._admit(req, locked=False)

    def _admit(self, req: Req, locked: bool) -> AddReqResult:
        if not locked:
            self._lock(req)
            if req.extend_input_len > self.rem_total_tokens:
                self.tree_cache.dec_lock_ref(req.last_node)
                return AddReqResult.NO_TOKEN
        if self.rem_chunk_tokens is None or req.extend_input_len <= self.rem_chunk_tokens:
            req.is_chunked = 0
            self.can_run_list.append(req)
            future = min(req.sampling_params.max_new_tokens or 0, CLIP_MAX_NEW_TOKENS_ESTIMATION)
            self._charge(req.extend_input_len, future * self.new_token_ratio)
            return AddReqResult.CONTINUE
        # Truncate to the chunk budget; no future output is charged until the prompt is done.
        chunk = self.rem_chunk_tokens
        req.extend_input_len = chunk
        req.fill_ids = req.fill_ids[: len(req.prefix_indices) + chunk]
        req.is_chunked += 1
        self.can_run_list.append(req)
        self.new_chunked_req = req
        self._charge(chunk, 0.0)
        return AddReqResult.OTHER


def _future_tokens(req: Req) -> int:
    max_new = req.sampling_params.max_new_tokens or 0
    return min(max(max_new - len(req.output_ids), 0), CLIP_MAX_NEW_TOKENS_ESTIMATION)


def estimate_ratio_after_retract(reqs: list[Any], retract_steps: int) -> float:
    """new_token_ratio after a retraction: what the survivors will really need, capped at 1."""
    total_max = sum(r.sampling_params.max_new_tokens or 0 for r in reqs)
    if total_max == 0:
        return 1.0
    generated = sum(len(r.output_ids) for r in reqs)
    return min(1.0, (generated + retract_steps * len(reqs)) / total_max)
