"""Engine API behaviour on the tiny Llama (token ids in, token ids out)."""

from __future__ import annotations

import asyncio
import threading

import pytest

GREEDY = {"temperature": 0, "max_new_tokens": 8, "ignore_eos": True}
IDS = [5, 17, 300, 42, 9, 77, 101]


def test_single_and_batch_shapes(tiny_llama_engine):
    single = tiny_llama_engine.generate(input_ids=IDS, sampling_params=GREEDY)
    assert isinstance(single, dict) and len(single["output_ids"]) == 8
    meta = single["meta_info"]
    assert meta["prompt_tokens"] == 7 and meta["completion_tokens"] == 8 and meta["e2e_latency"] > 0
    batch = tiny_llama_engine.generate(input_ids=[IDS, IDS[:3]], sampling_params=GREEDY)
    assert isinstance(batch, list) and len(batch) == 2
    assert batch[0]["output_ids"] == single["output_ids"]


def test_n_samples_are_prompt_major_with_fresh_ids(tiny_llama_engine):
    outs = tiny_llama_engine.generate(input_ids=[IDS, IDS[:4]], sampling_params={**GREEDY, "n": 3}, rid=["a", "b"])
    assert len(outs) == 6
    assert len({o["meta_info"]["id"] for o in outs}) == 6
    assert outs[0]["output_ids"] == outs[1]["output_ids"] == outs[2]["output_ids"]  # greedy: identical samples
    assert all(o["meta_info"]["cached_tokens"] > 0 for o in outs)  # the prefix was cached first


def test_stream_yields_deltas_that_add_up(tiny_llama_engine):
    full = tiny_llama_engine.generate(input_ids=IDS, sampling_params=GREEDY)
    chunks = list(tiny_llama_engine.generate(input_ids=IDS, sampling_params=GREEDY, stream=True))
    assert len(chunks) >= 2
    assert sum((c["output_ids"] for c in chunks), []) == full["output_ids"]
    assert chunks[-1]["meta_info"]["finish_reason"]["type"] == "length"
    assert all(c["meta_info"]["finish_reason"] is None for c in chunks[:-1])


def test_async_generate_and_async_stream(tiny_llama_engine):
    async def main():
        out = await tiny_llama_engine.async_generate(input_ids=IDS, sampling_params=GREEDY)
        gen = await tiny_llama_engine.async_generate(input_ids=IDS, sampling_params=GREEDY, stream=True)
        ids = []
        async for chunk in gen:
            ids += chunk["output_ids"]
        return out, ids

    out, ids = asyncio.run(main())
    assert ids == out["output_ids"]


def test_sync_api_works_inside_a_running_loop(tiny_llama_engine):
    """As in a Jupyter cell: the caller's thread already runs an event loop."""
    async def cell():
        return tiny_llama_engine.generate(input_ids=IDS, sampling_params=GREEDY)

    assert len(asyncio.run(cell())["output_ids"]) == 8


def test_seeded_sampling_is_reproducible(tiny_llama_engine):
    params = {"temperature": 1.0, "top_p": 0.9, "top_k": 50, "max_new_tokens": 12, "ignore_eos": True,
              "sampling_seed": 1234}
    a = tiny_llama_engine.generate(input_ids=IDS, sampling_params=params)
    b = tiny_llama_engine.generate(input_ids=IDS, sampling_params=params)
    c = tiny_llama_engine.generate(input_ids=IDS, sampling_params={**params, "sampling_seed": 99})
    assert a["output_ids"] == b["output_ids"] and a["output_ids"] != c["output_ids"]


def test_stop_token_ids_and_min_new_tokens(tiny_llama_engine):
    free = tiny_llama_engine.generate(input_ids=IDS, sampling_params=GREEDY)["output_ids"]
    stop = free[3]
    out = tiny_llama_engine.generate(input_ids=IDS, sampling_params={**GREEDY, "stop_token_ids": [stop]})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert out["output_ids"] == free[: free.index(stop) + 1]
    # The stop token is masked until min_new_tokens have been generated.
    masked = tiny_llama_engine.generate(input_ids=IDS, sampling_params={**GREEDY, "stop_token_ids": [stop],
                                                                        "min_new_tokens": 8, "max_new_tokens": 8})
    assert stop not in masked["output_ids"][: free.index(stop) + 1] or masked["output_ids"] != out["output_ids"]


def test_max_new_tokens_zero_prefills_only(tiny_llama_engine):
    out = tiny_llama_engine.generate(input_ids=IDS, sampling_params={"max_new_tokens": 0})
    assert out["output_ids"] == [] and out["meta_info"]["finish_reason"] == {"type": "length", "length": 0}


