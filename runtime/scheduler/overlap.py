"""The overlap event loop: the same five verbs as `Scheduler.event_loop`, reordered so that the CPU
works one step ahead of the device.

    recv -> process inputs -> build batch t+1 -> launch t+1 -> process results of t

Launching only enqueues kernels, so while the device runs step t+1 the CPU appends step t's tokens,
checks stop conditions, publishes KV to the radix cache and streams. Sampled tokens never visit
the CPU on the way to the next step: each forward scatters its tokens into `token_buf` (indexed by
request-pool row) and the next decode gathers its input ids from there. The only host wait is on
the pinned copy of step t's tokens, which finished long before step t+1 does.

Consequences, as in SGLang: a request that finishes at step t is still in step t+1, whose extra
token is discarded; aborts and stop strings take effect one step later. Where the next batch
depends on step t's tokens on the CPU (grammars, penalties, min_new_tokens, logprobs, chunked
prefill) or the KV pool is nearly full (retraction), step t is processed before step t+1 is built.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .batch import ScheduleBatch
    from .scheduler import GenerationBatchResult, Scheduler

logger = logging.getLogger(__name__)


def overlap_enabled(scheduler: Scheduler) -> bool:
    """On by default on GPU; on CPU only when asked for (--enable-overlap-schedule), for testing."""
    args = scheduler.server_args
    if args.disable_overlap_schedule or not scheduler.model_config.is_generation:
        return False
    return scheduler.device != "cpu" or args.enable_overlap_schedule


@dataclass
class LaunchedBatch:
    """A launched forward whose tokens are being copied to pinned host memory."""

    batch: ScheduleBatch
    next_ids: torch.Tensor  # device
    host_ids: torch.Tensor  # pinned host copy (valid once `event` completed)
    event: torch.cuda.Event | None
    logits_output: object
    done: GenerationBatchResult | None = None  # set when the batch ran synchronously

    def resolve(self) -> GenerationBatchResult:
        if self.done is not None:
            return self.done
        from .scheduler import GenerationBatchResult

        if self.event is not None:
            self.event.synchronize()
        fb = self.batch.forward_batch
        assert fb is not None
        return GenerationBatchResult(self.host_ids.tolist(), fb, self.logits_output)


class OverlapLoop:
    def __init__(self, scheduler: Scheduler) -> None:
        self.s = scheduler
        runner = scheduler.model_runner
        self.device = scheduler.device
        self.token_buf = torch.zeros(runner.req_to_token_pool.size, dtype=torch.int64, device=self.device)
        self.pin = self.device != "cpu" and torch.cuda.is_available()

    # ---- policy ------------------------------------------------------------------------------

    def must_process_first(self, batch: ScheduleBatch) -> bool:
        """True when building the next batch needs this batch's tokens on the CPU."""
        for req in batch.reqs:
            p = req.sampling_params
            # to_abort / max_new_tokens == 0 finish without a token: their KV length must not include
            # a slot the next step would allocate.
            if req.grammar is not None or req.is_chunked > 0 or req.return_logprob or p.has_penalties \
                    or p.min_new_tokens > 0 or req.to_abort is not None or p.max_new_tokens == 0:
                return True
        s = self.s
        running = len(s.running_batch.reqs) if s.running_batch is not None else 0
        # Retraction rewrites requests that still have a token in flight: do it on settled state.
        return s.allocator.available_size() + s.tree_cache.evictable_size() < 2 * (running + len(batch.reqs))

    def needs_sync_launch(self, batch: ScheduleBatch) -> bool:
        """Batches whose sampling itself needs host state (grammar masks, logprob lists)."""
        return any(r.grammar is not None or r.return_logprob for r in batch.reqs)

    # ---- verbs -------------------------------------------------------------------------------

    def launch(self, batch: ScheduleBatch) -> LaunchedBatch:
        """Enqueue forward + sampling of `batch`; tokens go to `token_buf` and to pinned host memory."""
        s = self.s
        # The scheduler reuses the running batch object for the next step: keep this step's view.
        batch = copy.copy(batch)
        batch.reqs = list(batch.reqs)
        fb = batch.forward_batch
        assert fb is not None
        if fb.forward_mode.is_decode():
            fb.input_ids = self.token_buf[fb.req_pool_indices]
        if self.needs_sync_launch(batch):
            result = s.run_batch(batch)
            ids = torch.tensor(result.next_token_ids, dtype=torch.int64)
            self.token_buf[fb.req_pool_indices] = ids.to(self.device)
            return LaunchedBatch(batch, ids, ids, None, result.logits_output, done=result)
        runner = s.model_runner
        logits_output = runner.forward(fb)
        next_ids = runner.sample(logits_output, fb)
        self.token_buf[fb.req_pool_indices] = next_ids
        if not self.pin:
            return LaunchedBatch(batch, next_ids, next_ids, None, logits_output)
        host = torch.empty(next_ids.shape, dtype=next_ids.dtype, pin_memory=True)
        host.copy_(next_ids, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return LaunchedBatch(batch, next_ids, host, event, logits_output)

    def process(self, launched: LaunchedBatch) -> None:
        """Process a launched step's results, skipping requests that finished one step earlier."""
        result = launched.resolve()
        batch = launched.batch
        keep = [i for i, r in enumerate(batch.reqs) if not r.finished()]
        if len(keep) < len(batch.reqs):
            batch.reqs = [batch.reqs[i] for i in keep]
            result.next_token_ids = [result.next_token_ids[i] for i in keep]
            lp = result.output_logprobs
            if lp is not None:
                for name in ("token_logprobs", "top_logprobs", "token_ids_logprobs"):
                    values = getattr(lp, name)
                    setattr(lp, name, [values[i] for i in keep])
        self.s.process_batch_result(batch, result)

    def run(self) -> None:
        """The loop; never returns."""
        s = self.s
        pending: LaunchedBatch | None = None
        while True:
            s.process_input_requests(s.recv_requests())
            if pending is not None and self.must_process_first(pending.batch):
                self.process(pending)
                pending = None
            batch = s.get_next_batch_to_run()
            launched = self.launch(batch) if batch is not None else None
            if pending is not None:
                self.process(pending)
            pending = launched
            if batch is not None:
                s.profiler.on_step()
            if batch is None and pending is None:
                s.on_idle()
            s.last_batch = batch


def run_event_loop(scheduler: Scheduler) -> None:
    """Run the overlap loop where enabled, else the plain loop."""
    if overlap_enabled(scheduler):
        logger.info("Overlap scheduling on")
        OverlapLoop(scheduler).run()
    else:
        scheduler.event_loop()
