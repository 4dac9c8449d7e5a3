"""The scheduler process: continuous batching over one model replica.

    loop: recv_requests -> process_input_requests -> get_next_batch_to_run
          -> run_batch -> process_batch_result

Prefill has priority over decode; a prefill batch is built by the PrefillAdder under the memory,
input and chunk budgets; decode runs the whole running batch one token further, retracting
requests to the waiting queue when the KV pool runs out.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch
import zmq

from ..constrained import create_grammar_backend
from ..managers.io_struct import (
    AbortReq,
    BatchTokenIDOut,
    FlushCacheOutput,
    FlushCacheReq,
    GetInternalStateReq,
    InternalState,
    ProfileReq,
    TokenizedGenerateReqInput,
)
from ..mem_cache.radix_cache import BasePrefixCache, ChunkCache, RadixCache
from ..model_executor.forward_batch import ForwardBatch
from ..model_executor.model_runner import ModelRunner
from ..model_loader.model_config import ModelConfig
from ..model_loader.tokenizer import load_tokenizer
from ..server_args import PortArgs, ServerArgs
from .batch import ScheduleBatch
from .output import collect_outputs
from .profiler import StepProfiler
from .req import FinishAbort, FinishLength, FinishMatchedToken, Req
from .schedule_policy import AddReqResult, PrefillAdder, SchedulePolicy, estimate_ratio_after_retract

logger = logging.getLogger(__name__)

INIT_NEW_TOKEN_RATIO = 0.7
MIN_NEW_TOKEN_RATIO_FACTOR = 0.14
NEW_TOKEN_RATIO_DECAY_STEPS = 600
RETRACT_DECODE_STEPS = 20


@dataclass
class GenerationBatchResult:
    next_token_ids: list[int]
    forward_batch: ForwardBatch
    logits_output: Any
    output_logprobs: Any = None


class Scheduler:
    def __init__(self, server_args: ServerArgs, port_args: PortArgs, model_dir: str, tp_rank: int = 0) -> None:
        self.server_args = server_args
        self.tp_rank = tp_rank
        self._init_ipc(port_args)
        self._init_model(model_dir)
        self._init_cache()
        self._init_state()

    # ---- initialisation ----------------------------------------------------------------------

    def _init_ipc(self, port_args: PortArgs) -> None:
        ctx = zmq.Context(2)
        self.recv_from_tokenizer = ctx.socket(zmq.PULL)
        self.recv_from_tokenizer.bind(port_args.scheduler_input_ipc)
        self.send_to_tokenizer = ctx.socket(zmq.PUSH)
        self.send_to_tokenizer.connect(port_args.tokenizer_input_ipc)

    def _init_model(self, model_dir: str) -> None:
        args = self.server_args
        self.device = args.resolved_device()
        self.model_config = ModelConfig.from_dir(
            model_dir, dtype=args.dtype, device=self.device, context_length=args.context_length,
            trust_remote_code=args.trust_remote_code, overrides=args.model_override_args(),
            is_embedding=args.is_embedding)
        # The tokenizer (only for stop strings and grammars) loads in a thread while the weights load.
        loaded: dict[str, Any] = {}
        loader = threading.Thread(target=lambda: loaded.update(tok=None if args.skip_tokenizer_init else load_tokenizer(
            args.tokenizer_path or model_dir, args.trust_remote_code)), daemon=True)
        loader.start()
        self.model_runner = ModelRunner(args, self.model_config, self.device, self.tp_rank)
        loader.join()
        if "tok" not in loaded:
            raise RuntimeError(f"Could not load the tokenizer from {args.tokenizer_path or model_dir}")
        self.tokenizer = loaded["tok"]

    def _init_cache(self) -> None:
        runner, args = self.model_runner, self.server_args
        self.req_to_token_pool = runner.req_to_token_pool
        self.allocator = runner.allocator
        cache_cls = ChunkCache if args.disable_radix_cache else RadixCache
        self.tree_cache: BasePrefixCache = cache_cls(self.req_to_token_pool, self.allocator)
        self.max_total_num_tokens = runner.sizes.max_total_num_tokens
        self.max_running_requests = runner.sizes.max_running_requests
        default_chunk = 2048 if self.device == "cpu" else 8192
        chunk = args.chunked_prefill_size if args.chunked_prefill_size is not None else default_chunk
        self.chunked_prefill_size: int | None = chunk if chunk > 0 else None
        self.max_prefill_tokens = max(args.max_prefill_tokens, self.model_config.context_len) \
            if self.chunked_prefill_size is None else args.max_prefill_tokens
        self.policy = SchedulePolicy(args.schedule_policy_effective(), self.tree_cache)

    def _init_state(self) -> None:
        self.waiting_queue: list[Req] = []
        self.running_batch: ScheduleBatch | None = None
        self.last_batch: ScheduleBatch | None = None
        self.chunked_req: Req | None = None
        self.init_new_token_ratio = INIT_NEW_TOKEN_RATIO * self.server_args.schedule_conservativeness
        self.min_new_token_ratio = self.init_new_token_ratio * MIN_NEW_TOKEN_RATIO_FACTOR
        self.new_token_ratio = self.init_new_token_ratio
        self.new_token_ratio_decay = (self.init_new_token_ratio - self.min_new_token_ratio) / NEW_TOKEN_RATIO_DECAY_STEPS
        self.stats = SchedulerStats()
        self.profiler = StepProfiler(self.device, self.tp_rank)
        self.grammar_backend = create_grammar_backend(self.server_args, self.tokenizer, self.model_config.vocab_size,
                                                      self.model_config.eos_token_ids)
        self.grammar_queue: list[Req] = []  # constrained requests whose grammar is still compiling

    def ready_info(self) -> dict[str, Any]:
        cfg = self.model_config
        return {
            "max_total_num_tokens": self.max_total_num_tokens,
            "max_running_requests": self.max_running_requests,
            "context_len": cfg.context_len,
            "vocab_size": cfg.vocab_size,
            "eos_token_ids": cfg.eos_token_ids,
            "is_generation": cfg.is_generation,
            "architectures": cfg.architectures,
            "dtype": str(cfg.dtype).replace("torch.", ""),
            "device": self.device,
            "attention_backend": self.model_runner.attention_backend_name,
            "chunked_prefill_size": self.chunked_prefill_size or -1,
            "max_prefill_tokens": self.max_prefill_tokens,
            "generation_defaults": cfg.generation_defaults,
            "weight_load_time": round(self.model_runner.weight_load_time, 3),
        }

    # ---- the loop ----------------------------------------------------------------------------

    def event_loop(self) -> None:
        while True:
            recv_reqs = self.recv_requests()
            self.process_input_requests(recv_reqs)
            batch = self.get_next_batch_to_run()
            if batch is not None:
                result = self.run_batch(batch)
                self.process_batch_result(batch, result)
                self.profiler.on_step()
            else:
                self.on_idle()
            self.last_batch = batch

    def recv_requests(self) -> list[Any]:
        """Drain the socket without blocking; when idle, wait (bounded) for the next message."""
        if self._is_idle():
            self.recv_from_tokenizer.poll(timeout=1000)
        out = []
        while True:
            try:
                out.append(self.recv_from_tokenizer.recv_pyobj(zmq.NOBLOCK))
            except zmq.Again:
                return out

    def process_input_requests(self, recv_reqs: list[Any]) -> None:
        for msg in recv_reqs:
            if isinstance(msg, TokenizedGenerateReqInput):
                self.handle_generate_request(msg)
            elif isinstance(msg, AbortReq):
                self.abort_request(msg.rid)
            elif isinstance(msg, FlushCacheReq):
                self.send_to_tokenizer.send_pyobj(self.flush_cache())
            elif isinstance(msg, GetInternalStateReq):
                self.send_to_tokenizer.send_pyobj(InternalState(self.internal_state(msg)))
            elif isinstance(msg, ProfileReq):
                self.send_to_tokenizer.send_pyobj(self.profiler.handle(msg))
            else:
                logger.error("Unknown message %r", type(msg))
        if self.grammar_queue:
            self._poll_grammar_queue()

    def get_next_batch_to_run(self) -> ScheduleBatch | None:
        last = self.last_batch
        if last is not None and last.forward_mode.is_extend():
            keep = [r for r in last.reqs if not r.finished() and r.is_chunked == 0]
            last.filter_batch(keep)
            if keep:
                if self.running_batch is None:
                    self.running_batch = last
                else:
                    self.running_batch.merge_batch(last)
        new_batch = self.get_new_batch_prefill()
        if new_batch is not None:
            return new_batch
        self.running_batch = self.update_running_batch(self.running_batch)
        return self.running_batch

    def run_batch(self, batch: ScheduleBatch) -> GenerationBatchResult:
        fb = batch.forward_batch
        assert fb is not None, "prepare_for_extend/decode sets the forward batch"
        logits_output = self.model_runner.forward(fb)
        if self.grammar_backend is not None and fb.sampling_info is not None and fb.sampling_info.grammars:
            self.grammar_backend.fill_vocab_mask(fb.sampling_info)
        next_ids = self.model_runner.sample(logits_output, fb)
        result = GenerationBatchResult(next_ids.tolist(), fb, logits_output)
        want = [r.return_logprob for r in batch.reqs]
        if any(want):
            result.output_logprobs = self.model_runner.output_logprobs(logits_output, next_ids, fb, want)
        return result

    def process_batch_result(self, batch: ScheduleBatch, result: GenerationBatchResult) -> None:
        if batch.forward_mode.is_extend():
            self._process_prefill_result(batch, result)
        else:
            self._process_decode_result(batch, result)
        self._send(collect_outputs(batch.reqs, self.server_args.stream_interval))

    def on_idle(self) -> None:
        """Nothing to run: check the accounting invariants and relax admission again."""
        self.new_token_ratio = self.init_new_token_ratio
        if self.running_batch is None and not self.waiting_queue and self.chunked_req is None:
            free = self.allocator.available_size() + self.tree_cache.evictable_size()
            if free != self.max_total_num_tokens or self.tree_cache.protected_size() != 0:
                logger.error("KV accounting drift: free+evictable=%d total=%d protected=%d", free,
                             self.max_total_num_tokens, self.tree_cache.protected_size())

    # ---- requests ----------------------------------------------------------------------------

    def handle_generate_request(self, recv: TokenizedGenerateReqInput) -> None:
        req = Req(recv.rid, recv.input_text, recv.input_ids, recv.sampling_params,
                  return_logprob=recv.return_logprob, logprob_start_len=recv.logprob_start_len,
                  top_logprobs_num=recv.top_logprobs_num, token_ids_logprob=recv.token_ids_logprob,
                  stream=recv.stream, eos_token_ids=self.model_config.eos_token_ids)
        context_len = self.model_config.context_len
        error = None
        if len(req.origin_input_ids) >= context_len:
            error = (f"The input ({len(req.origin_input_ids)} tokens) is longer than the model's context "
                     f"length ({context_len} tokens).")
        elif req.return_logprob and req.logprob_start_len >= len(req.origin_input_ids):
            error = (f"logprob_start_len, ({req.logprob_start_len}) is higher than the number of input tokens "
                     f"({len(req.origin_input_ids)}). Request with a lower logprob_start_len.")
        elif len(req.origin_input_ids) + 1 > self.max_total_num_tokens:
            error = (f"The input ({len(req.origin_input_ids)} tokens) does not fit in the KV cache "
                     f"({self.max_total_num_tokens} tokens).")
        elif recv.sampling_params.has_grammar:
            error = self._init_grammar(req)
        if error is not None:
            req.finished_reason = FinishAbort(message=error, status_code=400)
            self._send(collect_outputs([req], 1))
            return
        params = req.sampling_params
        limit = min(context_len - len(req.origin_input_ids), self.max_total_num_tokens - len(req.origin_input_ids))
        params.max_new_tokens = limit if params.max_new_tokens is None else min(params.max_new_tokens, limit)
        (self.grammar_queue if req.grammar is not None and not req.grammar.ready else self.waiting_queue).append(req)
        self.stats.num_requests += 1

    def _init_grammar(self, req: Req) -> str | None:
        if self.grammar_backend is None:
            return "Constrained decoding (regex/json_schema/ebnf) is not available on this server."
        return self.grammar_backend.attach(req)

    def _poll_grammar_queue(self) -> None:
        """Admit requests whose grammar compiled; abort those whose grammar is invalid."""
        assert self.grammar_backend is not None
        idle = self.running_batch is None and not self.waiting_queue and self.chunked_req is None
        # With nothing else to run, wait briefly for a compile instead of spinning the loop.
        ready, failed, self.grammar_queue = self.grammar_backend.poll(self.grammar_queue, 0.02 if idle else 0.0)
        self.waiting_queue.extend(ready)
        for req in failed:
            req.finished_reason = FinishAbort(message=req.grammar.error, status_code=400)
            self._send(collect_outputs([req], 1))

    def abort_request(self, rid: str) -> None:
        """Abort one request (or all with rid ""): waiting ones at once, running ones after this step."""
        for req in [*self.waiting_queue, *self.grammar_queue]:
            if rid in ("", req.rid):
                queue = self.waiting_queue if req in self.waiting_queue else self.grammar_queue
                queue.remove(req)
                req.finished_reason = FinishAbort()
                self._release(req)
                self._send(collect_outputs([req], 1))
        running = self.running_batch.reqs if self.running_batch else []
        last = self.last_batch.reqs if self.last_batch else []
        for req in [*running, *last, *([self.chunked_req] if self.chunked_req else [])]:
            if rid in ("", req.rid) and not req.finished():
                req.to_abort = FinishAbort()

    def _release(self, req: Req) -> None:
        """Free a request's KV if it holds any (aborted while waiting after a retraction, or chunked)."""
        if req.req_pool_idx is not None:
            self.tree_cache.cache_finished_req(req)
        elif req.last_node is not None:
            req.last_node = None

    def flush_cache(self) -> FlushCacheOutput:
        busy = self.waiting_queue or (self.running_batch and not self.running_batch.is_empty()) or self.chunked_req
        if busy:
            return FlushCacheOutput(False, "Cache not flushed because there are pending requests.")
        self.tree_cache.reset()
        self.req_to_token_pool.clear()
        self.allocator.clear()
        return FlushCacheOutput(True, "Cache flushed.")

    # ---- building batches --------------------------------------------------------------------

    def get_new_batch_prefill(self) -> ScheduleBatch | None:
        running = len(self.running_batch.reqs) if self.running_batch else 0
        if self.chunked_req is None and (not self.waiting_queue or running >= self.max_running_requests):
            return None
        matched = self.policy.calc_priority(self.waiting_queue)
        adder = PrefillAdder(self.tree_cache, self.allocator, self.running_batch.reqs if self.running_batch else [],
                             self.new_token_ratio, self.max_prefill_tokens, self.chunked_prefill_size)
        if self.chunked_req is not None:
            adder.add_chunked_req(self.chunked_req)
            running += 1
        for req in self.waiting_queue:
            if running + len(adder.can_run_list) >= self.max_running_requests:
                break
            if not matched:
                req.init_next_round_input(self.tree_cache)
            if adder.add_one_req(req) != AddReqResult.CONTINUE:
                break
        if not adder.can_run_list:
            return None
        admitted = {id(r) for r in adder.can_run_list}
        self.waiting_queue = [r for r in self.waiting_queue if id(r) not in admitted]
        self.chunked_req = adder.new_chunked_req
        for req in adder.can_run_list:
            if req.is_chunked <= 1:
                self.stats.record_admission(len(req.origin_input_ids) if req.num_retractions == 0 else 0,
                                            len(req.prefix_indices) if req.num_retractions == 0 else 0)
        batch = self._new_batch(adder.can_run_list)
        batch.forward_batch = batch.prepare_for_extend()
        return batch

    def update_running_batch(self, batch: ScheduleBatch | None) -> ScheduleBatch | None:
        if batch is None:
            return None
        batch.filter_batch([r for r in batch.reqs if not r.finished()])
        if batch.is_empty():
            return None
        if not batch.check_decode_mem():
            self._retract(batch)
            if batch.is_empty():
                return None
        else:
            self.new_token_ratio = max(self.new_token_ratio - self.new_token_ratio_decay, self.min_new_token_ratio)
        batch.forward_batch = batch.prepare_for_decode()
        return batch

    def _retract(self, batch: ScheduleBatch) -> None:
        """Send the requests least likely to finish soon back to the waiting queue, keeping their outputs."""
        reqs = sorted(batch.reqs, key=lambda r: (len(r.output_ids), -len(r.origin_input_ids)), reverse=True)
        retracted: list[Req] = []

        def enough() -> bool:
            need = sum(min(RETRACT_DECODE_STEPS, (r.sampling_params.max_new_tokens or 0) - len(r.output_ids))
                       for r in reqs)
            return self.allocator.available_size() + self.tree_cache.evictable_size() >= max(need, len(reqs))

        while reqs and not enough():
            req = reqs.pop()
            self.tree_cache.cache_finished_req(req)
            if not reqs:  # alone and still too big: it can never run
                req.finished_reason = FinishAbort(message="The request does not fit in the KV cache.",
                                                  status_code=400)
                self._send(collect_outputs([req], 1))
                break
            req.reset_for_retract()
            retracted.append(req)
        self.waiting_queue = retracted + self.waiting_queue
        self.stats.num_retractions += len(retracted)
        batch.filter_batch([r for r in batch.reqs if r in reqs])
        self.tree_cache.evict(len(batch.reqs))
        self.new_token_ratio = estimate_ratio_after_retract(batch.reqs, RETRACT_DECODE_STEPS)
        if retracted:
            logger.info("KV pool full: retracted %d request(s); new_token_ratio=%.3f", len(retracted),
                        self.new_token_ratio)

    def _new_batch(self, reqs: list[Req]) -> ScheduleBatch:
        runner = self.model_runner
        return ScheduleBatch(reqs, self.req_to_token_pool, self.allocator, runner.kv_pool, self.tree_cache,
                             self.model_config.vocab_size, self.device)

    # ---- results -----------------------------------------------------------------------------

    def _process_prefill_result(self, batch: ScheduleBatch, result: GenerationBatchResult) -> None:
        lp_in = result.logits_output.input_logprobs
        for i, req in enumerate(batch.reqs):
            if lp_in:
                _append_input_logprobs(req, lp_in[i])
            if req.is_chunked > 0:
                if req.to_abort is not None:
                    self._finish(req, req.to_abort)
                    self.chunked_req = None
                else:
                    self.tree_cache.cache_unfinished_req(req)
                continue
            req.input_logprobs_done = True
            if req.to_abort is not None:
                self._finish(req, req.to_abort)
                continue
            if req.sampling_params.max_new_tokens == 0:
                self._finish(req, FinishLength(length=0))
                continue
            self._append_token(req, i, result)
            if req.finished():
                self.tree_cache.cache_finished_req(req)
            else:
                self.tree_cache.cache_unfinished_req(req)
        self.stats.prefill_tokens += sum(r.extend_input_len for r in batch.reqs)

    def _process_decode_result(self, batch: ScheduleBatch, result: GenerationBatchResult) -> None:
        for i, req in enumerate(batch.reqs):
            if req.to_abort is not None:
                self._finish(req, req.to_abort)
                continue
            self._append_token(req, i, result)
            if req.finished():
                self.tree_cache.cache_finished_req(req)
        self.stats.record_decode(len(batch.reqs))

    def _append_token(self, req: Req, i: int, result: GenerationBatchResult) -> None:
        token = result.next_token_ids[i]
        req.output_ids.append(token)
        if result.output_logprobs is not None and req.return_logprob:
            lp = result.output_logprobs
            req.logprobs.output_token_logprobs.append((lp.token_logprobs[i], token))
            req.logprobs.output_top_logprobs.append(lp.top_logprobs[i])
            req.logprobs.output_token_ids_logprobs.append(lp.token_ids_logprobs[i])
        if req.grammar is not None:
            req.grammar.accept_token(token)
        req.check_finished(self.tokenizer)
        if not req.finished() and req.grammar is not None and req.grammar.is_terminated():
            req.finished_reason = FinishMatchedToken(matched=token)  # the grammar accepted its stop token
        if req.finished():
            self.stats.num_finished += 1

    def _finish(self, req: Req, reason: Any) -> None:
        req.finished_reason = reason
        self.tree_cache.cache_finished_req(req)
        self.stats.num_finished += 1

    def _send(self, out: BatchTokenIDOut) -> None:
        if out.rids and self.tp_rank == 0:
            self.send_to_tokenizer.send_pyobj(out)

    # ---- observability -----------------------------------------------------------------------

    def _is_idle(self) -> bool:
        return not self.waiting_queue and self.running_batch is None and self.chunked_req is None \
            and not self.grammar_queue \
            and (self.last_batch is None or self.last_batch.is_empty())

    def internal_state(self, req: GetInternalStateReq) -> dict[str, Any]:
        # Requests that finished but still sit in the running batch hold KV until the next step
        # releases them; counting them keeps "no running requests" equal to "KV pool settled".
        running = len(self.running_batch.reqs) if self.running_batch else 0
        used = self.max_total_num_tokens - self.allocator.available_size() - self.tree_cache.evictable_size()
        state = {
            "num_running_reqs": running,
            "num_waiting_reqs": len(self.waiting_queue) + (1 if self.chunked_req else 0),
            "max_total_num_tokens": self.max_total_num_tokens,
            "available_kv_tokens": self.allocator.available_size(),
            "evictable_kv_tokens": self.tree_cache.evictable_size(),
            "locked_kv_tokens": self.tree_cache.protected_size(),
            "used_kv_tokens": used,
            "token_usage": round(used / self.max_total_num_tokens, 4),
            "new_token_ratio": round(self.new_token_ratio, 4),
            "cache": self.tree_cache.stats(),
            **self.stats.as_dict(),
        }
        if req.with_tree:
            preview = self.tokenizer.decode if self.tokenizer is not None else None
            state["tree"] = self.tree_cache.snapshot(req.max_nodes, preview)
        return state


