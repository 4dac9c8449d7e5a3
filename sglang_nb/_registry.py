"""The runtime registry: one JSON file per running runtime under `jupyter_runtime_dir()/sglang_nb/`.

A record says which process serves where (pid, process group, create time, URL, API key, log file)
and who owns it (a kernel or a Jupyter server, by pid and create time). `%sgl status` and the server
extension list runtimes from here, kernels find a runtime shared by their Jupyter server here, and a
new kernel reaps runtimes whose owner died without stopping them (a lifeline that failed).

Process identity is always checked as (pid, create time) with psutil, so a recycled pid is never
mistaken for a runtime and never killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

#: Create times from psutil are floats; two reads of the same process agree to well under this.
_CREATE_TIME_SLACK_S = 0.05


def registry_dir() -> Path:
    """`<jupyter runtime dir>/sglang_nb`, created private to this user (records hold API keys)."""
    override = os.environ.get("SGLANG_NB_REGISTRY_DIR")
    if override:
        path = Path(override)
    else:
        from jupyter_core.paths import jupyter_runtime_dir

        path = Path(jupyter_runtime_dir()) / "sglang_nb"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def process_create_time(pid: int) -> float | None:
    """The create time of `pid`, or None when no such process exists (or it is a zombie)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_same_process(pid: int, create_time: float) -> bool:
    """True when `pid` is alive and is the very process that was created at `create_time`."""
    now = process_create_time(pid)
    return now is not None and abs(now - create_time) < _CREATE_TIME_SLACK_S


@dataclass(kw_only=True)
class RuntimeRecord:
    """What the registry knows about one runtime."""

    id: str
    url: str
    api_key: str
    pid: int
    pgid: int
    create_time: float
    model: str
    log_path: str
    owner_kind: str  # "kernel" | "server"
    owner_pid: int
    owner_create_time: float
    started: float = field(default_factory=time.time)
    #: Process groups of helper processes (the scheduler runs in its own session).
    child_pgids: list[int] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return registry_dir() / f"runtime-{self.id}.json"

    def runtime_alive(self) -> bool:
        return is_same_process(self.pid, self.create_time)

    def owner_alive(self) -> bool:
        return is_same_process(self.owner_pid, self.owner_create_time)

    def public(self) -> dict[str, Any]:
        """The record without its secret, plus liveness, for status listings."""
        info = dataclasses.asdict(self)
        info.pop("api_key")
        info["alive"] = self.runtime_alive()
        info["uptime_s"] = round(time.time() - self.started, 1)
        return info

    def save(self) -> None:
        """Write the record atomically with mode 0600."""
        path = self.path
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dataclasses.asdict(self), f)
        os.replace(tmp, path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def load_records() -> list[RuntimeRecord]:
    """Every readable record (unreadable or foreign files are skipped, never fatal)."""
    names = {f.name for f in dataclasses.fields(RuntimeRecord)}
    out = []
    for path in sorted(registry_dir().glob("runtime-*.json")):
        try:
            data = json.loads(path.read_text())
            out.append(RuntimeRecord(**{k: v for k, v in data.items() if k in names}))
        except (OSError, ValueError, TypeError):
            continue
    return out


def kill_groups(pgids: list[int], pid: int | None = None, timeout: float = 10.0) -> None:
    """SIGTERM each process group, wait up to `timeout`, then SIGKILL what is left.

    `pid` (the group leader) is waited for when given; it must be our child or already verified
    as the runtime by (pid, create time).
    """
    # Never our own group (or init's): a record with a bad pgid must not take the caller down.
    own = os.getpgrp()
    pgids = [g for g in pgids if g > 1 and g != own]
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_group_alive(g) for g in pgids):
        if pid is not None:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    if pid is not None:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A group whose only members are zombies still "exists"; look for a live member.
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False


def reap_stale() -> list[RuntimeRecord]:
    """Stop runtimes whose owner is gone and drop records of runtimes that exited. Returns the reaped.

    Only a runtime verified by (pid, create time) is signalled; its helper groups are signalled only
    when their leader is still a descendant-era process (checked by pgid membership).
    """
    reaped = []
    for record in load_records():
        if not record.runtime_alive():
            _kill_orphan_helpers(record)
            record.remove()
            reaped.append(record)
        elif not record.owner_alive():
            kill_groups([record.pgid, *record.child_pgids], timeout=5.0)
            record.remove()
            reaped.append(record)
    return reaped


def _kill_orphan_helpers(record: RuntimeRecord) -> None:
    # The runtime is gone; its scheduler exits on its own lifeline, but a group that still exists and
    # was recorded by us is cleaned up too, after checking its members started after the runtime.
    for pgid in record.child_pgids:
        members = [p for p in psutil.process_iter(["pid", "create_time"])
                   if _pgid_of(p.info["pid"]) == pgid]
        if members and all((p.info["create_time"] or 0) >= record.create_time - 1 for p in members):
            kill_groups([pgid], timeout=2.0)


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def find_server_runtime() -> RuntimeRecord | None:
    """A live runtime owned by a Jupyter server (shared by its kernels), if any."""
    for record in load_records():
        if record.owner_kind == "server" and record.runtime_alive() and record.owner_alive():
            return record
    return None


__all__ = ["RuntimeRecord", "find_server_runtime", "is_same_process", "kill_groups", "load_records",
           "process_create_time", "reap_stale", "registry_dir"]
