"""Llama-family models against Hugging Face transformers (the oracle), fp32 on CPU.

Each engine uses a small chunk size so that long prompts are prefilled in several chunks.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from sglang_nb.runtime.engine import Engine

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", {}),
    "llama3_rope": ("LlamaConfig", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                        "original_max_position_embeddings": 64}}),
    "llama32_tied": ("LlamaConfig", {"tie_word_embeddings": True, "head_dim": 32}),
    "mistral_swa": ("MistralConfig", {"sliding_window": 8}),
    "qwen2_tied": ("Qwen2Config", {"tie_word_embeddings": True}),
}
CHUNK = 16
GREEDY = {"temperature": 0, "max_new_tokens": 24, "ignore_eos": True}


def _prompts(seed: int, lengths: list[int]) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 512) for _ in range(n)] for n in lengths]


@pytest.fixture(scope="module", params=list(CONFIGS))
def setup(request, tiny_model_factory):
    cls, overrides = CONFIGS[request.param]
    path = tiny_model_factory(request.param, cls, **overrides)
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    engine = Engine(model_path=path, skip_tokenizer_init=True, chunked_prefill_size=CHUNK, max_total_tokens=8192)
    yield engine, hf
    engine.shutdown()


def _hf_logprobs(hf, ids: list[int]) -> list[float]:
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [lp[i, ids[i + 1]].item() for i in range(len(ids) - 1)]


def _hf_greedy(hf, ids: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                          pad_token_id=0)
    return out[0, len(ids):].tolist()


@pytest.mark.parametrize("length", [5, 40])  # 40 > CHUNK: three chunks
def test_prompt_logprobs_match_transformers(setup, length):
    engine, hf = setup
    ids = _prompts(length, [length])[0]
    out = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 1}, return_logprob=True,
                          logprob_start_len=0)
    got = out["meta_info"]["input_token_logprobs"]
    assert [t[1] for t in got] == ids
    assert got[0][0] is None
    ref = _hf_logprobs(hf, ids)
    assert max(abs(a[0] - b) for a, b in zip(got[1:], ref)) < 2e-3


def test_greedy_tokens_match_transformers(setup):
    engine, hf = setup
    ids = _prompts(1, [12])[0]
    out = engine.generate(input_ids=ids, sampling_params=GREEDY)
    assert out["output_ids"] == _hf_greedy(hf, ids, 24)
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 24}


def test_batch_of_mixed_lengths_with_chunking(setup):
    engine, hf = setup
    prompts = _prompts(2, [3, 17, 9, 45, 30])
    outs = engine.generate(input_ids=prompts, sampling_params=GREEDY)
    for ids, out in zip(prompts, outs):
        assert out["output_ids"] == _hf_greedy(hf, ids, 24)


def test_repeated_prompt_hits_the_cache_and_keeps_output(setup):
    engine, hf = setup
    ids = _prompts(3, [33])[0]
    first = engine.generate(input_ids=ids, sampling_params=GREEDY)
    second = engine.generate(input_ids=ids, sampling_params=GREEDY)
    assert second["meta_info"]["cached_tokens"] > 0
    assert first["output_ids"] == second["output_ids"] == _hf_greedy(hf, ids, 24)


def test_output_logprobs_match_transformers(setup):
    engine, hf = setup
    ids = _prompts(4, [10])[0]
    out = engine.generate(input_ids=ids, sampling_params={**GREEDY, "max_new_tokens": 6}, return_logprob=True,
                          top_logprobs_num=3)
    full = ids + out["output_ids"]
    ref = _hf_logprobs(hf, full)[len(ids) - 1:]
    got = [t[0] for t in out["meta_info"]["output_token_logprobs"]]
    assert max(abs(a - b) for a, b in zip(got, ref)) < 2e-3
    top = out["meta_info"]["output_top_logprobs"]
    assert len(top) == 6 and all(len(t) == 3 for t in top)
    assert top[0][0][1] == out["output_ids"][0]  # greedy: the top-1 alternative is the sampled token
