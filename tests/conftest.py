"""Shared test configuration: markers, GPU auto-skip, tiny random models built from transformers configs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Base of every tiny test config (specs/models.md §2).
TINY_BASE: dict[str, Any] = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 pad_token_id=0, bos_token_id=1, eos_token_id=2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def build_tiny_model(path: Path, config_cls: str, seed: int = 0, **overrides: Any) -> Path:
    """Save a seeded random model of `config_cls` (e.g. "LlamaConfig") with the tiny base config."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    cfg = getattr(transformers, config_cls)(**{**TINY_BASE, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() == 1:  # norms start at 1: perturb them so that bugs in their use show
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """tiny_model_factory(name, config_cls, **overrides) -> directory (built once per session)."""
    cache: dict[str, str] = {}
    root = tmp_path_factory.mktemp("tiny_models")

    def make(name: str, config_cls: str = "LlamaConfig", **overrides: Any) -> str:
        if name not in cache:
            cache[name] = str(build_tiny_model(root / name, config_cls, **overrides))
        return cache[name]

    return make


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_factory: Callable[..., str]) -> str:
    return tiny_model_factory("llama", "LlamaConfig")


@pytest.fixture(scope="session")
def tiny_llama_engine(tiny_llama: str) -> Iterator[Any]:
    """One engine over the tiny Llama shared by tests that only read (no flush, no abort-all)."""
    from sglang_nb.runtime.engine import Engine

    engine = Engine(model_path=tiny_llama, skip_tokenizer_init=True, max_total_tokens=4096)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
def smollm_engine() -> Iterator[Any]:
    """The embedded default model (SmolLM2-135M-Instruct), shared across the session."""
    from sglang_nb.runtime.engine import Engine

    engine = Engine(max_total_tokens=16384)
    yield engine
    engine.shutdown()