@dataclass
class SchedulerStats:
    num_requests: int = 0
    num_finished: int = 0
    num_retractions: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    decode_steps: int = 0
    recent_prompt_tokens: float = 0.0
    recent_cached_tokens: float = 0.0

    def record_admission(self, prompt_len: int, cached_len: int) -> None:
        self.prompt_tokens += prompt_len
        self.cached_prompt_tokens += cached_len
        # Exponentially decayed totals give a "recent" hit rate without a window buffer.
        self.recent_prompt_tokens = self.recent_prompt_tokens * 0.9 + prompt_len
        self.recent_cached_tokens = self.recent_cached_tokens * 0.9 + cached_len

    def record_decode(self, bs: int) -> None:
        self.decode_tokens += bs
        self.decode_steps += 1

    def as_dict(self) -> dict[str, Any]:
        hit = self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
        recent = self.recent_cached_tokens / self.recent_prompt_tokens if self.recent_prompt_tokens else 0.0
        return {
            "num_requests": self.num_requests, "num_finished": self.num_finished,
            "num_retractions": self.num_retractions, "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens, "cache_hit_rate": round(hit, 4),
            "recent_cache_hit_rate": round(recent, 4), "prefill_tokens": self.prefill_tokens,
            "decode_tokens": self.decode_tokens, "decode_steps": self.decode_steps,
        }


