"""ModelConfig: what the runtime needs to know about a model, read once from its HF config."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

_DTYPES = {"half": torch.float16, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "float": torch.float32, "float32": torch.float32}
_CONTEXT_KEYS = ("max_position_embeddings", "max_sequence_length", "seq_length", "max_seq_len",
                 "model_max_length", "n_positions")


@dataclass
class ModelConfig:
    path: str
    hf_config: Any
    architectures: list[str]
    dtype: torch.dtype
    context_len: int
    vocab_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    v_head_dim: int
    hidden_size: int
    eos_token_ids: list[int]
    is_generation: bool
    generation_defaults: dict[str, Any]

    @classmethod
    def from_dir(cls, path: str, *, dtype: str = "auto", device: str = "cpu", context_length: int | None = None,
                 trust_remote_code: bool = False, overrides: dict[str, Any] | None = None,
                 is_embedding: bool = False) -> ModelConfig:
        from transformers import AutoConfig

        hf = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        for key, value in (overrides or {}).items():
            setattr(hf, key, value)
        text = getattr(hf, "text_config", None) or hf
        archs = list(getattr(hf, "architectures", None) or [])
        if not archs:
            raise ValueError(f"{path}/config.json has no 'architectures' entry.")
        derived = _derived_context_len(text)
        if context_length is None:
            context_len = derived
        else:
            if context_length > derived:
                logger.warning("--context-length %d exceeds the model's %d.", context_length, derived)
            context_len = context_length
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        gen = _generation_config(path)
        return cls(
            path=path,
            hf_config=hf,
            architectures=archs,
            dtype=_resolve_dtype(dtype, hf, device),
            context_len=context_len,
            vocab_size=text.vocab_size,
            num_hidden_layers=text.num_hidden_layers,
            num_attention_heads=heads,
            num_key_value_heads=getattr(text, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            v_head_dim=getattr(text, "v_head_dim", None) or head_dim,
            hidden_size=text.hidden_size,
            eos_token_ids=_eos_ids(hf, gen),
            is_generation=not is_embedding and not any(_is_embedding_arch(a) for a in archs),
            generation_defaults={k: gen[k] for k in ("temperature", "top_p", "top_k", "min_p",
                                                     "repetition_penalty") if k in gen},
        )


def _derived_context_len(config: Any) -> int:
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def _resolve_dtype(dtype: str, hf: Any, device: str) -> torch.dtype:
    if dtype != "auto":
        return _DTYPES[dtype]
    if device == "cpu":
        return torch.float32
    cfg_dtype = getattr(hf, "dtype", None) or getattr(hf, "torch_dtype", None)
    if isinstance(cfg_dtype, str):
        cfg_dtype = _DTYPES.get(cfg_dtype.replace("torch.", ""), torch.bfloat16)
    if cfg_dtype == torch.float16:
        return torch.float16
    return torch.bfloat16


def _generation_config(path: str) -> dict[str, Any]:
    file = os.path.join(path, "generation_config.json")
    if not os.path.exists(file):
        return {}
    with open(file) as f:
        data: dict[str, Any] = json.load(f)
    return data


def _eos_ids(hf: Any, gen: dict[str, Any]) -> list[int]:
    ids: list[int] = []
    for source in (gen.get("eos_token_id"), getattr(hf, "eos_token_id", None),
                   getattr(getattr(hf, "text_config", None), "eos_token_id", None)):
        if source is None:
            continue
        for value in source if isinstance(source, list) else [source]:
            if isinstance(value, int) and value not in ids:
                ids.append(value)
    return ids


def _is_embedding_arch(arch: str) -> bool:
    return arch.endswith(("Model", "EmbeddingModel", "ForSequenceClassification", "ForRewardModel")) \
        and not arch.endswith("ForCausalLM")
