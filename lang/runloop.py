"""The one event loop all programs run on.

Every program state is a coroutine on this loop (no thread per program); callers in any thread wait
on `concurrent.futures.Future`s, so the same program works from a script, from asyncio code (await the
futures) and from a Jupyter cell whose thread already runs an event loop (no nest_asyncio).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures as cf
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The program loop, started on first use in a daemon thread."""
    global _loop, _thread
    with _lock:
        if _loop is None or not _thread or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=run, name="sglang_nb-lang", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
            atexit.register(_stop, loop)
        return _loop


def _stop(loop: asyncio.AbstractEventLoop) -> None:
    """At exit: cancel what is still running (abandoned programs) so nothing is destroyed while pending."""
    async def cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    if loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=2)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
        loop.call_soon_threadsafe(loop.stop)


def on_loop_thread() -> bool:
    return _thread is not None and threading.current_thread() is _thread


def submit(coro: Coroutine[Any, Any, T]) -> cf.Future[T]:
    """Schedule `coro` on the program loop from any thread."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def call_soon(fn: Any, *args: Any) -> None:
    """Run `fn(*args)` on the program loop, in submission order (FIFO across calls)."""
    get_loop().call_soon_threadsafe(fn, *args)


def wait(fut: cf.Future[T], timeout: float | None = None) -> T:
    """Block the calling thread until `fut` resolves (never called on the program loop itself)."""
    if on_loop_thread():
        raise RuntimeError("A program tried to wait for its own results on the program loop; "
                           "use the async API (await state.async_sync(), text_async_iter) there.")
    return fut.result(timeout)


async def wait_async(fut: cf.Future[T]) -> T:
    """Await `fut` from any event loop (the program loop included: it is never blocked by this)."""
    return await asyncio.wrap_future(fut)
