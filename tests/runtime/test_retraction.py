"""Many requests against a KV pool far smaller than their total: admission, retraction and resumption."""

from __future__ import annotations

import random

from sglang_nb.runtime.engine import Engine


def test_120_requests_in_a_small_pool_all_finish_with_solo_outputs(tiny_llama):
    rng = random.Random(7)
    prompts = [[rng.randrange(3, 512) for _ in range(rng.randrange(5, 60))] for _ in range(120)]
    params = [{"temperature": 0, "max_new_tokens": rng.randrange(5, 60), "ignore_eos": True} for _ in prompts]
    longest = max(len(p) + q["max_new_tokens"] for p, q in zip(prompts, params))
    pool = 3 * longest
    with Engine(model_path=tiny_llama, skip_tokenizer_init=True, max_total_tokens=pool,
                chunked_prefill_size=64) as engine:
        together = engine.generate(input_ids=prompts, sampling_params=params)
        state = engine.get_internal_state()
        assert state["num_retractions"] > 0, "the pool was large enough: this test would prove nothing"
        assert state["available_kv_tokens"] + state["evictable_kv_tokens"] == pool
        assert state["locked_kv_tokens"] == 0
        engine.flush_cache()
        solo = [engine.generate(input_ids=p, sampling_params=q) for p, q in zip(prompts, params)]
    for a, b, q in zip(together, solo, params):
        assert len(a["output_ids"]) == q["max_new_tokens"]
        assert a["output_ids"] == b["output_ids"]
