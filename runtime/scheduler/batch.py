"""ScheduleBatch: the requests of one forward, and the KV allocation that prepares it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..model_executor.forward_batch import ForwardBatch, ForwardMode, compute_positions, start_locs
from ..sampling.sampling_batch_info import SamplingBatchInfo
from .req import Req

if TYPE_CHECKING:
    from ..mem_cache.kv_pool import MHATokenToKVPool, ReqToTokenPool, TokenToKVPoolAllocator
    from ..mem_cache.radix_cache import BasePrefixCache


class OutOfKVMemory(RuntimeError):
    pass


class ScheduleBatch:
    def __init__(self, reqs: list[Req], req_to_token_pool: ReqToTokenPool, allocator: TokenToKVPoolAllocator,
                 kv_pool: MHATokenToKVPool, tree_cache: BasePrefixCache, vocab_size: int, device: str) -> None:
        self.reqs = reqs
        self.req_to_token_pool = req_to_token_pool
        self.allocator = allocator
        self.kv_pool = kv_pool
        self.tree_cache = tree_cache
        self.vocab_size = vocab_size
        self.device = device
        self.forward_mode = ForwardMode.EXTEND
        self.forward_batch: ForwardBatch | None = None  # set by the scheduler after prepare_for_*
        # Decode reuses the sampling tensors while the batch keeps the same requests and none of them
        # needs per-step sampling state (penalty counts, min-new-tokens masks, grammar masks).
        self._sampling_reqs: list[Req] = []
        self._sampling_info: SamplingBatchInfo | None = None

    def __len__(self) -> int:
        return len(self.reqs)

    def is_empty(self) -> bool:
        return not self.reqs

    # ---- memory ------------------------------------------------------------------------------

    def alloc_token_slots(self, need: int) -> torch.Tensor:
        """`need` free KV slots, evicting unlocked cache leaves if necessary."""
        if self.allocator.available_size() < need:
            self.tree_cache.evict(need - self.allocator.available_size())
        out = self.allocator.alloc(need)
        if out is None:
            raise OutOfKVMemory(f"KV pool exhausted: need {need} slots, "
                                f"{self.allocator.available_size()} free")
        return out

    def check_decode_mem(self) -> bool:
        need = len(self.reqs)
        if self.allocator.available_size() < need:
            self.tree_cache.evict(need - self.allocator.available_size())
        return self.allocator.available_size() >= need

    # ---- extend ------------------------------------------------------------------------------

    def prepare_for_extend(self) -> ForwardBatch:
        """Allocate pool rows and KV slots for the new tokens; returns the forward's inputs."""
        self.forward_mode = ForwardMode.EXTEND
        reqs = self.reqs
        for req in reqs:
            if req.req_pool_idx is None:
                rows = self.req_to_token_pool.alloc(1)
                if rows is None:
                    raise OutOfKVMemory("no free request slot")
                req.req_pool_idx = rows[0]
        prefix_lens = [len(r.prefix_indices) for r in reqs]
        extend_lens = [r.extend_input_len for r in reqs]
        out_cache_loc = self.alloc_token_slots(sum(extend_lens))
        table = self.req_to_token_pool.req_to_token
        input_ids: list[int] = []
        offset = 0
        for req, prefix_len, ext in zip(reqs, prefix_lens, extend_lens):
            row = req.req_pool_idx
            if prefix_len > req.kv_committed_len or req.kv_committed_len == 0:
                table[row, :prefix_len] = req.prefix_indices.to(torch.int32)
            table[row, prefix_len:prefix_len + ext] = out_cache_loc[offset:offset + ext].to(torch.int32)
            offset += ext
            req.cached_tokens += max(0, prefix_len - req.already_computed)
            req.kv_committed_len = prefix_len + ext
            req.already_computed = max(req.already_computed, prefix_len + ext)
            input_ids.extend(req.fill_ids[prefix_len:prefix_len + ext])
        seq_lens = [p + e for p, e in zip(prefix_lens, extend_lens)]
        starts = start_locs(extend_lens)
        dev = self.device
        fb = ForwardBatch(
            forward_mode=ForwardMode.EXTEND,
            batch_size=len(reqs),
            input_ids=torch.tensor(input_ids, dtype=torch.int64).to(dev, non_blocking=True),
            positions=compute_positions(prefix_lens, extend_lens, dev),
            req_pool_indices=torch.tensor([r.req_pool_idx for r in reqs], dtype=torch.int64).to(dev, non_blocking=True),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32).to(dev, non_blocking=True),
            seq_lens_cpu=seq_lens,
            out_cache_loc=out_cache_loc,
            req_to_token_pool=self.req_to_token_pool,
            token_to_kv_pool=self.kv_pool,
            extend_prefix_lens_cpu=prefix_lens,
            extend_seq_lens_cpu=extend_lens,
            extend_start_loc=torch.tensor(starts, dtype=torch.int64).to(dev, non_blocking=True),
            extend_prefix_lens=torch.tensor(prefix_lens, dtype=torch.int32).to(dev, non_blocking=True),
            extend_seq_lens=torch.tensor(extend_lens, dtype=torch.int32).to(dev, non_blocking=True),
            sample_indices=torch.tensor([s + e - 1 for s, e in zip(starts, extend_lens)],
                                        dtype=torch.int64).to(dev, non_blocking=True),
        )
        self._set_logprob_inputs(fb, prefix_lens, extend_lens)
        fb.sampling_info = SamplingBatchInfo.from_reqs(reqs, self.vocab_size, dev)
        return fb

    def _set_logprob_inputs(self, fb: ForwardBatch, prefix_lens: list[int], extend_lens: list[int]) -> None:
        """Which positions of this extend score prompt tokens (see Req.max_prefix_len)."""
        fb.return_logprob = any(r.return_logprob for r in self.reqs)
        if not fb.return_logprob:
            return
        for req, prefix_len, ext in zip(self.reqs, prefix_lens, extend_lens):
            fb.top_logprobs_nums.append(req.top_logprobs_num if req.return_logprob else 0)
            fb.token_ids_logprobs.append(req.token_ids_logprob if req.return_logprob else None)
            if req.input_logprobs_done:
                fb.extend_logprob_start_lens_cpu.append(-1)
                fb.extend_logprob_target_ids.append([])
                continue
            prompt_len = len(req.origin_input_ids)
            # Position p scores prompt token p + 1; token 0 has no score.
            first = max(req.logprob_start_len - 1, 0, prefix_len)
            last = min(prompt_len - 1, prefix_len + ext)
            if req.logprob_start_len == 0 and prefix_len == 0:
                acc = req.logprobs
                acc.input_token_logprobs.append((None, req.origin_input_ids[0]))
                acc.input_top_logprobs.append(None)
                acc.input_token_ids_logprobs.append(None)
            if first < last:
                fb.extend_logprob_start_lens_cpu.append(first - prefix_len)
                fb.extend_logprob_target_ids.append(req.origin_input_ids[first + 1:last + 1])
            else:
                fb.extend_logprob_start_lens_cpu.append(-1)
                fb.extend_logprob_target_ids.append([])

    # ---- decode ------------------------------------------------------------------------------

    def prepare_for_decode(self) -> ForwardBatch:
        """One new slot per request for the token sampled last step."""
        self.forward_mode = ForwardMode.DECODE
        reqs = self.reqs
        locs = self.alloc_token_slots(len(reqs))
        positions = [r.kv_committed_len for r in reqs]
        seq_lens = [p + 1 for p in positions]
        # Under overlap scheduling the last token may still be on the device (the loop substitutes it).
        last_ids = [r.output_ids[-1] if r.output_ids else 0 for r in reqs]
        # One host-to-device copy for the four per-request index vectors (each copy costs ~10 us).
        dev = self.device
        host = torch.tensor([last_ids, positions, [r.req_pool_idx for r in reqs], seq_lens], dtype=torch.int64)
        packed = host.to(dev, non_blocking=True)
        rows = packed[2]
        self.req_to_token_pool.req_to_token[rows, packed[1]] = locs.to(torch.int32)
        for req in reqs:
            req.kv_committed_len += 1
        fb = ForwardBatch(
            forward_mode=ForwardMode.DECODE,
            batch_size=len(reqs),
            input_ids=packed[0],
            positions=packed[1],
            req_pool_indices=rows,
            seq_lens=packed[3].to(torch.int32),
            seq_lens_cpu=seq_lens,
            out_cache_loc=locs,
            req_to_token_pool=self.req_to_token_pool,
            token_to_kv_pool=self.kv_pool,
            return_logprob=any(r.return_logprob for r in reqs),
            top_logprobs_nums=[r.top_logprobs_num if r.return_logprob else 0 for r in reqs],
            token_ids_logprobs=[r.token_ids_logprob if r.return_logprob else None for r in reqs],
        )
        fb.sampling_info = self._decode_sampling_info(dev)
        return fb

    def _decode_sampling_info(self, dev: str) -> SamplingBatchInfo:
        reqs, cached = self.reqs, self._sampling_reqs
        if self._sampling_info is not None and len(reqs) == len(cached) and all(a is b for a, b in zip(reqs, cached)):
            return self._sampling_info
        info = SamplingBatchInfo.from_reqs(reqs, self.vocab_size, dev)
        static = info.output_counts is None and info.min_tokens_mask is None and info.grammars is None
        # The cache holds the requests themselves, so an identity match cannot be a recycled object.
        self._sampling_reqs, self._sampling_info = (list(reqs), info) if static else ([], None)
        return info

    # ---- membership --------------------------------------------------------------------------

    def filter_batch(self, keep: list[Req]) -> None:
        self.reqs = keep

    def merge_batch(self, other: ScheduleBatch) -> None:
        self.reqs = self.reqs + other.reqs
