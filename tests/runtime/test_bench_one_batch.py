"""CPU checks of the overlap event loop (forced on with --enable-overlap-schedule) and of the
benchmarks: bench_one_batch --correct on the embedded model, latency and offline throughput on a tiny one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

PROMPTS = [[1, 5, 9, 23, 7, 8], [1, 5, 9, 23, 7, 8, 40, 41, 42], [1, 77, 3], list(range(3, 120))]


def _run(engine: Any, max_new: int = 12) -> list[list[int]]:
    params = {"temperature": 0.0, "max_new_tokens": max_new, "ignore_eos": True}
    out = engine.generate(input_ids=PROMPTS, sampling_params=[params] * len(PROMPTS))
    return [o["output_ids"] for o in out]


@pytest.fixture(scope="module")
def overlap_engines(tiny_llama: str) -> Iterator[tuple[Any, Any]]:
    from sglang_nb.runtime.engine import Engine

    plain = Engine(model_path=tiny_llama, skip_tokenizer_init=True, max_total_tokens=4096)
    overlap = Engine(model_path=tiny_llama, skip_tokenizer_init=True, max_total_tokens=4096,
                     enable_overlap_schedule=True, chunked_prefill_size=32)
    yield plain, overlap
    plain.shutdown()
    overlap.shutdown()


def test_overlap_matches_plain_loop(overlap_engines: tuple[Any, Any]) -> None:
    plain, overlap = overlap_engines
    ref = _run(plain)
    assert _run(overlap) == ref
    # Second round: every prompt is now a cache hit (and the long one is chunked).
    assert _run(overlap) == ref


def test_overlap_mixed_lengths_and_stop(overlap_engines: tuple[Any, Any]) -> None:
    plain, overlap = overlap_engines
    params = [{"temperature": 0.0, "max_new_tokens": n, "ignore_eos": True} for n in (1, 3, 7, 2)]
    want = [o["output_ids"] for o in plain.generate(input_ids=PROMPTS, sampling_params=params)]
    got = [o["output_ids"] for o in overlap.generate(input_ids=PROMPTS, sampling_params=params)]
    assert got == want
    assert [len(g) for g in got] == [1, 3, 7, 2]
    # Penalties and logprobs take the synchronous path inside the overlap loop.
    p = {"temperature": 0.0, "max_new_tokens": 6, "frequency_penalty": 0.5}
    a = overlap.generate(input_ids=PROMPTS[0], sampling_params=p, return_logprob=True)
    b = plain.generate(input_ids=PROMPTS[0], sampling_params=p, return_logprob=True)
    assert a["output_ids"] == b["output_ids"]
    state = overlap.get_internal_state()
    assert state["locked_kv_tokens"] == 0


def test_bench_one_batch_correct_tiny(tiny_llama: str, tmp_path: Any,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from sglang_nb.runtime.bench.bench_one_batch import BenchArgs, correctness_test, latency_test
    from sglang_nb.runtime.server_args import ServerArgs

    # --correct needs a tokenizer: the embedded default model has one.
    texts = correctness_test(ServerArgs(max_total_tokens=2048), BenchArgs(output_len=(4,)))
    out = capsys.readouterr().out
    assert "prefill logits (first half)" in out and "prefill logits (final)" in out
    assert "========== Prompt 2 ==========" in out and len(texts) == 3
    assert texts[0].startswith("The capital of France is")
    res = latency_test(ServerArgs(model_path=tiny_llama, max_total_tokens=2048, skip_tokenizer_init=True),
                       BenchArgs(batch_size=(2,), input_len=(16,), output_len=(4,),
                                 result_filename=str(tmp_path / "r.jsonl")))
    assert res[0]["median_decode_latency"] > 0 and (tmp_path / "r.jsonl").exists()
    assert "Prefill. latency:" in capsys.readouterr().out


def test_bench_offline_throughput_tiny(tiny_llama: str, capsys: pytest.CaptureFixture[str]) -> None:
    from sglang_nb.runtime.bench.bench_offline_throughput import BenchArgs, throughput_test
    from sglang_nb.runtime.server_args import ServerArgs

    res = throughput_test(ServerArgs(model_path=tiny_llama, skip_tokenizer_init=True, max_total_tokens=4096),
                          BenchArgs(num_prompts=6, random_input_len=32, random_output_len=8, skip_warmup=True))
    assert res["successful_requests"] == 6 and res["total_output_tokens"] > 0
    assert "Offline Throughput Benchmark Result" in capsys.readouterr().out


def test_random_dataset_lengths() -> None:
    from sglang_nb.runtime.bench.bench_offline_throughput import sample_random_requests

    rows = sample_random_requests(50, 64, 16, 0.0, 500, 1)
    assert all(1 <= r.prompt_len <= 64 and 1 <= r.output_len <= 16 for r in rows)
    assert all(len(r.input_ids or []) == r.prompt_len for r in rows)
    with pytest.raises(ValueError):
        sample_random_requests(1, 0, 16, 0.0, 500, 1)

