"""The same handlers mounted by a host application (as the Jupyter server extension does): under a
prefix, behind the host's own base class and method decorators, with an Engine that runs its
TokenizerManager on its own background loop (so every call is bridged across loops)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import tornado.web
from http_helpers import free_port

PREFIX = "/a%40b/sglang_nb"


class HostBase(tornado.web.RequestHandler):
    """Stands in for the host's base handler: marks every response."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("X-Host", "yes")


def require_token(method: Any) -> Any:
    """Stands in for the host's `@authenticated`."""

    def wrapper(self: tornado.web.RequestHandler, *args: Any, **kwargs: Any) -> Any:
        if self.request.headers.get("Authorization") != "token host-secret":
            raise tornado.web.HTTPError(403, "host says no")
        return method(self, *args, **kwargs)

    return wrapper


@pytest.fixture(scope="module")
def mounted(tiny_llama: str) -> Iterator[tuple[str, Any]]:
    from sglang_nb.runtime.engine import Engine
    from sglang_nb.runtime.entrypoints.http_server import make_handlers

    engine = Engine(model_path=tiny_llama, skip_tokenizer_init=True, max_total_tokens=2048)
    port = free_port()
    started = threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = tornado.web.Application(make_handlers(engine, PREFIX, bases=(HostBase,), decorators=(require_token,),
                                                    cors=False))
        box["server"] = app.listen(port, "127.0.0.1")
        box["loop"] = loop
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    yield f"http://127.0.0.1:{port}{PREFIX}", engine
    box["loop"].call_soon_threadsafe(box["server"].stop)
    box["loop"].call_soon_threadsafe(box["loop"].stop)
    thread.join(5)
    engine.shutdown()


HEADERS = {"Authorization": "token host-secret"}
BODY = {"input_ids": [5, 6, 7, 8], "sampling_params": {"temperature": 0, "max_new_tokens": 5, "ignore_eos": True}}


def test_host_auth_and_base_class_apply(mounted: tuple[str, Any]) -> None:
    url, _ = mounted
    r = httpx.post(url + "/generate", json=BODY)
    assert r.status_code == 403
    r = httpx.post(url + "/generate", json=BODY, headers=HEADERS, timeout=60)
    assert r.status_code == 200 and r.headers["X-Host"] == "yes"
    assert "Access-Control-Allow-Origin" not in r.headers
    assert len(r.json()["output_ids"]) == 5


def test_stream_bridged_across_loops(mounted: tuple[str, Any]) -> None:
    url, _ = mounted
    full = httpx.post(url + "/generate", json=BODY, headers=HEADERS, timeout=60).json()
    chunks = []
    with httpx.stream("POST", url + "/generate", json={**BODY, "stream": True}, headers=HEADERS, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                chunks.append(json.loads(line[6:]))
    assert chunks[-1]["output_ids"] == full["output_ids"]


def test_disconnect_aborts_and_control_calls_bridge(mounted: tuple[str, Any]) -> None:
    url, engine = mounted
    long = {"input_ids": [5, 6, 7], "stream": True,
            "sampling_params": {"max_new_tokens": 1500, "ignore_eos": True}}
    with httpx.stream("POST", url + "/generate", json=long, headers=HEADERS, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                break
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = httpx.get(url + "/cache_state", headers=HEADERS, timeout=30).json()
        if state["num_running_reqs"] == 0 and state["num_waiting_reqs"] == 0 and engine.tokenizer_manager.num_active() == 0:
            break
        time.sleep(0.2)
    assert state["available_kv_tokens"] + state["evictable_kv_tokens"] == state["max_total_num_tokens"]
    assert httpx.post(url + "/flush_cache", headers=HEADERS, timeout=30).status_code == 200
    assert "sglang:num_running_reqs" in httpx.get(url + "/metrics", headers=HEADERS, timeout=30).text
