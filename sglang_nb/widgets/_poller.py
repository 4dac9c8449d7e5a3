"""A background poller that fetches the runtime's cache state without ever blocking the kernel.

It runs in a daemon thread and hands each snapshot to a callback that only sets widget traits
(those are routed by widget id, so updates land in the right output whatever cell is running).
It never prints; errors become a status string.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Poller:
    """Calls `fetch()` every `interval` seconds in a thread and passes the result to `on_result`."""

    def __init__(self, fetch: Callable[[], dict[str, Any]], on_result: Callable[[dict[str, Any], float], None],
                 on_error: Callable[[str], None], interval: float) -> None:
        self.fetch, self.on_result, self.on_error = fetch, on_result, on_error
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0 or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sglang_nb-cache-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def poke(self) -> None:
        """Refresh now instead of at the next tick."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def poll_once(self) -> None:
        try:
            result = self.fetch()
        except Exception as e:  # noqa: BLE001 - shown in the widget, never raised into the kernel
            self.on_error(f"{type(e).__name__}: {e}")
            return
        self.on_result(result, time.monotonic())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._wake.wait(self.interval)
            self._wake.clear()


__all__ = ["Poller"]
