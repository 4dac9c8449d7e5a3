"""Fixtures for the HTTP server tests: real `python -m sglang_nb.launch_server` processes on
127.0.0.1 serving the embedded SmolLM2 model, shared across the session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_helpers import ServerProcess, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The shared server: SmolLM2, cache report on, files under a temporary folder."""
    root = tmp_path_factory.mktemp("http_server")
    srv = start_server(root, "--max-total-tokens", "16384", "--enable-cache-report",
                       "--file-storage-pth", str(root / "storage"))
    yield srv
    code = srv.stop()
    assert code == 0, srv.log()


@pytest.fixture(scope="session")
def base_url(server: ServerProcess) -> str:
    return server.url


@pytest.fixture(scope="session")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300.0) as client:
        yield client


@pytest.fixture(scope="session")
def oai(server: ServerProcess) -> Any:
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=300.0, max_retries=0)
