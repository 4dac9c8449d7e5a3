"""Helpers of the HTTP server tests: launch a real server process and wait for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

START_TIMEOUT_S = 600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    api_key: str | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the server and wait for it; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(log_dir: Path, *args: str, api_key: str | None = None, script: str | None = None,
                 stdin_pipe: bool = False) -> ServerProcess:
    """Launch a server (`python -m sglang_nb.launch_server`, or `script` taking the same flags) and
    wait for its ready line; it gets its own session, so a hang can be killed whole."""
    port = free_port()
    log_path = log_dir / f"server_{port}.log"
    entry = [script] if script else ["-m", "sglang_nb.launch_server"]
    cmd = [sys.executable, *entry, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *args]
    if api_key:
        cmd += ["--api-key", api_key]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL)
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log_path, api_key)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if "server ready at" in server.log():
            return server
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        time.sleep(0.5)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not become ready:\n{server.log()}")


def wait_idle(http: httpx.Client, timeout: float = 120.0) -> dict[str, Any]:
    """Poll /get_server_info until no request runs or waits; returns that info."""
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = http.get("/get_server_info").json()
        if info["num_running_reqs"] == 0 and info["num_waiting_reqs"] == 0:
            return info
        time.sleep(0.5)
    raise AssertionError(f"server not idle after {timeout} s: {info}")


def chat_prompt(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
