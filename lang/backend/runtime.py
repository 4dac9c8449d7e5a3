"""Runtime: launch `python -m sglang_nb.launch_server` in a subprocess and use it as a backend.

The server binds 127.0.0.1 on a free port with a random API key, lives in its own process session
with a stdin lifeline (it exits when this process dies), and logs to a file. `shutdown()` (also at
interpreter exit) stops it and its scheduler processes.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .runtime_endpoint import RuntimeEndpoint, ServerError

POLL_INTERVAL_S = 0.5


def _free_port(start: int) -> int:
    for port in range(start, 40000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"No free port between {start} and 40000.")


def server_flags(kwargs: dict[str, Any]) -> list[str]:
    """CLI flags for the server options in `kwargs` (validated by ServerArgs; unknown names raise)."""
    from sglang_nb.runtime.server_args import ServerArgs

    args = ServerArgs.from_kwargs(**kwargs)
    defaults = ServerArgs()
    flags: list[str] = []
    for f in dataclasses.fields(ServerArgs):
        if f.name not in kwargs or not f.metadata.get("cli", True):
            continue
        value = getattr(args, f.name)
        if value == getattr(defaults, f.name) or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                flags.append(flag)
        elif isinstance(value, list):
            flags += [flag, *map(str, value)]
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


class Runtime:
    """A local server process plus the `RuntimeEndpoint` that talks to it (`.endpoint`)."""

    def __init__(self, log_level: str = "error", launch_timeout: float = 300.0, *, port: int | None = None,
                 api_key: str | None = None, chat_template_name: str | None = None, **kwargs: Any) -> None:
        self.port = port if port is not None else _free_port(30000)
        self.api_key = api_key if api_key is not None else secrets.token_urlsafe(16)
        self.url = f"http://127.0.0.1:{self.port}"
        log = tempfile.NamedTemporaryFile(prefix="sglang_nb-runtime-", suffix=".log", delete=False)
        self.log_path = log.name
        cmd = [sys.executable, "-m", "sglang_nb.launch_server", "--host", "127.0.0.1", "--port", str(self.port),
               "--api-key", self.api_key, "--log-level", log_level, "--stdin-lifeline", *server_flags(kwargs)]
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        atexit.register(self.shutdown)
        try:
            self._wait_ready(launch_timeout)
            self.endpoint = RuntimeEndpoint(self.url, api_key=self.api_key, chat_template_name=chat_template_name)
        except BaseException:
            self.shutdown()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.api_key}"}
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"The server exited with code {self.process.returncode} during start-up:\n"
                                   f"{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health_generate", headers=headers, timeout=30).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(POLL_INTERVAL_S)
        raise RuntimeError(f"The server did not become healthy within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    # ---- SGLang's Runtime helpers ------------------------------------------------------------

    def generate(self, prompt: str | list[str], sampling_params: dict[str, Any] | None = None,
                 return_logprob: bool | list[bool] = False, logprob_start_len: int | list[int] | None = None,
                 top_logprobs_num: int | list[int] | None = None, lora_path: Any = None,
                 session_id: Any = None) -> str:
        """One /generate call; returns the JSON text of the response."""
        body = {"text": prompt, "sampling_params": sampling_params or {}, "return_logprob": return_logprob,
                "logprob_start_len": logprob_start_len, "top_logprobs_num": top_logprobs_num,
                "lora_path": lora_path}
        response = httpx.post(self.url + "/generate", json={k: v for k, v in body.items() if v is not None},
                              headers=self.endpoint.headers, timeout=None)
        if response.status_code != 200:
            raise ServerError(response.status_code, response.text)
        return json.dumps(response.json())

    async def async_generate(self, prompt: str, sampling_params: dict[str, Any] | None = None) -> AsyncIterator[str]:
        """Yield text deltas of one streamed generation."""
        body = {"text": prompt, "sampling_params": sampling_params or {}, "stream": True}
        pos = 0
        async with httpx.AsyncClient(timeout=None, headers=self.endpoint.headers) as client:
            async with client.stream("POST", self.url + "/generate", json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise ServerError(response.status_code, response.text)
                async for line in response.aiter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    text = json.loads(line[5:])["text"]
                    if len(text) > pos:
                        yield text[pos:]
                        pos = len(text)

    add_request = async_generate

    def get_tokenizer(self) -> Any:
        if self.endpoint.tokenizer is None:
            raise RuntimeError("The server's tokenizer is not available on this machine.")
        return self.endpoint.tokenizer

    def cache_prefix(self, prefix: str) -> None:
        self.endpoint.cache_prefix(prefix)

    def flush_cache(self) -> Any:
        return self.endpoint.flush_cache()

    def get_server_info(self) -> dict[str, Any]:
        return self.endpoint.get_server_info()

    def get_model_name(self) -> str:
        return self.endpoint.get_model_name()

    def shutdown(self) -> None:
        """Stop the server (SIGTERM to its session, then SIGKILL) — idempotent."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
