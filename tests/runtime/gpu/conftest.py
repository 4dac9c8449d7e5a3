"""Fixtures of the GPU tests: tiny Llamas with real head sizes, and the bf16 acceptance seed set."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# The bf16 acceptance model: HF's standard initializer range (0.02) and hidden size 512, so that the
# logits have a spread (std ~0.45) at which bf16 rounding of the whole forward moves a logprob by
# ~0.01 at most, while a kernel defect (a wrong key, an attention output off by 3%) moves it by more
# than 0.02 or changes tokens. GQA group 4 and head dim 128: the Llama-3-8B attention shape.
BF16_MODEL = dict(hidden_size=512, intermediate_size=1024, num_attention_heads=4, num_key_value_heads=1,
                  initializer_range=0.02, max_position_embeddings=2048)
BF16_NEW_TOKENS = 12
# A near-tie is decided by rounding, not by the kernels: seeds whose fp32 greedy continuation has a
# top-2 logprob gap below this at some step are left out of the token-identity check.
BF16_MIN_GAP = 0.015


def bf16_candidates() -> list[list[int]]:
    """32 seeded prompts of 4 to 201 tokens (one of 201 runs chunked at prefill size 64)."""
    rng = random.Random(0)
    return [[1] + [rng.randrange(3, 512) for _ in range(rng.choice([3, 8, 20, 60, 200]))] for _ in range(32)]


@pytest.fixture(scope="session")
def gpu_tiny_llama(tiny_model_factory: Callable[..., str]) -> str:
    return tiny_model_factory("llama_gpu", "LlamaConfig", hidden_size=256, intermediate_size=512,
                              num_attention_heads=4, num_key_value_heads=2, initializer_range=0.15,
                              max_position_embeddings=2048)


@pytest.fixture(scope="session")
def bf16_llama(tiny_model_factory: Callable[..., str]) -> str:
    return tiny_model_factory("llama_bf16", "LlamaConfig", **BF16_MODEL)


@pytest.fixture(scope="session")
def bf16_reference(bf16_llama: str) -> dict[str, Any]:
    """The CPU engine in fp32 on the candidates: outputs, and the seed set without near-ties."""
    from sglang_nb.runtime.engine import Engine

    prompts = bf16_candidates()
    params = {"temperature": 0.0, "max_new_tokens": BF16_NEW_TOKENS, "ignore_eos": True}
    with Engine(model_path=bf16_llama, skip_tokenizer_init=True, device="cpu", dtype="float32",
                max_total_tokens=16384) as engine:
        outs = engine.generate(input_ids=prompts, sampling_params=[params] * len(prompts), return_logprob=True,
                               top_logprobs_num=2)
    selected = [i for i, o in enumerate(outs)
                if min(top[0][0] - top[1][0] for top in o["meta_info"]["output_top_logprobs"]) >= BF16_MIN_GAP]
    return {"prompts": prompts, "outputs": outs, "selected": selected, "params": params}
