"""ModelRunner: owns the model, the KV pools and the attention backend of one rank; runs forwards."""

from __future__ import annotations

import logging
import time
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


class ModelRunner:
    def __init__(self, server_args: ServerArgs, model_config: ModelConfig, device: str, tp_rank: int = 0) -> None:
        self.server_args = server_args
        self.model_config = model_config
        self.device = device
        self.tp_rank = tp_rank
        if server_args.random_seed is not None:
            torch.manual_seed(server_args.random_seed)
        t0 = time.perf_counter()
        self.model = get_model(model_config, server_args.load_format, device)
        self.weight_load_time = time.perf_counter() - t0
        self.sizes = self._pool_sizes()
        self.req_to_token_pool = ReqToTokenPool(self.sizes.max_running_requests + 1, model_config.context_len + 4,
                                                device)
        self.allocator = TokenToKVPoolAllocator(self.sizes.max_total_num_tokens, device)
        self.kv_pool = MHATokenToKVPool(self.sizes.max_total_num_tokens, model_config.dtype,
                                        self._kv_heads_per_rank(), model_config.head_dim,
                                        model_config.num_hidden_layers, device, model_config.v_head_dim)
        self.attention_backend_name = server_args.attention_backend or ("torch_native" if device == "cpu" else "triton")
        self.attn_backend = create_attention_backend(self.attention_backend_name, self)
        self.sampler = Sampler()

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
            rest = free - total * (1 - frac)
            tokens = int(rest // cell)
            if tokens <= 0:
                raise RuntimeError("Not enough GPU memory for the KV cache after loading the weights: "
                                   "raise --mem-fraction-static or use a smaller model.")
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
