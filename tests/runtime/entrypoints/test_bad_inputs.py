"""Malformed requests get the documented 4xx with a message naming the problem (never a 500),
and the server keeps answering."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from http_helpers import ServerProcess

LONG = "word " * 9000  # more tokens than the 8192-token context
GEN = "/generate"
CMPL = "/v1/completions"
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]

# (method, path, JSON body or raw bytes, status, substring of the error message)
CASES: list[tuple[str, str, Any, int, str]] = [
    ("POST", GEN, b"{not json", 400, "Invalid JSON"),
    ("POST", GEN, b"", 400, "empty"),
    ("POST", GEN, [1, 2], 400, "JSON object"),
    ("POST", GEN, {}, 400, "Either text or input_ids should be provided."),
    ("POST", GEN, {"text": "a", "input_ids": [1]}, 400, "Either text or input_ids"),
    ("POST", GEN, {"text": 5}, 400, "text must be"),
    ("POST", GEN, {"input_ids": "abc"}, 400, "input_ids must be"),
    ("POST", GEN, {"input_ids": []}, 400, "input_ids cannot be empty"),
    ("POST", GEN, {"input_ids": [999999]}, 400, "input_ids must be in [0, 49151]"),
    ("POST", GEN, {"text": "a", "sampling_params": {"temperature": -1}}, 400, "temperature"),
    ("POST", GEN, {"text": "a", "sampling_params": {"top_p": 0}}, 400, "top_p must be in (0, 1]"),
    ("POST", GEN, {"text": "a", "sampling_params": {"top_k": 0}}, 400, "top_k must be -1"),
    ("POST", GEN, {"text": "a", "sampling_params": {"max_new_tokens": -1}}, 400, "max_new_tokens must be at least 0"),
    ("POST", GEN, {"text": "a", "sampling_params": {"max_new_tokens": "ten"}}, 400, "max_new_tokens must be an integer"),
    ("POST", GEN, {"text": "a", "sampling_params": {"bogus": 1}}, 400, "Unknown sampling parameter(s): bogus"),
    ("POST", GEN, {"text": "a", "sampling_params": "hot"}, 400, "sampling_params must be"),
    ("POST", GEN, {"text": "a", "sampling_params": {"min_new_tokens": 5, "max_new_tokens": 2}}, 400, "min_new_tokens"),
    ("POST", GEN, {"text": "a", "sampling_params": {"regex": "a", "ebnf": "b"}}, 400, "Only one of regex"),
    ("POST", GEN, {"text": "a", "sampling_params": {"frequency_penalty": 3}}, 400, "frequency_penalty"),
    ("POST", GEN, {"text": "a", "sampling_params": {"stop_token_ids": [1.5]}}, 400, "stop_token_ids"),
    ("POST", GEN, {"text": "a", "sampling_params": {"n": 0}}, 400, "n must be"),
    ("POST", GEN, {"text": "a", "return_logprob": "yes"}, 400, "return_logprob must be a boolean"),
    ("POST", GEN, {"text": "a", "return_logprob": True, "logprob_start_len": 50}, 400, "logprob_start_len"),
    ("POST", GEN, {"text": "a", "rid": 5}, 400, "rid must be a string"),
    ("POST", GEN, {"text": ["a", "b"], "rid": ["x", "x"]}, 400, "Duplicate request IDs"),
    ("POST", GEN, {"text": "a", "stream": "yes"}, 400, "stream must be a boolean"),
    ("POST", GEN, {"text": "a", "sampling_param": {}}, 400, "Unknown field(s) in the request body: sampling_param"),
    ("POST", GEN, {"text": LONG}, 400, "longer than the model's context length"),
    ("POST", GEN, {"text": "a", "image_data": "x.png"}, 400, "image_data"),
    ("POST", GEN, {"text": "a", "lora_path": "x"}, 400, "lora_path"),
    ("GET", GEN, None, 405, "Method Not Allowed"),
    ("POST", "/abort_request", {}, 400, "rid is required"),
    ("POST", "/tokenize", {}, 400, "Exactly one of 'prompt' or 'messages' must be provided."),
    ("POST", "/detokenize", {"tokens": ["a"]}, 400, "tokens must be"),
    ("GET", "/cache_state?max_nodes=abc", None, 400, "max_nodes"),
    ("GET", "/no/such/route", None, 404, "Not found"),
    ("POST", CMPL, {}, 400, "prompt is required"),
    ("POST", CMPL, {"prompt": "a", "max_tokens": -1}, 400, "max_tokens must be at least 0"),
    ("POST", CMPL, {"prompt": "a", "n": 0}, 400, "n must be in [1, 128]"),
    ("POST", CMPL, {"prompt": "a", "temperature": "hot"}, 400, "temperature must be a finite number"),
    ("POST", CMPL, {"prompt": "a", "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ("POST", CMPL, {"prompt": [[]]}, 400, "prompt must be"),
    ("POST", CMPL, {"prompt": "a", "max_tokens": 9000}, 400, "maximum context length of 8192 tokens"),
    ("POST", CMPL, {"prompt": "a", "logit_bias": {"x": 1}}, 400, "logit_bias"),
    ("POST", CMPL, {"prompt": "a", "top_p": 1.5}, 400, "top_p"),
    ("POST", CMPL, {"prompt": LONG}, 400, "longer than the model's context length"),
    ("POST", CHAT, {"messages": []}, 400, "messages must be a non-empty array"),
    ("POST", CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    ("POST", CHAT, {"messages": [{"role": "user"}]}, 400, "messages[0].content is required"),
    ("POST", CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     400, "does not accept images"),
    ("POST", CHAT, {"messages": USER, "top_logprobs": 2}, 400, "top_logprobs requires logprobs"),
    ("POST", CHAT, {"messages": USER, "logprobs": True, "top_logprobs": 21}, 400, "top_logprobs must be in [0, 20]"),
    ("POST", CHAT, {"messages": USER, "tool_choice": "required"}, 400, "needs tools"),
    ("POST", CHAT, {"messages": USER, "tools": [{"type": "function"}]}, 400, "tools[0]"),
    ("POST", CHAT, {"messages": USER, "response_format": {"type": "xml"}}, 400, "response_format.type"),
    ("POST", CHAT, {"messages": USER, "max_tokens": 0}, 400, "max_tokens must be at least 1"),
    ("POST", CHAT, {"messages": "hello"}, 400, "messages must be"),
    ("POST", "/v1/embeddings", {"input": ""}, 400, "Input cannot be empty"),
    ("POST", "/v1/batches", {"input_file_id": "nope", "endpoint": "/v1/chat/completions"}, 400, "No file"),
    ("POST", "/v1/batches", {"input_file_id": "x", "endpoint": "/v2/x"}, 400, "endpoint must be one of"),
    ("GET", "/v1/batches/batch_nope", None, 404, "Batch not found"),
    ("POST", "/v1/batches/batch_nope/cancel", None, 404, "Batch not found"),
    ("GET", "/v1/files/file-nope", None, 404, "File not found"),
    ("POST", "/v1/files", {"file": "x"}, 400, "multipart/form-data"),
]


def _message(path: str, body: dict[str, Any]) -> str:
    err = body["error"]
    if path.startswith("/v1/"):
        assert body["object"] == "error" and isinstance(err, dict)
        assert set(err) >= {"message", "type", "param", "code"}
    return str(err["message"])


@pytest.mark.parametrize(("method", "path", "body", "status", "needle"), CASES,
                         ids=[f"{i:02d}-{c[1]}" for i, c in enumerate(CASES)])
def test_bad_input(http: httpx.Client, method: str, path: str, body: Any, status: int, needle: str) -> None:
    if isinstance(body, bytes):
        r = http.request(method, path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = http.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    message = _message(path, r.json())
    assert needle in message, message
    if path.startswith("/v1/") and status == 400:
        assert r.json()["error"]["code"] == 400


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_oversized_body_is_refused_with_413(http: httpx.Client) -> None:
    body = b'{"text": "' + b"a" * (64 * 1024 * 1024 + 10) + b'"}'
    r = http.post("/generate", content=body)
    assert r.status_code == 413 and "too large" in r.json()["error"]["message"]


def test_server_still_answers_and_logged_no_traceback(http: httpx.Client, server: ServerProcess) -> None:
    r = http.post("/generate", json={"text": "Still alive?", "sampling_params": {"max_new_tokens": 2}})
    assert r.status_code == 200 and r.json()["meta_info"]["completion_tokens"] >= 1
    assert "Traceback" not in server.log()
