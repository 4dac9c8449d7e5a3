"""OpenAI Files and Batches through the openai SDK: upload JSONL, run a batch, read its output."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import openai
import pytest


def _wait(oai: Any, batch_id: str, timeout: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = oai.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled"):
            return batch
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} still {batch.status}")


def _jsonl(lines: list[dict[str, Any]]) -> io.BytesIO:
    buf = io.BytesIO("".join(json.dumps(x) + "\n" for x in lines).encode())
    buf.name = "input.jsonl"
    return buf


def test_chat_batch_of_ten(oai: Any) -> None:
    lines = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "m", "messages": [{"role": "user", "content": f"What is {i} plus {i}?"}],
                       "max_tokens": 4, "temperature": 0}} for i in range(10)]
    upload = oai.files.create(file=_jsonl(lines), purpose="batch")
    assert upload.id.startswith("file-") and upload.purpose == "batch" and upload.bytes > 0
    assert oai.files.retrieve(upload.id).filename == "input.jsonl"
    batch = oai.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h",
                               metadata={"run": "test"})
    assert batch.status in ("validating", "in_progress") and batch.metadata == {"run": "test"}
    done = _wait(oai, batch.id)
    assert done.status == "completed", done.errors
    assert done.request_counts.total == 10 and done.request_counts.completed == 10
    rows = [json.loads(x) for x in oai.files.content(done.output_file_id).text.splitlines()]
    assert sorted(r["custom_id"] for r in rows) == sorted(f"req-{i}" for i in range(10))
    for r in rows:
        assert r["response"]["status_code"] == 200 and r["error"] is None
        assert r["response"]["body"]["object"] == "chat.completion"
        assert r["response"]["body"]["choices"][0]["message"]["content"] is not None
    assert any(b.id == batch.id for b in oai.batches.list().data)
    assert oai.files.delete(upload.id).deleted
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(upload.id)


def test_completion_batch_with_a_failing_line(oai: Any) -> None:
    lines = [{"custom_id": "ok", "method": "POST", "url": "/v1/completions",
              "body": {"model": "m", "prompt": "Hello", "max_tokens": 2}},
             {"custom_id": "bad", "method": "POST", "url": "/v1/completions",
              "body": {"model": "m", "prompt": "Hello", "max_tokens": 2, "temperature": -3}}]
    upload = oai.files.create(file=_jsonl(lines), purpose="batch")
    done = _wait(oai, oai.batches.create(input_file_id=upload.id, endpoint="/v1/completions",
                                         completion_window="24h").id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    ok = json.loads(oai.files.content(done.output_file_id).text)
    assert ok["custom_id"] == "ok" and ok["response"]["body"]["object"] == "text_completion"
    bad = json.loads(oai.files.content(done.error_file_id).text)
    assert bad["custom_id"] == "bad" and "temperature" in bad["error"]["message"]


def test_invalid_input_file_fails_the_batch(oai: Any) -> None:
    lines = [{"custom_id": "a", "method": "POST", "url": "/v1/completions",
              "body": {"prompt": "x", "stream": True}}]
    upload = oai.files.create(file=_jsonl(lines), purpose="batch")
    done = _wait(oai, oai.batches.create(input_file_id=upload.id, endpoint="/v1/completions",
                                         completion_window="24h").id)
    assert done.status == "failed"
    assert "Streaming requests are not supported in batch mode" in done.errors.data[0].message


def test_cancel_a_running_batch(oai: Any) -> None:
    lines = [{"custom_id": f"long-{i}", "method": "POST", "url": "/v1/completions",
              "body": {"prompt": f"Story {i}:", "max_tokens": 3000, "ignore_eos": True}} for i in range(3)]
    upload = oai.files.create(file=_jsonl(lines), purpose="batch")
    batch = oai.batches.create(input_file_id=upload.id, endpoint="/v1/completions", completion_window="24h")
    deadline = time.monotonic() + 60
    while oai.batches.retrieve(batch.id).status != "in_progress" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert oai.batches.cancel(batch.id).status == "cancelling"
    done = _wait(oai, batch.id, timeout=60)
    assert done.status == "cancelled" and done.request_counts.completed == 0
    with pytest.raises(openai.BadRequestError):
        oai.batches.cancel(batch.id)