def test_penalties_change_the_output(tiny_llama_engine):
    base = tiny_llama_engine.generate(input_ids=IDS, sampling_params={**GREEDY, "max_new_tokens": 24})
    pen = tiny_llama_engine.generate(input_ids=IDS, sampling_params={**GREEDY, "max_new_tokens": 24,
                                                                     "repetition_penalty": 2.0,
                                                                     "frequency_penalty": 2.0})
    assert base["output_ids"] != pen["output_ids"]
    assert len(set(pen["output_ids"])) >= len(set(base["output_ids"]))


@pytest.mark.parametrize("params, match", [
    ({"top_p": 1.5}, "top_p"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"temperature": -0.5}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"min_p": 2}, "min_p"),
    ({"frequency_penalty": 3}, "frequency_penalty"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"min_new_tokens": 5, "max_new_tokens": 2}, "min_new_tokens"),
    ({"bogus_field": 1}, "bogus_field"),
    ({"temperature": "hot"}, "temperature"),
    ({"regex": "a", "json_schema": "{}"}, "Only one of regex"),
])
def test_bad_sampling_params_raise_value_error(tiny_llama_engine, params, match):
    with pytest.raises(ValueError, match=match):
        tiny_llama_engine.generate(input_ids=IDS, sampling_params=params)


def test_bad_inputs_raise_and_engine_keeps_serving(tiny_llama_engine):
    with pytest.raises(ValueError, match="Either text or input_ids"):
        tiny_llama_engine.generate(sampling_params=GREEDY)
    with pytest.raises(ValueError, match="input_ids cannot be empty"):
        tiny_llama_engine.generate(input_ids=[], sampling_params=GREEDY)
    with pytest.raises(ValueError, match="context length"):
        tiny_llama_engine.generate(input_ids=[5] * 600, sampling_params=GREEDY)
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 511\]"):
        tiny_llama_engine.generate(input_ids=[5, 9999], sampling_params=GREEDY)
    with pytest.raises(ValueError, match="logprob_start_len"):
        tiny_llama_engine.generate(input_ids=IDS, return_logprob=True, logprob_start_len=50)
    with pytest.raises(ValueError, match="text prompts"):
        tiny_llama_engine.generate(prompt="hello")
    assert len(tiny_llama_engine.generate(input_ids=IDS, sampling_params=GREEDY)["output_ids"]) == 8


def test_abort_a_running_stream(tiny_llama_engine):
    rid = "abort-me"
    chunks = []
    gen = tiny_llama_engine.generate(input_ids=IDS, sampling_params={**GREEDY, "max_new_tokens": 400}, stream=True,
                                     rid=rid)
    timer = threading.Timer(0.3, tiny_llama_engine.abort_request, args=(rid,))
    timer.start()
    for chunk in gen:
        chunks.append(chunk)
    assert chunks[-1]["meta_info"]["finish_reason"]["type"] == "abort"
    assert sum(len(c["output_ids"]) for c in chunks) < 400


def test_server_info_reports_pool_and_cache(tiny_llama_engine):
    info = tiny_llama_engine.get_server_info()
    assert info["max_total_num_tokens"] == 4096 and info["context_len"] == 512
    assert {"cache_hit_rate", "token_usage", "num_running_reqs", "num_waiting_reqs"} <= set(info)
    state = tiny_llama_engine.get_internal_state(with_tree=True, max_nodes=5)
    assert state["tree"]["enabled"] and len(state["tree"]["nodes"]) <= 5 + 20  # ancestors may be added


def test_profile_through_the_engine(tiny_llama_engine, tmp_path):
    engine = tiny_llama_engine
    with pytest.raises(ValueError, match="not in progress"):
        engine.stop_profile()
    with pytest.raises(ValueError, match="num_steps"):
        engine.start_profile(num_steps=0)
    engine.start_profile(output_dir=str(tmp_path), activities=["CPU"], record_shapes=True)
    with pytest.raises(ValueError, match="already in progress"):
        engine.start_profile(output_dir=str(tmp_path))
    engine.generate(input_ids=[5, 6, 7, 8], sampling_params={"max_new_tokens": 3, "temperature": 0})
    trace = engine.stop_profile()
    assert trace is not None and trace.startswith(str(tmp_path)) and trace.endswith(".trace.json.gz")
    assert (tmp_path / trace.rsplit("/", 1)[1]).stat().st_size > 0
    out = engine.generate(input_ids=[5, 6, 7], sampling_params={"max_new_tokens": 2})
    assert out["meta_info"]["completion_tokens"] == 2
