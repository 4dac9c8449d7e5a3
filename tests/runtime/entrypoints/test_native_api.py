"""The native API over HTTP (httpx) against a real server: /generate in all its forms, cache
flush, abort, tokenize, load, metrics and the cache inspector's snapshot."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from http_helpers import wait_idle

GREEDY = {"temperature": 0, "max_new_tokens": 6}


def sse_events(resp: httpx.Response) -> list[Any]:
    events = []
    for line in resp.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_generate_single(http: httpx.Client) -> None:
    r = http.post("/generate", json={"text": "The capital of France is", "sampling_params": GREEDY,
                                     "rid": "my-request-1"})
    assert r.status_code == 200, r.text
    out = r.json()
    meta = out["meta_info"]
    assert meta["id"] == "my-request-1"
    assert meta["completion_tokens"] == len(out["output_ids"]) <= 6
    assert meta["prompt_tokens"] == 5
    assert meta["finish_reason"]["type"] in ("length", "stop")
    assert isinstance(out["text"], str) and out["text"]
    assert meta["e2e_latency"] > 0


def test_generate_put_and_input_ids(http: httpx.Client) -> None:
    ids = http.post("/tokenize", json={"prompt": "The capital of France is"}).json()["tokens"]
    by_text = http.post("/generate", json={"text": "The capital of France is", "sampling_params": GREEDY}).json()
    by_ids = http.put("/generate", json={"input_ids": ids, "sampling_params": GREEDY}).json()
    assert by_ids["output_ids"] == by_text["output_ids"]


def test_generate_batch_and_n(http: httpx.Client) -> None:
    r = http.post("/generate", json={"text": ["Hello, my name is", "The sky is"],
                                     "sampling_params": {"temperature": 0, "max_new_tokens": 4}})
    outs = r.json()
    assert isinstance(outs, list) and len(outs) == 2
    single = http.post("/generate", json={"text": "The sky is",
                                          "sampling_params": {"temperature": 0, "max_new_tokens": 4}}).json()
    assert outs[1]["output_ids"] == single["output_ids"]
    r = http.post("/generate", json={"text": ["A", "B"], "sampling_params": {"max_new_tokens": 3, "n": 2}})
    outs = r.json()
    assert len(outs) == 4 and len({o["meta_info"]["id"] for o in outs}) == 4


def test_generate_stream_is_cumulative_and_ends_with_done(http: httpx.Client) -> None:
    body = {"text": "Once upon a time", "sampling_params": GREEDY, "stream": True}
    with http.stream("POST", "/generate", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(chunks) >= 2
    for a, b in zip(chunks, chunks[1:]):
        assert b["text"].startswith(a["text"])
    assert chunks[-1]["meta_info"]["finish_reason"] is not None
    assert all(c["meta_info"]["finish_reason"] is None for c in chunks[:-1])
    full = http.post("/generate", json={**body, "stream": False}).json()
    assert chunks[-1]["text"] == full["text"]


def test_generate_stream_batch_has_index(http: httpx.Client) -> None:
    body = {"text": ["One", "Two"], "sampling_params": {"temperature": 0, "max_new_tokens": 3}, "stream": True}
    with http.stream("POST", "/generate", json=body) as r:
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    assert {e["index"] for e in events[:-1]} == {0, 1}


def test_stream_errors_are_plain_http_errors_before_the_stream_starts(http: httpx.Client) -> None:
    r = http.post("/generate", json={"text": "x", "sampling_params": {"top_p": 5}, "stream": True})
    assert r.status_code == 400
    assert "top_p" in r.json()["error"]["message"]


def test_logprobs_first_input_logprob_is_null(http: httpx.Client) -> None:
    r = http.post("/generate", json={"text": "Paris is the capital of", "sampling_params": GREEDY,
                                     "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": 2,
                                     "return_text_in_logprobs": True})
    meta = r.json()["meta_info"]
    first = meta["input_token_logprobs"][0]
    assert first[0] is None and isinstance(first[1], int) and isinstance(first[2], str)
    assert all(lp[0] <= 0 for lp in meta["input_token_logprobs"][1:])
    assert len(meta["input_token_logprobs"]) == meta["prompt_tokens"]
    assert len(meta["output_token_logprobs"]) == meta["completion_tokens"]
    assert all(len(top) == 2 for top in meta["output_top_logprobs"])
    # Greedy: the chosen token is the top-1 alternative.
    assert all(tok[1] == top[0][1] for tok, top in zip(meta["output_token_logprobs"], meta["output_top_logprobs"]))


def test_cached_tokens_on_repeat(http: httpx.Client) -> None:
    body = {"text": "A long shared prefix about the history of the Roman empire and its emperors.",
            "sampling_params": {"temperature": 0, "max_new_tokens": 2}}
    first = http.post("/generate", json=body).json()
    second = http.post("/generate", json=body).json()
    assert second["meta_info"]["cached_tokens"] > 0
    assert second["output_ids"] == first["output_ids"]


def test_flush_cache(http: httpx.Client) -> None:
    body = {"text": "Flush me: a prompt that is cached once and then flushed away.",
            "sampling_params": {"temperature": 0, "max_new_tokens": 1}}
    http.post("/generate", json=body)
    wait_idle(http)
    r = http.post("/flush_cache")
    assert r.status_code == 200 and r.text.startswith("Cache flushed.")
    info = http.get("/get_server_info").json()
    assert info["evictable_kv_tokens"] == 0
    assert info["available_kv_tokens"] == info["max_total_num_tokens"]
    assert http.post("/generate", json=body).json()["meta_info"]["cached_tokens"] == 0


def test_flush_cache_refused_while_running_and_abort(http: httpx.Client, base_url: str) -> None:
    rid = "abort-me-please"
    result: dict[str, Any] = {}

    def run() -> None:
        with httpx.Client(base_url=base_url, timeout=300) as c:
            result["out"] = c.post("/generate", json={"text": "Write a very long story.", "rid": rid,
                                                      "sampling_params": {"max_new_tokens": 2000,
                                                                          "ignore_eos": True}}).json()

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and http.get("/get_load").json()[0]["num_reqs"] == 0:
        time.sleep(0.2)
    r = http.post("/flush_cache")
    assert r.status_code == 400 and "Cache flushed" in r.text
    assert http.post("/abort_request", json={"rid": rid}).status_code == 200
    t.join(timeout=60)
    assert result["out"]["meta_info"]["finish_reason"]["type"] == "abort"
    assert result["out"]["meta_info"]["completion_tokens"] < 2000
    wait_idle(http)


def test_tokenize_detokenize(http: httpx.Client) -> None:
    r = http.post("/tokenize", json={"prompt": "Hello world"}).json()
    assert r["count"] == len(r["tokens"]) and r["max_model_len"] == 8192
    assert http.post("/detokenize", json={"tokens": r["tokens"]}).json()["text"] == "Hello world"
    batch = http.post("/v1/tokenize", json={"prompt": ["a", "b c"]}).json()
    assert batch["count"] == [len(t) for t in batch["tokens"]]
    chat = http.post("/tokenize", json={"messages": [{"role": "user", "content": "hi"}]}).json()
    assert chat["count"] > 3


def test_info_endpoints(http: httpx.Client) -> None:
    model = http.get("/get_model_info").json()
    assert model["is_generation"] is True and model["model_path"]
    for path in ("/get_server_info", "/server_info"):
        info = http.get(path).json()
        assert info["max_total_num_tokens"] == 16384 and info["status"] == "ready"
        assert isinstance(info["internal_states"], list) and "version" in info
        assert "api_key" not in info
    load = http.get("/get_load").json()
    assert load[0]["dp_rank"] == 0 and set(load[0]) >= {"num_reqs", "num_waiting_reqs", "num_tokens"}
    assert http.get("/health").status_code == 200
    assert http.get("/health_generate").status_code == 200


def test_cache_state_snapshot(http: httpx.Client) -> None:
    http.post("/generate", json={"text": "Cache inspector prefix", "sampling_params": {"max_new_tokens": 1}})
    state = http.get("/cache_state", params={"tree": "1", "max_nodes": "8"}).json()
    assert "tree" in state and state["max_total_num_tokens"] == 16384
    assert "tree" not in http.get("/cache_state").json()


def test_metrics(http: httpx.Client) -> None:
    http.post("/generate", json={"text": "Metrics", "sampling_params": {"max_new_tokens": 3}})
    text = http.get("/metrics").text
    for series in ("sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage",
                   "sglang:cache_hit_rate", "sglang:gen_throughput", "sglang:time_to_first_token_seconds_bucket",
                   "sglang:inter_token_latency_seconds_bucket", "sglang:generation_tokens_total",
                   "sglang:prompt_tokens_total", "sglang:e2e_request_latency_seconds_count"):
        assert series in text, series
    count = [ln for ln in text.splitlines() if ln.startswith("sglang:num_requests_total")]
    assert count and float(count[0].split()[-1]) >= 1


def test_constraints_reach_the_grammar_backend(http: httpx.Client) -> None:
    r = http.post("/generate", json={"text": "The answer is", "sampling_params": {
        "regex": "(yes|no)", "max_new_tokens": 4, "temperature": 0}})
    if r.status_code == 400:  # no grammar backend on this server: the scheduler's refusal, as a clean 400
        assert "onstrained decoding" in r.json()["error"]["message"]
    else:
        assert r.status_code == 200 and r.json()["text"] in ("yes", "no")
