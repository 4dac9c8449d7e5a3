"""ModelRunner: owns the model, the KV pools and the attention backend of one rank; runs forwards."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..layers.attention import create_attention_backend
from ..layers.logits_processor import LogitsProcessorOutput
from ..layers.sampler import OutputLogprobs, Sampler, compute_output_logprobs
from ..mem_cache.kv_pool import MHATokenToKVPool, ReqToTokenPool, TokenToKVPoolAllocator
from ..model_loader.loader import get_model
from ..model_loader.model_config import ModelConfig
from ..server_args import ServerArgs
from .forward_batch import ForwardBatch

logger = logging.getLogger(__name__)

CPU_DEFAULT_MEM_FRACTION = 0.3
CPU_DEFAULT_MAX_RUNNING = 256
CPU_MAX_POOL_TOKENS = 1 << 20


@dataclass
class PoolSizes:
    max_total_num_tokens: int
    max_running_requests: int


# GPUs (name substrings) on which the flashinfer backend measured faster than triton end to end
# (docs/gpu.md). On the H100 80GB triton won at batch 1 (6.36 vs 7.08 ms/token: FlashInfer plans on
# the host every step) and at batch 64 (10.43 vs 10.76 ms), with prefill equal, so none so far.
FLASHINFER_FASTER_ON: tuple[str, ...] = ()


def default_gpu_backend(device: str) -> str:
    """torch_native on CPU; on GPU our Triton kernels, or flashinfer where it imports and measured faster."""
    if device == "cpu":
        return "torch_native"
    if FLASHINFER_FASTER_ON:
        from ..layers.attention import flashinfer_available

        name = torch.cuda.get_device_name(device)
        if any(tag in name for tag in FLASHINFER_FASTER_ON) and flashinfer_available():
            return "flashinfer"
    return "triton"


@contextmanager
def _oom_hint(what: str, flags: str) -> Iterator[None]:
    """Turn a CUDA out-of-memory error at start-up into a message naming the flag to change."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as e:
        raise RuntimeError(f"Out of GPU memory while {what}: lower {flags}. ({e})") from None


class ModelRunner:
    def __init__(self, server_args: ServerArgs, model_config: ModelConfig, device: str, tp_rank: int = 0) -> None:
        self.server_args = server_args
        self.model_config = model_config
        self.device = device
        self.tp_rank = tp_rank
        if server_args.random_seed is not None:
            torch.manual_seed(server_args.random_seed)
        t0 = time.perf_counter()
        with _oom_hint("loading the weights", "the model size (use a smaller model or a larger --tp-size)"):
            self.model = get_model(model_config, server_args.load_format, device)
        self.weight_load_time = time.perf_counter() - t0
        self.sizes = self._pool_sizes()
        with _oom_hint("allocating the KV cache", "--mem-fraction-static (or set --max-total-tokens)"):
            self.req_to_token_pool = ReqToTokenPool(self.sizes.max_running_requests + 1,
                                                    model_config.context_len + 4, device)
            self.allocator = TokenToKVPoolAllocator(self.sizes.max_total_num_tokens, device)
            self.kv_pool = MHATokenToKVPool(self.sizes.max_total_num_tokens, model_config.dtype,
                                            self._kv_heads_per_rank(), model_config.head_dim,
                                            model_config.num_hidden_layers, device, model_config.v_head_dim)
        self.attention_backend_name = server_args.attention_backend or default_gpu_backend(device)
        self.attn_backend = create_attention_backend(self.attention_backend_name, self)
        self.attention_backend_name = self.attn_backend.name or self.attention_backend_name  # after any fallback
        self.sampler = Sampler()
        self.cuda_graph_runner = None
        if device != "cpu" and not server_args.disable_cuda_graph and model_config.is_generation:
            from .cuda_graph_runner import CudaGraphRunner

            with _oom_hint("capturing decode CUDA graphs", "--mem-fraction-static or --cuda-graph-max-bs"):
                self.cuda_graph_runner = CudaGraphRunner(self)

    def _kv_heads_per_rank(self) -> int:
        from ..distributed import get_tp_group

        tp = get_tp_group().size
        return max(1, self.model_config.num_key_value_heads // tp)

    def _pool_sizes(self) -> PoolSizes:
        args, cfg = self.server_args, self.model_config
        cell = MHATokenToKVPool.cell_size(cfg.dtype, self._kv_heads_per_rank(), cfg.head_dim,
                                          cfg.num_hidden_layers, cfg.v_head_dim)
        if args.max_total_tokens is not None:
            tokens = args.max_total_tokens
        elif self.device == "cpu":
            import psutil

            frac = args.mem_fraction_static or CPU_DEFAULT_MEM_FRACTION
            tokens = min(int(psutil.virtual_memory().available * frac) // cell, CPU_MAX_POOL_TOKENS)
        else:
            free, total = torch.cuda.mem_get_info()
            frac = args.mem_fraction_static or 0.88
            # The weights and the pool may use `frac` of the device; the rest is headroom for
            # activations, CUDA graphs and the sampler.
            rest = free - total * (1 - frac)
            tokens = int(rest // cell)
            if tokens <= 0:
                raise RuntimeError(
                    f"Not enough GPU memory for the KV cache: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB "
                    f"after loading the weights, and --mem-fraction-static={frac} keeps "
                    f"{total * (1 - frac) / 2**30:.1f} GiB back. Raise --mem-fraction-static, lower "
                    "--context-length, or use a smaller model.")
        if tokens < 16:
            raise ValueError(f"--max-total-tokens: a KV pool of {tokens} tokens is too small.")
        if args.max_running_requests is not None:
            running = args.max_running_requests
        elif self.device == "cpu":
            running = min(CPU_DEFAULT_MAX_RUNNING, max(tokens // 2, 1))
        else:
            running = min(max(tokens // 2, 1), 4096)
        return PoolSizes(max_total_num_tokens=tokens, max_running_requests=running)

    @torch.inference_mode()
    def forward(self, forward_batch: ForwardBatch) -> LogitsProcessorOutput:
        forward_batch.attn_backend = self.attn_backend
        if self.cuda_graph_runner is not None and self.cuda_graph_runner.can_run(forward_batch):
            return self.cuda_graph_runner.replay(forward_batch)
        self.attn_backend.init_forward_metadata(forward_batch)
        return self.model(forward_batch.input_ids, forward_batch.positions, forward_batch)  # type: ignore[no-any-return]

    @torch.inference_mode()
    def sample(self, logits_output: LogitsProcessorOutput, forward_batch: ForwardBatch) -> torch.Tensor:
        assert forward_batch.sampling_info is not None
        return self.sampler(logits_output.next_token_logits, forward_batch.sampling_info)

    @torch.inference_mode()
    def output_logprobs(self, logits_output: LogitsProcessorOutput, next_ids: torch.Tensor,
                        forward_batch: ForwardBatch, want: list[bool]) -> OutputLogprobs:
        return compute_output_logprobs(logits_output.next_token_logits, next_ids, want,
                                       forward_batch.top_logprobs_nums, forward_batch.token_ids_logprobs)