def _append_input_logprobs(req: Req, item: Any) -> None:
    if item is None:
        return
    acc = req.logprobs
    # The scored tokens were origin_input_ids[first + 1 : last + 1] (see ScheduleBatch._set_logprob_inputs).
    prefix_len = req.kv_committed_len - req.extend_input_len
    first_token = max(req.logprob_start_len - 1, 0, prefix_len) + 1
    ids = req.origin_input_ids[first_token:first_token + len(item.token_logprobs)]
    for j, (lp, tid) in enumerate(zip(item.token_logprobs, ids)):
        acc.input_token_logprobs.append((lp, tid))
        acc.input_sum += lp
        acc.input_count += 1
        acc.input_top_logprobs.append((item.top_logprobs[0][j], item.top_logprobs[1][j]) if item.top_logprobs else None)
        acc.input_token_ids_logprobs.append(item.token_ids_logprobs[j] if item.token_ids_logprobs else None)


def run_scheduler_process(server_args: ServerArgs, port_args: PortArgs, model_dir: str,
                          report: Any, external_models: dict[str, type], tp_rank: int = 0) -> None:
    """Build the scheduler, report readiness through `report(dict)`, then loop forever."""
    from ..models.registry import register_external_models
    from ..utils import configure_logging

    configure_logging(server_args.log_level, prefix="scheduler")
    register_external_models(external_models)
    if server_args.resolved_device() == "cpu":
        torch.set_num_threads(int(os.environ.get("SGLANG_NB_CPU_THREADS", os.cpu_count() or 1)))
    try:
        scheduler = Scheduler(server_args, port_args, model_dir, tp_rank)
    except Exception as e:
        logger.exception("Scheduler failed to start")
        report({"status": "error", "message": f"{type(e).__name__}: {e}"})
        return
    report({"status": "ready", "info": scheduler.ready_info()})
    try:
        from .overlap import run_event_loop

        run_event_loop(scheduler)
    except Exception:
        logger.exception("Scheduler crashed")
        raise
