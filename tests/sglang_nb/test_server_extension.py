"""The jupyter_server extension with pytest-jupyter: auth on every route, the runtime's own routes
mounted under {base_url}sglang_nb/, streaming generate, status, cache, the events websocket."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pytest_jupyter.jupyter_core import *  # noqa: F403 - pytest-jupyter's fixtures, for this module only
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

BAD_TOKEN = {"Authorization": "token not-the-token"}


def _fetch(loop: Any, jp_fetch: Any, *parts: str, **kwargs: Any) -> Any:
    return loop.run_until_complete(jp_fetch(*parts, **kwargs))


def _status_of(loop: Any, jp_fetch: Any, *parts: str, **kwargs: Any) -> int:
    try:
        return int(_fetch(loop, jp_fetch, *parts, **kwargs).code)
    except HTTPClientError as e:
        return int(e.code)


@pytest.fixture
def jp_server_config(request: Any) -> Any:
    from traitlets.config import Config

    return Config({"ServerApp": {"jpserver_extensions": {"sglang_nb": True}}, **getattr(request, "param", {})})


def test_routes_need_jupyter_auth_and_say_when_no_runtime_runs(jp_fetch: Any, jp_asyncio_loop: Any) -> None:
    loop = jp_asyncio_loop
    body = json.loads(_fetch(loop, jp_fetch, "sglang_nb", "status").body)
    assert body["server_runtime"] is None and isinstance(body["runtimes"], list)
    for parts in (("sglang_nb", "status"), ("sglang_nb", "cache"), ("sglang_nb", "health")):
        assert _status_of(loop, jp_fetch, *parts, headers=BAD_TOKEN) == 403, parts
    assert _status_of(loop, jp_fetch, "sglang_nb", "generate", method="POST", body="{}", headers=BAD_TOKEN) == 403
    with pytest.raises(HTTPClientError) as e:
        _fetch(loop, jp_fetch, "sglang_nb", "generate", method="POST", body='{"text": "hi"}')
    assert e.value.code == 404 and b"start_runtime" in e.value.response.body
    with pytest.raises(HTTPClientError) as e:
        _fetch(loop, jp_fetch, "sglang_nb", "cache", params={"max_nodes": "0"})
    assert e.value.code == 400


RUNTIME_CONFIG = {"SglangNbApp": {"start_runtime": True, "poll_interval_ms": 200,
                                  "server_args": {"max_total_tokens": 8192}}}


@pytest.mark.parametrize("jp_server_config", [RUNTIME_CONFIG], indirect=True)
def test_server_runtime_generate_stream_cache_events_and_overhead(
        jp_fetch: Any, jp_ws_fetch: Any,
        jp_asyncio_loop: Any, jp_serverapp: Any) -> None:
    loop = jp_asyncio_loop
    app = jp_serverapp.extension_manager.extension_apps["sglang_nb"]
    assert app  # the extension is loaded from the config the package installs
    ext = next(iter(app))
    deadline = time.monotonic() + 300
    while ext.runtime_state == "starting" and time.monotonic() < deadline:
        assert _status_of(loop, jp_fetch, "sglang_nb", "health") in (503, 200)
        loop.run_until_complete(_sleep(0.5))
    assert ext.runtime_state == "ready", ext.runtime_error

    status = json.loads(_fetch(loop, jp_fetch, "sglang_nb", "status").body)
    assert status["server_runtime"]["state"] == "ready"
    assert any(r["owner_kind"] == "server" for r in status["runtimes"])  # shared with kernels
    assert _status_of(loop, jp_fetch, "sglang_nb", "health") == 200
    assert _status_of(loop, jp_fetch, "sglang_nb", "health", headers=BAD_TOKEN) == 403

    chunks: list[bytes] = []
    body = json.dumps({"text": "The capital of France is", "stream": True,
                       "sampling_params": {"max_new_tokens": 6, "temperature": 0}})
    response = _fetch(loop, jp_fetch, "sglang_nb", "generate", method="POST", body=body,
                      streaming_callback=chunks.append)
    assert response.code == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    events = [line[5:].strip() for line in b"".join(chunks).decode().splitlines() if line.startswith("data:")]
    assert events[-1] == "[DONE]" and len(events) >= 3
    assert json.loads(events[-2])["meta_info"]["completion_tokens"] == 6

    models = json.loads(_fetch(loop, jp_fetch, "sglang_nb", "v1", "models").body)
    assert models["data"]
    cache = json.loads(_fetch(loop, jp_fetch, "sglang_nb", "cache", params={"max_nodes": "20"}).body)
    assert cache["tree"]["nodes"] and cache["kpis"]["prompt_tokens"] > 0

    ws = loop.run_until_complete(jp_ws_fetch("sglang_nb", "events"))
    stats = json.loads(loop.run_until_complete(ws.read_message()))
    assert stats["type"] == "stats" and stats["pool_tokens"] > 0
    ws.write_message(json.dumps({"type": "flush"}))
    while True:
        msg = json.loads(loop.run_until_complete(ws.read_message()))
        if msg["type"] == "result":
            break
    assert msg["command"] == "flush" and msg["success"] is True
    ws.write_message("not json")
    ws.close()

    # The same engine through the extension and directly on its loopback port (kernels use that one).
    record = next(r for r in status["runtimes"] if r["owner_kind"] == "server")
    from sglang_nb._registry import load_records

    key = next(r.api_key for r in load_records() if r.id == record["id"])
    timings = loop.run_until_complete(_overhead(jp_fetch, record["url"], key, rounds=5))
    print(f"\ngenerate (8 tokens) through the extension: {timings['extension'] * 1000:.1f} ms, "
          f"direct: {timings['direct'] * 1000:.1f} ms (median of 5)")
    assert timings["extension"] < timings["direct"] + 1.0


async def _sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)


async def _overhead(jp_fetch: Any, url: str, key: str, rounds: int) -> dict[str, float]:
    import statistics

    body = json.dumps({"text": "Count: one two three", "sampling_params": {"max_new_tokens": 8, "temperature": 0,
                                                                            "ignore_eos": True}})
    client = AsyncHTTPClient()
    ext, direct = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await jp_fetch("sglang_nb", "generate", method="POST", body=body)
        ext.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await client.fetch(url + "/generate", method="POST", body=body, headers={"Authorization": f"Bearer {key}"})
        direct.append(time.perf_counter() - t0)
    return {"extension": statistics.median(ext), "direct": statistics.median(direct)}
