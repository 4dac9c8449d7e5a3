"""The runtime's life in a real kernel (jupyter_client): Interrupt aborts the generation and keeps the
runtime; a restart or a SIGKILL of the kernel leaves no runtime process behind (pid and pgid)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client import KernelManager

from sglang_nb._registry import _group_alive as group_alive

PIDS = ("import json, sglang_nb as sgl; rt = sgl.current_runtime(); "
        "print(json.dumps({'pid': rt.pid, 'pgids': [rt.pid, *rt.record.child_pgids], 'url': rt.url, "
        "'key': rt.api_key}))")


def _run(kc: Any, code: str, timeout: float = 300) -> tuple[str, list[dict[str, Any]]]:
    msg_id = kc.execute(code)
    out, errors = [], []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind in ("display_data", "update_display_data", "execute_result"):
            out.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            errors.append(content)
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out), errors


def _kill(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _gone(pgids: list[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(group_alive(g) for g in pgids):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def kernel() -> Iterator[tuple[KernelManager, Any]]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


def _start_own_runtime(kc: Any) -> dict[str, Any]:
    out, errors = _run(kc, "%load_ext sglang_nb\n%sgl start --own --max-total-tokens 8192")
    assert not errors, errors
    out, errors = _run(kc, PIDS)
    assert not errors, errors
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_interrupt_aborts_generation_and_restart_leaves_nothing(kernel: tuple[KernelManager, Any]) -> None:
    import httpx

    km, kc = kernel
    info = _start_own_runtime(kc)
    headers = {"Authorization": f"Bearer {info['key']}"}
    msg_id = kc.execute("%%sgl --max-tokens 2000 --ignore-eos --raw\nCount forever: 1, 2, 3,")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the request is running
        state = httpx.get(info["url"] + "/cache_state", headers=headers, timeout=10).json()
        if state["num_running_reqs"] > 0:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    km.interrupt_kernel()
    errors = []
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            errors.append(msg["content"]["ename"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    assert errors == ["KeyboardInterrupt"]
    # The abort takes effect at the scheduler's next step; 2000 tokens would take minutes to finish.
    deadline = time.monotonic() + 10
    while True:
        state = httpx.get(info["url"] + "/cache_state", headers=headers, timeout=10).json()
        if state["num_running_reqs"] == 0 and state["num_waiting_reqs"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert state["num_running_reqs"] == 0 and state["num_waiting_reqs"] == 0  # aborted, not finished later
    assert httpx.get(info["url"] + "/health", timeout=10).status_code == 200  # the runtime survived
    out, errors = _run(kc, "%sgl status")
    assert "healthy" in out and not errors

    km.restart_kernel(now=False)
    try:
        assert _gone(info["pgids"]), "the runtime outlived a kernel restart"
    finally:
        for g in info["pgids"]:
            _kill(g)


def test_sigkill_of_the_kernel_leaves_nothing(kernel: tuple[KernelManager, Any]) -> None:
    km, kc = kernel
    info = _start_own_runtime(kc)
    assert group_alive(info["pid"])
    os.kill(km.provisioner.process.pid, signal.SIGKILL)  # no atexit, no finalizer: only the lifeline
    try:
        assert _gone(info["pgids"]), "the runtime outlived a SIGKILLed kernel"
    finally:
        for g in info["pgids"]:
            _kill(g)
