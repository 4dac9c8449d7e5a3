"""Decode in CUDA graphs: one graph per batch size of a padded ladder, captured at start-up.

A live decode batch of size n replays the graph of the smallest captured size >= n. Its inputs are
copied into static buffers; padded rows point at request row 0 with sequence length 1 and write
their K/V to the reserved dummy slot 0, so they read valid memory and touch nothing real. Only the
first n rows of the captured logits are returned.

With `--enable-torch-compile`, sizes up to `--torch-compile-max-bs` run a `torch.compile`d model
inside their graphs (element-wise fusion beyond our Triton kernels).
"""

from __future__ import annotations

import bisect
import logging
import time
from typing import TYPE_CHECKING, Any

import torch

from ..layers.logits_processor import LogitsProcessorOutput
from .forward_batch import ForwardBatch, ForwardMode

if TYPE_CHECKING:
    from .model_runner import ModelRunner

logger = logging.getLogger(__name__)


def default_capture_sizes(max_bs: int) -> list[int]:
    """1, 2, 4, 8, then every 8 up to `max_bs` (the last entry is `max_bs` itself)."""
    sizes = [s for s in (1, 2, 4) if s <= max_bs] + list(range(8, max_bs + 1, 8))
    if not sizes or sizes[-1] != max_bs:
        sizes.append(max_bs)
    return sorted(set(sizes))


def default_max_bs(total_mem_bytes: int) -> int:
    """160 on GPUs up to 80 GB, 256 above (room for more concurrent decodes)."""
    return 256 if total_mem_bytes > 90 * (1 << 30) else 160


class CudaGraphRunner:
    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        args = runner.server_args
        self.device = runner.device
        if args.cuda_graph_bs:
            sizes = sorted(set(int(s) for s in args.cuda_graph_bs))
        else:
            max_bs = args.cuda_graph_max_bs or default_max_bs(torch.cuda.get_device_properties(self.device).total_memory)
            sizes = default_capture_sizes(max_bs)
        limit = runner.sizes.max_running_requests
        sizes = [s for s in sizes if s <= limit] or [min(limit, 1)]
        self.capture_bs = sizes
        self.max_bs = sizes[-1]
        self.disable_padding = args.disable_cuda_graph_padding
        self.compile_bs = args.torch_compile_max_bs if args.enable_torch_compile else 0
        dev = self.device
        n = self.max_bs
        self.input_ids = torch.zeros(n, dtype=torch.int64, device=dev)
        self.positions = torch.zeros(n, dtype=torch.int64, device=dev)
        self.req_pool_indices = torch.zeros(n, dtype=torch.int64, device=dev)
        self.seq_len_fill = runner.attn_backend.get_cuda_graph_seq_len_fill_value()
        self.seq_lens = torch.full((n,), self.seq_len_fill, dtype=torch.int32, device=dev)
        self.out_cache_loc = torch.zeros(n, dtype=torch.int64, device=dev)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        cfg = runner.model_config
        heads = cfg.num_attention_heads // _tp_size()
        kv_heads = max(1, cfg.num_key_value_heads // _tp_size())
        runner.attn_backend.init_cuda_graph_state(self.max_bs, heads, cfg.v_head_dim or cfg.head_dim, kv_heads)
        t0 = time.perf_counter()
        self.capture()
        self.capture_time = time.perf_counter() - t0
        logger.info("Captured %d decode CUDA graphs (bs %s) in %.1f s", len(sizes), sizes, self.capture_time)

    # ---- capture -----------------------------------------------------------------------------

    def _batch(self, bs: int) -> ForwardBatch:
        r = self.runner
        return ForwardBatch(forward_mode=ForwardMode.DECODE, batch_size=bs, input_ids=self.input_ids[:bs],
                            positions=self.positions[:bs], req_pool_indices=self.req_pool_indices[:bs],
                            seq_lens=self.seq_lens[:bs], seq_lens_cpu=[self.seq_len_fill] * bs,
                            out_cache_loc=self.out_cache_loc[:bs],
                            req_to_token_pool=r.req_to_token_pool, token_to_kv_pool=r.kv_pool,
                            attn_backend=r.attn_backend)

    def _forward_fn(self, bs: int) -> Any:
        model = self.runner.model
        if bs <= self.compile_bs:
            if not hasattr(self, "_compiled"):
                import torch._dynamo

                torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
                self._compiled = torch.compile(model.forward, mode="max-autotune-no-cudagraphs", dynamic=False)
            return self._compiled
        return model.forward

    @torch.inference_mode()
    def capture(self) -> None:
        pool = None
        stream = torch.cuda.Stream(device=self.device)
        for bs in reversed(self.capture_bs):
            fb = self._batch(bs)
            self.runner.attn_backend.init_forward_metadata_capture_cuda_graph(fb)
            fn = self._forward_fn(bs)
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up: Triton autotuning/compilation and allocator state
                    fn(fb.input_ids, fb.positions, fb)
            torch.cuda.current_stream().wait_stream(stream)
            torch.cuda.synchronize(self.device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=stream):
                out = fn(fb.input_ids, fb.positions, fb)
            pool = graph.pool()
            self.graphs[bs] = graph
            self.outputs[bs] = out.next_token_logits
        torch.cuda.synchronize(self.device)

    # ---- replay ------------------------------------------------------------------------------

    def can_run(self, forward_batch: ForwardBatch) -> bool:
        if not forward_batch.forward_mode.is_decode() or forward_batch.mm_inputs:
            return False
        bs = forward_batch.batch_size
        return bs in self.graphs if self.disable_padding else bs <= self.max_bs

    def padded_size(self, bs: int) -> int:
        return self.capture_bs[bisect.bisect_left(self.capture_bs, bs)]

    def replay(self, forward_batch: ForwardBatch) -> LogitsProcessorOutput:
        bs = forward_batch.batch_size
        pbs = self.padded_size(bs)
        if pbs > bs:  # padded rows: row 0, length 1, dummy slot 0
            self.req_pool_indices[bs:pbs].zero_()
            self.seq_lens[bs:pbs].fill_(self.seq_len_fill)
            self.out_cache_loc[bs:pbs].zero_()
            self.positions[bs:pbs].zero_()
            self.input_ids[bs:pbs].zero_()
        self.input_ids[:bs].copy_(forward_batch.input_ids, non_blocking=True)
        self.positions[:bs].copy_(forward_batch.positions, non_blocking=True)
        self.req_pool_indices[:bs].copy_(forward_batch.req_pool_indices, non_blocking=True)
        self.seq_lens[:bs].copy_(forward_batch.seq_lens, non_blocking=True)
        self.out_cache_loc[:bs].copy_(forward_batch.out_cache_loc, non_blocking=True)
        # Backends plan over the padded batch the graph was captured with (static buffers).
        padded = self._batch(pbs)
        padded.seq_lens_cpu = list(forward_batch.seq_lens_cpu) + [self.seq_len_fill] * (pbs - bs)
        self.runner.attn_backend.init_forward_metadata_replay_cuda_graph(padded)
        self.graphs[pbs].replay()
        return LogitsProcessorOutput(next_token_logits=self.outputs[pbs][:bs])


def _tp_size() -> int:
    from ..distributed import get_tp_group

    return get_tp_group().size
