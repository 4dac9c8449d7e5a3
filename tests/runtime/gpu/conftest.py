"""Fixtures of the GPU tests: a tiny Llama with real head sizes and larger weights (fewer near-ties)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture(scope="session")
def gpu_tiny_llama(tiny_model_factory: Callable[..., str]) -> str:
    return tiny_model_factory("llama_gpu", "LlamaConfig", hidden_size=256, intermediate_size=512,
                              num_attention_heads=4, num_key_value_heads=2, initializer_range=0.15,
                              max_position_embeddings=2048)
