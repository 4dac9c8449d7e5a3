"""Llama family (Llama 1/2/3/3.1/3.2/3.3, SmolLM, DeepSeek-LLM, Yi, ...).

The building blocks here are shared by the Llama-like models (Mistral, Qwen2, ...): they differ
only in biases, sliding windows and a few config spellings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..layers.activation import get_act_and_mul
from ..layers.fused_decode import gemv_layer_applies, gemv_layer_forward, rope_and_store
from ..layers.linear import (
    MergedColumnParallelLinear,
    QKVParallelLinear,
    RowParallelLinear,
    default_weight_loader,
)
from ..layers.logits_processor import LogitsProcessor, LogitsProcessorOutput
from ..layers.norm import RMSNorm
from ..layers.radix_attention import RadixAttention
from ..layers.rotary import get_rope, rope_params_from_config
from ..layers.vocab_embedding import ParallelLMHead, VocabParallelEmbedding
from ..model_executor.forward_batch import ForwardBatch


def head_dim_of(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def sliding_window_of(config: Any, layer_id: int) -> int:
    """Window of this layer, -1 for full attention (transformers 5.x `layer_types` or a global window)."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return window if window and layer_types[layer_id] == "sliding_attention" else -1
    if getattr(config, "use_sliding_window", True) is False:
        return -1
    return window or -1


class LlamaMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str, bias: bool = False) -> None:
        super().__init__()
        self.gate_up_proj = MergedColumnParallelLinear(hidden_size, [intermediate_size] * 2, bias=bias)
        self.down_proj = RowParallelLinear(intermediate_size, hidden_size, bias=bias)
        self.act_fn = get_act_and_mul(hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_up_proj(x)))


class LlamaAttention(nn.Module):
    def __init__(self, config: Any, layer_id: int, qkv_bias: bool, o_bias: bool,
                 sliding_window: int = -1) -> None:
        super().__init__()
        self.head_dim = head_dim_of(config)
        self.qkv_proj = QKVParallelLinear(config.hidden_size, self.head_dim, config.num_attention_heads,
                                          getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
                                          bias=qkv_bias)
        self.q_size, self.kv_size = self.qkv_proj.q_size, self.qkv_proj.kv_size
        self.o_proj = RowParallelLinear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=o_bias)
        rotary_dim = int(self.head_dim * getattr(config, "partial_rotary_factor", 1.0))
        self.rotary_emb = get_rope(self.head_dim, rotary_dim, config.max_position_embeddings,
                                   rope_params_from_config(config))
        self.attn = RadixAttention(self.qkv_proj.num_heads, self.head_dim, self.head_dim ** -0.5,
                                   self.qkv_proj.num_kv_heads, layer_id, sliding_window_size=sliding_window)

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, forward_batch: ForwardBatch) -> torch.Tensor:
        return self.forward_qkv(positions, self.qkv_proj(hidden_states), forward_batch)

    def forward_qkv(self, positions: torch.Tensor, qkv: torch.Tensor, forward_batch: ForwardBatch) -> torch.Tensor:
        """Attention and o_proj from the fused q/k/v projection output."""
        fused = rope_and_store(self.rotary_emb, self.attn, positions, qkv, forward_batch)
        if fused is not None:  # K/V already in the pool
            q, k, v = fused
            return self.o_proj(self.attn(q, k, v, forward_batch, save_kv_cache=False))
        qk = self.rotary_emb.forward_fused(positions, qkv[:, : self.q_size + self.kv_size])
        q, k = qk.split([self.q_size, self.kv_size], dim=-1)
        v = qkv[:, self.q_size + self.kv_size:]
        return self.o_proj(self.attn(q, k, v, forward_batch))


class LlamaDecoderLayer(nn.Module):
    @staticmethod
    def attention_biases(config: Any) -> tuple[bool, bool]:
        """(q/k/v bias, o_proj bias): Llama's `attention_bias` covers all four projections."""
        bias = bool(getattr(config, "attention_bias", False))
        return bias, bias

    def __init__(self, config: Any, layer_id: int) -> None:
        super().__init__()
        qkv_bias, o_bias = self.attention_biases(config)
        self.self_attn = LlamaAttention(config, layer_id, qkv_bias=qkv_bias, o_bias=o_bias,
                                        sliding_window=sliding_window_of(config, layer_id))
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act,
                            bias=bool(getattr(config, "mlp_bias", False)))
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, forward_batch: ForwardBatch,
                residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if gemv_layer_applies(self, hidden_states):  # one token on the GPU: four fused weight streams
            return gemv_layer_forward(self, positions, hidden_states, forward_batch, residual)
        if residual is None:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
        else:
            hidden_states, residual = self.input_layernorm(hidden_states, residual)
        hidden_states = self.self_attn(positions, hidden_states, forward_batch)
        hidden_states, residual = self.post_attention_layernorm(hidden_states, residual)
        return self.mlp(hidden_states), residual


class LlamaModel(nn.Module):
    layer_cls: type[LlamaDecoderLayer] = LlamaDecoderLayer

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([self.layer_cls(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.embed_tokens(input_ids) if input_embeds is None else input_embeds
        residual = None
        for layer in self.layers:
            hidden_states, residual = layer(positions, hidden_states, forward_batch, residual)
        hidden_states, _ = self.norm(hidden_states, residual)
        return hidden_states


class LlamaForCausalLM(nn.Module):
    model_cls: type[LlamaModel] = LlamaModel
    # (fused parameter, checkpoint name, shard id)
    stacked_params_mapping = [
        ("qkv_proj", "q_proj", "q"),
        ("qkv_proj", "k_proj", "k"),
        ("qkv_proj", "v_proj", "v"),
        ("gate_up_proj", "gate_proj", 0),
        ("gate_up_proj", "up_proj", 1),
    ]

    def __init__(self, config: Any, quant_config: Any = None) -> None:
        super().__init__()
        self.config = config
        self.model = self.model_cls(config)
        if getattr(config, "tie_word_embeddings", False):
            self.lm_head: nn.Module = self.model.embed_tokens
        else:
            self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size)
        self.logits_processor = LogitsProcessor(config)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: torch.Tensor | None = None) -> LogitsProcessorOutput:
        hidden_states = self.model(input_ids, positions, forward_batch, input_embeds)
        return self.logits_processor(input_ids, hidden_states, self.lm_head, forward_batch)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        params = dict(self.named_parameters(remove_duplicate=False))
        tied = getattr(self.config, "tie_word_embeddings", False)
        loaded: set[str] = set()
        for name, tensor in weights:
            if "rotary_emb.inv_freq" in name or "rotary_emb.cos_cached" in name or "rotary_emb.sin_cached" in name:
                continue
            if tied and name.startswith("lm_head."):
                continue  # tied checkpoints may still carry a copy of the embedding
            for fused, part, shard_id in self.stacked_params_mapping:
                if f".{part}." not in name:
                    continue
                target = name.replace(f".{part}.", f".{fused}.")
                if target not in params:
                    continue
                param = params[target]
                param.weight_loader(param, tensor, shard_id)  # type: ignore[attr-defined]
                loaded.add(target)
                break
            else:
                if name not in params:
                    raise ValueError(f"Unexpected weight in checkpoint: {name}")
                param = params[name]
                getattr(param, "weight_loader", default_weight_loader)(param, tensor)
                loaded.add(name)
        missing = [n for n in params if n not in loaded and not (tied and n.startswith("lm_head."))]
        if missing:
            raise ValueError(f"Weights missing from the checkpoint: {missing[:8]}{' ...' if len(missing) > 8 else ''}")


EntryClass = [LlamaForCausalLM]
