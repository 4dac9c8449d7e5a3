"""Many concurrent streams complete, and streams cut by the client free their KV slots."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from http_helpers import wait_idle


async def _chat_stream(client: httpx.AsyncClient, i: int) -> tuple[str, str | None]:
    body = {"model": "m", "messages": [{"role": "user", "content": f"Say a number bigger than {i}."}],
            "max_tokens": 4, "temperature": 0, "stream": True}
    text, finish = "", None
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            for choice in chunk["choices"]:
                text += choice["delta"].get("content") or ""
                finish = choice["finish_reason"] or finish
    return text, finish


def test_64_concurrent_streaming_chats_complete(base_url: str, http: httpx.Client) -> None:
    async def run() -> list[tuple[str, str | None]]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
            return await asyncio.gather(*[_chat_stream(client, i) for i in range(64)])

    results = asyncio.run(run())
    assert len(results) == 64
    assert all(finish in ("stop", "length") for _, finish in results)
    assert sum(1 for text, _ in results if text) >= 60
    wait_idle(http)


async def _cut_stream(client: httpx.AsyncClient, i: int) -> bool:
    """Read the first chunk of a long generation, then drop the connection."""
    body: dict[str, Any] = {"text": f"Story number {i}: once upon a time", "stream": True,
                            "sampling_params": {"max_new_tokens": 4000, "ignore_eos": True}}
    async with client.stream("POST", "/generate", json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                return True  # leaving the block closes the connection mid-stream
    return False


def test_50_cut_streams_give_their_kv_back(base_url: str, http: httpx.Client) -> None:
    async def run() -> list[bool]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as client:
            return await asyncio.gather(*[_cut_stream(client, i) for i in range(50)])

    assert all(asyncio.run(run()))
    info = wait_idle(http, timeout=180)
    assert info["available_kv_tokens"] + info["evictable_kv_tokens"] == info["max_total_num_tokens"]
    assert info["locked_kv_tokens"] == 0
    load = http.get("/get_load").json()[0]
    assert load["num_reqs"] == 0 and load["num_tokens"] == 0


def test_non_streaming_client_that_gives_up_aborts_its_request(http: httpx.Client, base_url: str) -> None:
    body = {"text": "An endless essay:", "sampling_params": {"max_new_tokens": 4000, "ignore_eos": True}}
    with httpx.Client(base_url=base_url, timeout=2.0) as impatient:
        try:
            impatient.post("/generate", json=body)
        except httpx.ReadTimeout:
            pass
    info = wait_idle(http, timeout=60)
    assert info["available_kv_tokens"] + info["evictable_kv_tokens"] == info["max_total_num_tokens"]
