"""GGUF files -> a cached Hugging Face directory (config.json, tokenizer, fp32 safetensors).

Conversion runs once per file (keyed by path, size and mtime) and is cached under
`$SGLANG_NB_CACHE` (default `~/.cache/sglang_nb`); afterwards the model loads like any HF directory,
memory-mapped. Llama-family tensors are dequantised directly with the `gguf` package (undoing
llama.cpp's q/k row permutation); other architectures go through transformers' GGUF reader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_LLAMA_LIKE = {"llama", "mistral", "qwen2"}
_TENSOR_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def cache_root() -> str:
    return os.environ.get("SGLANG_NB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sglang_nb")


def converted_dir(gguf_path: str) -> str:
    st = os.stat(gguf_path)
    key = hashlib.sha256(f"{os.path.abspath(gguf_path)}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]
    stem = os.path.basename(gguf_path).rsplit(".", 1)[0]
    return os.path.join(cache_root(), "gguf", f"{stem}-{key}")


def ensure_converted(gguf_path: str) -> str:
    """Return a HF directory for `gguf_path`, converting it on first use (atomic, safe across processes)."""
    out = converted_dir(gguf_path)
    if os.path.exists(os.path.join(out, ".complete")):
        return out
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    t0 = time.perf_counter()
    try:
        _convert(gguf_path, tmp)
        with open(os.path.join(tmp, ".complete"), "w") as f:
            f.write(gguf_path)
        try:
            os.rename(tmp, out)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Converted %s in %.1f s (cached at %s)", gguf_path, time.perf_counter() - t0, out)
    return out


def _convert(gguf_path: str, out: str) -> None:
    from safetensors.torch import save_file
    from transformers import AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = os.path.split(os.path.abspath(gguf_path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.save_pretrained(out)

    parsed = load_gguf_checkpoint(gguf_path)
    config = _build_config(parsed["config"])
    config.save_pretrained(out)
    gen = {k: v for k, v in (("bos_token_id", config.bos_token_id), ("eos_token_id", config.eos_token_id))
           if v is not None}
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(gen, f)

    if config.model_type in _LLAMA_LIKE:
        tensors = _read_llama_tensors(gguf_path, config)
    else:
        tensors = _read_tensors_with_transformers(gguf_path, config)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})


def _build_config(cfg: dict[str, Any]) -> Any:
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cfg = dict(cfg)
    model_type = cfg.pop("model_type")
    cfg.pop("_model_name_or_path", None)
    config = CONFIG_MAPPING[model_type](**cfg)
    arch = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if arch is None:
        raise ValueError(f"GGUF model type {model_type!r} has no causal-LM class")
    config.architectures = [arch]
    config.dtype = "float32"
    return config


def _unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's interleaving of the rotary halves in q/k rows."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _read_llama_tensors(gguf_path: str, config: Any) -> dict[str, torch.Tensor]:
    import torch
    from gguf import GGUFReader, dequantize

    reader = GGUFReader(gguf_path)
    out: dict[str, torch.Tensor] = {}
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    for t in reader.tensors:
        base, _, suffix = t.name.rpartition(".")  # "blk.3.attn_q", "weight"
        if base.startswith("blk."):
            _, layer, part = base.split(".", 2)
            if part not in _BLOCK_NAMES:
                raise ValueError(f"Unexpected GGUF tensor {t.name}")
            name = f"model.layers.{layer}.{_BLOCK_NAMES[part]}.{suffix}"
        elif base in _TENSOR_NAMES:
            name = f"{_TENSOR_NAMES[base]}.{suffix}"
        else:
            continue  # e.g. rope_freqs: recomputed from the config
        w = torch.from_numpy(dequantize(t.data, t.tensor_type).copy()).float()
        permuted = config.model_type in ("llama", "mistral")  # llama.cpp permutes q/k rows for these
        if permuted and base.endswith(".attn_q"):
            w = _unpermute(w, config.num_attention_heads)
        elif permuted and base.endswith(".attn_k"):
            w = _unpermute(w, kv_heads)
        out[name] = w
    return out


def _read_tensors_with_transformers(gguf_path: str, config: Any) -> dict[str, torch.Tensor]:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    parsed = load_gguf_checkpoint(gguf_path, return_tensors=True, model_to_load=model)
    return {k: v.float() for k, v in parsed["tensors"].items()}
