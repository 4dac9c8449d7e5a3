"""The kernel-side runtime handle: `sgl.Runtime(...)` and `%sgl start`.

A runtime is `python -m sglang_nb.launch_server` in its own process session, so the kernel's
Interrupt (SIGINT to the kernel's process group) never reaches it. Its stdin is a lifeline: when this
process dies, however it dies, the pipe closes and the server (and its scheduler, which has a lifeline
of its own) exits. It binds 127.0.0.1 on a port the OS picks and reports through a ready-file, takes
a random API key from its environment, logs to a file, and is recorded in the registry so a later
kernel can reap it should every other safeguard fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from ._registry import (
    RuntimeRecord,
    find_server_runtime,
    kill_groups,
    process_create_time,
    reap_stale,
    registry_dir,
)

DEFAULT_LAUNCH_TIMEOUT_S = 300.0
_POLL_S = 0.1
_GRACEFUL_STOP_S = 5.0
_PROGRESS_EVERY_S = 0.5
_ENDPOINT_LOCK = threading.Lock()
_CONTROL_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_STREAM_TIMEOUT = httpx.Timeout(None, connect=5.0)


class RuntimeStartError(RuntimeError):
    """The runtime process exited or did not become ready; the message ends with its log tail."""


def server_flags(kwargs: dict[str, Any]) -> list[str]:
    """Command-line flags for ServerArgs keyword arguments (unknown names raise a ValueError)."""
    from sglang_nb.runtime.server_args import ServerArgs

    known = {f.name: f for f in dataclasses.fields(ServerArgs)}
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"Unknown server option(s): {', '.join(unknown)} (see python -m sglang_nb.launch_server -h).")
    flags: list[str] = []
    for name, value in kwargs.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            flags += [flag, *map(str, value)]
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


class Runtime:
    """A model server for this kernel: `Runtime(model_path=None, **server_args)`.

    With no model the embedded SmolLM2-135M-Instruct is served. Usable as a language backend
    (`sgl.set_default_backend(rt)`, `.endpoint`), from HTTP (`.url`, `.api_key`, `.headers`) and
    through SGLang's Runtime helpers (`generate`, `async_generate`, `get_tokenizer`, ...).
    `progress` is called with a one-line status while the model loads.
    """

    def __init__(self, model_path: str | None = None, *, launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT_S,
                 log_level: str = "info", progress: Callable[[str], None] | None = None,
                 owner_kind: str = "kernel", chat_template_name: str | None = None, **server_kwargs: Any) -> None:
        reap_stale()
        if model_path is not None:
            server_kwargs["model_path"] = model_path
        for reserved in ("host", "port", "api_key"):
            if reserved in server_kwargs:
                raise ValueError(f"{reserved} is chosen by the runtime (127.0.0.1, a free port, a random key).")
        flags = server_flags(server_kwargs)
        self.id = uuid.uuid4().hex[:12]
        self.chat_template_name = chat_template_name  # the language's template for programs (endpoint)
        self.api_key = secrets.token_urlsafe(24)
        self.owned = True
        self.model = str(server_kwargs.get("served_model_name") or server_kwargs.get("model_path")
                         or "SmolLM2-135M-Instruct (embedded)")
        base = registry_dir()
        self.log_path = str(base / f"runtime-{self.id}.log")
        self._ready_file: Path | None = base / f"runtime-{self.id}.ready"
        cmd = [sys.executable, "-m", "sglang_nb.launch_server", "--host", "127.0.0.1", "--port", "0",
               "--ready-file", str(self._ready_file), "--stdin-lifeline", "--log-level", log_level, *flags]
        env = {**os.environ, "SGLANG_NB_API_KEY": self.api_key, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pid = self.process.pid
        self.url = ""
        self.port = 0
        self.record: RuntimeRecord | None = None
        self._endpoint: Any = None
        # Runs on garbage collection and at interpreter exit; the lifeline covers harder deaths.
        self._finalizer: weakref.finalize[..., Runtime] = weakref.finalize(
            self, _terminate, self.process, [self.pid], None)
        try:
            self._wait_ready(launch_timeout, progress)
            self._register(owner_kind)
        except BaseException:
            self.stop()
            raise
        if _CURRENT.get("runtime") is None:  # `%sgl` cells use the first runtime a notebook creates
            _CURRENT["runtime"] = self

    # ---- start-up ------------------------------------------------------------------------------

    def _wait_ready(self, timeout: float, progress: Callable[[str], None] | None) -> None:
        t0 = time.monotonic()
        shown = -_PROGRESS_EVERY_S
        proc, ready_file = self.process, self._ready_file
        assert proc is not None and ready_file is not None
        while True:
            elapsed = time.monotonic() - t0
            if proc.poll() is not None:
                raise RuntimeStartError(f"The runtime exited with code {proc.returncode} while starting. "
                                        f"Log tail ({self.log_path}):\n{self.log_tail(30)}")
            if ready_file.exists():
                info = json.loads(ready_file.read_text())
                ready_file.unlink()
                self.url, self.port = str(info["url"]), int(info["port"])
                if progress is not None:
                    progress(f"Runtime ready at {self.url} ({self.model}) in {elapsed:.1f} s")
                return
            if elapsed > timeout:
                raise RuntimeStartError(f"The runtime did not become ready within {timeout:.0f} s. "
                                        f"Log tail ({self.log_path}):\n{self.log_tail(30)}")
            if progress is not None and elapsed - shown >= _PROGRESS_EVERY_S:
                shown = elapsed
                last = self.log_tail(1).strip()
                progress(f"Loading {self.model}: {elapsed:.1f} s" + (f" | {last[-120:]}" if last else ""))
            time.sleep(_POLL_S)

    def _register(self, owner_kind: str) -> None:
        assert self.process is not None
        helpers = _helper_groups(self.pid)
        self.record = RuntimeRecord(
            id=self.id, url=self.url, api_key=self.api_key, pid=self.pid, pgid=self.pid,
            create_time=process_create_time(self.pid) or 0.0, model=self.model, log_path=self.log_path,
            owner_kind=owner_kind, owner_pid=os.getpid(), owner_create_time=process_create_time(os.getpid()) or 0.0,
            child_pgids=helpers)
        self.record.save()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _terminate, self.process, [self.pid, *helpers], str(self.record.path))

    @classmethod
    def attach(cls, record: RuntimeRecord) -> Runtime:
        """A handle on a runtime someone else owns (e.g. the Jupyter server); `stop()` only detaches."""
        self = cls.__new__(cls)
        self.id, self.api_key, self.owned, self.model = record.id, record.api_key, False, record.model
        self.log_path, self.url, self.pid, self.record = record.log_path, record.url, record.pid, record
        self.port = int(self.url.rsplit(":", 1)[-1].split("/")[0]) if ":" in self.url else 0
        self.process, self._endpoint, self.chat_template_name = None, None, None
        self._ready_file = None  # an attached runtime has no ready-file of ours
        self._finalizer = weakref.finalize(self, _detached)
        return self

    # ---- state ---------------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def is_alive(self) -> bool:
        if self.owned:
            return self.process is not None and self.process.poll() is None
        return self.record is not None and self.record.runtime_alive()

    def health(self, timeout: float = 5.0) -> bool:
        """True when the runtime answers `/health` with 200."""
        if not self.is_alive():
            return False
        try:
            return httpx.get(self.url + "/health", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 50) -> str:
        """The last `lines` lines of the runtime's log file."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 256 * lines))
                data = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])

    def status(self) -> dict[str, Any]:
        """Where the runtime listens and whether it is healthy (no secrets)."""
        info = {"id": self.id, "url": self.url, "model": self.model, "pid": self.pid, "owned": self.owned,
                "alive": self.is_alive(), "healthy": self.health(), "log_path": self.log_path}
        if self.record is not None:
            info["uptime_s"] = round(time.time() - self.record.started, 1)
        return info

    # ---- HTTP ----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, timeout: Any = _CONTROL_TIMEOUT) -> httpx.Response:
        """One authenticated call to the runtime's HTTP API."""
        return httpx.request(method, self.url + path, json=body, headers=self.headers, timeout=timeout)

    def stream_generate(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST /generate with `stream: true`; yields the cumulative chunks. Raises on an error status."""
        body = {**body, "stream": True}
        with httpx.Client(timeout=_STREAM_TIMEOUT, headers=self.headers) as client, \
                client.stream("POST", self.url + "/generate", json=body) as response:
            if response.status_code != 200:
                response.read()
                raise ValueError(_error_message(response))
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk and "text" not in chunk:
                    raise ValueError(_error_message(chunk))
                yield chunk

    def abort(self, rid: str | None = None) -> None:
        """Abort request `rid`, or every request of this runtime when `rid` is None."""
        body = {"abort_all": True} if rid is None else {"rid": rid}
        response = self.request("POST", "/abort_request", body)
        if response.status_code != 200:
            raise ValueError(_error_message(response))

    def flush_cache(self) -> str:
        """Empty the radix cache; a ValueError says why when the runtime refuses (requests running)."""
        response = self.request("POST", "/flush_cache")
        if response.status_code != 200:
            raise ValueError("The cache was not flushed: requests are running or waiting; retry when idle "
                             "or `%sgl abort --all` first.")
        return response.text

    def cache_state(self, tree: bool = False, max_nodes: int = 64) -> dict[str, Any]:
        """Counters of the scheduler and the radix cache, with a bounded tree snapshot when `tree`."""
        response = self.request("GET", f"/cache_state?tree={int(tree)}&max_nodes={max_nodes}")
        if response.status_code != 200:
            raise ValueError(_error_message(response))
        return dict(response.json())

    def get_server_info(self) -> dict[str, Any]:
        return dict(self.request("GET", "/get_server_info").json())

    # ---- the language backend and SGLang's Runtime helpers ---------------------------------------

    @property
    def endpoint(self) -> Any:
        """The `RuntimeEndpoint` programs run on (created on first use)."""
        with _ENDPOINT_LOCK:
            if self._endpoint is None:
                from sglang_nb.lang.backend.runtime_endpoint import RuntimeEndpoint

                self._endpoint = RuntimeEndpoint(self.url, api_key=self.api_key,
                                                 chat_template_name=self.chat_template_name)
            return self._endpoint

    def warm_endpoint(self) -> None:
        """Create the endpoint in a background thread, so the first program does not wait for it."""
        def warm() -> None:
            with contextlib.suppress(Exception):  # a failure resurfaces, with its message, on first use
                self.endpoint  # noqa: B018

        threading.Thread(target=warm, name="sglang_nb-endpoint", daemon=True).start()

    def chat_input_ids(self, user: str, system: str | None = None) -> list[int]:
        """Token ids of a one-turn chat prompt, rendered by the runtime's own chat template."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        response = self.request("POST", "/tokenize", {"messages": messages})
        if response.status_code != 200:
            raise ValueError(_error_message(response))
        return list(response.json()["tokens"])

    def generate(self, prompt: str | list[str], sampling_params: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """One /generate call; returns the JSON text of the response (as SGLang's Runtime does)."""
        body = {"text": prompt, "sampling_params": sampling_params or {}, **kwargs}
        response = self.request("POST", "/generate", body, timeout=_STREAM_TIMEOUT)
        if response.status_code != 200:
            raise ValueError(_error_message(response))
        return json.dumps(response.json())

    async def async_generate(self, prompt: str, sampling_params: dict[str, Any] | None = None) -> AsyncIterator[str]:
        """Yield the text deltas of one streamed generation."""
        body = {"text": prompt, "sampling_params": sampling_params or {}, "stream": True}
        pos = 0
        async with httpx.AsyncClient(timeout=_STREAM_TIMEOUT, headers=self.headers) as client, \
                client.stream("POST", self.url + "/generate", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                raise ValueError(_error_message(response))
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                text = json.loads(line[5:])["text"]
                if len(text) > pos:
                    yield text[pos:]
                    pos = len(text)

    add_request = async_generate

    def get_tokenizer(self) -> Any:
        return self.endpoint.tokenizer

    def cache_prefix(self, prefix: str) -> None:
        self.endpoint.cache_prefix(prefix)

    def get_model_name(self) -> str:
        return self.model

    # ---- shutdown ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the runtime (its whole process group, then its scheduler's) and forget it. Idempotent.

        For an attached runtime this only detaches.
        """
        if self._endpoint is not None:
            with contextlib.suppress(Exception):
                self._endpoint.shutdown()
            self._endpoint = None
        if self.owned:
            self._finalizer()
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)  # a clean stop; a runtime that crashed keeps its log
        self.process = None
        if self._ready_file is not None:
            with contextlib.suppress(OSError):
                self._ready_file.unlink()
        if _CURRENT.get("runtime") is self:
            _CURRENT.pop("runtime")

    shutdown = stop

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "stopped"
        return f"Runtime({self.model!r}, url={self.url!r}, pid={self.pid}, {state})"


def _terminate(proc: subprocess.Popen[bytes] | None, pgids: list[int], record_path: str | None) -> None:
    """Stop a runtime and its helper groups and remove its record (a finalizer: no reference to the handle).

    Closing stdin first lets the server shut down through its lifeline (scheduler included); the
    groups are then signalled for whatever is left.
    """
    if proc is not None:
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_GRACEFUL_STOP_S)
    kill_groups(pgids, pid=proc.pid if proc is not None else None, timeout=_GRACEFUL_STOP_S)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    if record_path:
        with contextlib.suppress(OSError):
            os.unlink(record_path)


def _detached() -> None:
    """The finalizer of an attached runtime: the runtime is not ours to stop."""


def _helper_groups(pid: int) -> list[int]:
    """Process groups of the runtime's descendants that left its group (the scheduler's own session)."""
    groups = set()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                groups.add(os.getpgid(child.pid))
    groups.discard(pid)
    return sorted(groups)


def _error_message(response_or_body: Any) -> str:
    body = response_or_body
    if isinstance(response_or_body, httpx.Response):
        try:
            body = response_or_body.json()
        except ValueError:
            return f"{response_or_body.status_code}: {response_or_body.text.strip()}"
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(error)
    return str(body)


# ---- the kernel's current runtime -----------------------------------------------------------------

_CURRENT: dict[str, Runtime] = {}


def current_runtime() -> Runtime | None:
    """The runtime this kernel uses, if one was started or attached (a dead one is forgotten)."""
    rt = _CURRENT.get("runtime")
    if rt is not None and not rt.is_alive():
        rt.stop()
        return None
    return rt


def set_current_runtime(rt: Runtime | None) -> None:
    if rt is None:
        _CURRENT.pop("runtime", None)
    else:
        _CURRENT["runtime"] = rt


def shared_runtime() -> Runtime | None:
    """A handle on the runtime the Jupyter server shares with its kernels, if it runs one."""
    record = find_server_runtime()
    return Runtime.attach(record) if record is not None else None


__all__ = ["Runtime", "RuntimeStartError", "current_runtime", "server_flags", "set_current_runtime",
           "shared_runtime"]
