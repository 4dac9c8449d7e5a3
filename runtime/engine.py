"""Engine: the in-process API (`sglang_nb.Engine`). Starts the scheduler process, owns a
TokenizerManager on an asyncio loop, and offers sync, async and streaming generation.

The TokenizerManager runs on the engine's own background loop unless the engine is started on a
loop that already runs (the HTTP server does that); calls from any other thread or loop are
bridged, so the engine works the same in scripts, in asyncio code and inside a Jupyter kernel.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import dataclasses
import logging
import os
import pickle
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from .managers.io_struct import FlushCacheOutput, GenerateReqInput, ProfileOutput, ProfileReq
from .managers.output_format import to_incremental
from .managers.tokenizer_manager import TokenizerManager
from .model_loader.resolve import resolve_model_dir
from .model_loader.tokenizer import load_tokenizer
from .server_args import PortArgs, ServerArgs
from .utils import configure_logging

logger = logging.getLogger(__name__)
T = TypeVar("T")

STARTUP_TIMEOUT_S = 600.0


class SchedulerHandle:
    """The scheduler process of this engine, in its own process group with a stdin lifeline."""

    def __init__(self, server_args: ServerArgs, port_args: PortArgs, model_dir: str) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", "sglang_nb.runtime.scheduler.launch"],
                                     stdin=subprocess.PIPE, pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        spec = pickle.dumps({"server_args": server_args, "port_args": port_args, "model_dir": model_dir,
                             "ready_fd": write_fd, "external_models": _external_model_specs()})
        assert self.proc.stdin is not None
        self.proc.stdin.write(struct.pack("!Q", len(spec)) + spec)
        self.proc.stdin.flush()
        self._ready = os.fdopen(read_fd, "rb", buffering=0)
        self.info: dict[str, Any] = {}

    def wait_ready(self) -> None:
        """Block until the scheduler reports readiness (sets `info`); raise with its error otherwise."""
        self.info = self._wait_ready()

    def _wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        fd = self._ready.fileno()
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.2)
            if readable:
                head = self._ready.read(8)
                if len(head) < 8:
                    break
                (size,) = struct.unpack("!Q", head)
                msg = pickle.loads(_read_exact(self._ready, size))
                if msg["status"] == "ready":
                    return dict(msg["info"])
                self.kill()
                raise RuntimeError(f"Engine failed to start: {msg['message']}")
            if self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"Engine failed to start: the scheduler process exited (code {self.proc.poll()}); "
                           "see the log above.")

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, timeout: float = 5.0) -> None:
        """SIGTERM the scheduler's process group, then SIGKILL what is left."""
        if self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self._ready.close()


def _read_exact(stream: Any, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = stream.read(size - len(buf))
        if not chunk:
            raise RuntimeError("scheduler closed its ready pipe")
        buf += chunk
    return buf


def _external_model_specs() -> list[tuple[str, str, str, str | None]]:
    """(arch, module, qualname, source file) for models registered in this process; the scheduler
    imports the module, or loads the file when the module is not importable there (scripts, tests)."""
    import inspect

    from .models.registry import ModelRegistry

    out = []
    for name, cls in ModelRegistry.external_models().items():
        try:
            source: str | None = inspect.getfile(cls)
        except (TypeError, OSError):  # defined interactively
            source = None
        out.append((name, cls.__module__, cls.__qualname__, source))
    return out


class Engine:
    """SGLang-compatible offline engine: `Engine(model_path=..., **server_args)`."""

    def __init__(self, server_args: ServerArgs | None = None, *, loop: asyncio.AbstractEventLoop | None = None,
                 **kwargs: Any) -> None:
        if server_args is None:
            kwargs.setdefault("log_level", "error")
            server_args = ServerArgs.from_kwargs(**kwargs)
        elif kwargs:
            raise ValueError("Pass either server_args or keyword arguments, not both.")
        server_args.check()
        configure_logging(server_args.log_level)
        self.server_args = server_args
        self._shutdown_done = False
        self.model_dir = resolve_model_dir(server_args.model_path, server_args.load_format,
                                           server_args.revision, server_args.download_dir)
        if server_args.tokenizer_path is None or server_args.tokenizer_path == server_args.model_path:
            server_args.tokenizer_path = self.model_dir
        self.port_args = PortArgs.init_new()
        self.scheduler = SchedulerHandle(server_args, self.port_args, self.model_dir)
        try:
            # Load the front's tokenizer while the scheduler process loads the model.
            tokenizer = None if server_args.skip_tokenizer_init else load_tokenizer(
                server_args.tokenizer_path or self.model_dir, server_args.trust_remote_code)
            self.scheduler.wait_ready()
        except BaseException:
            self.scheduler.kill()
            raise
        self.tokenizer_manager = TokenizerManager(server_args, self.port_args, self.model_dir, self.scheduler.info,
                                                  is_backend_alive=self.scheduler.is_alive, tokenizer=tokenizer)
        self._own_thread: threading.Thread | None = None
        if loop is None:
            self.loop = asyncio.new_event_loop()
            self._own_thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="sglang_nb-engine")
            self._own_thread.start()
            asyncio.run_coroutine_threadsafe(self.tokenizer_manager.start(), self.loop).result()
        else:
            self.loop = loop
        atexit.register(self.shutdown)

    async def start_on_current_loop(self) -> None:
        """Start the TokenizerManager on the running loop (for engines created with `loop=`)."""
        await self.tokenizer_manager.start()

    # ---- generation --------------------------------------------------------------------------

    def generate(self, prompt: str | list[str] | None = None, sampling_params: Any = None,
                 input_ids: Any = None, image_data: Any = None, return_logprob: Any = False,
                 logprob_start_len: Any = None, top_logprobs_num: Any = None, token_ids_logprob: Any = None,
                 lora_path: Any = None, custom_logit_processor: Any = None, return_hidden_states: bool = False,
                 stream: bool = False, rid: Any = None, return_text_in_logprobs: bool = False) -> Any:
        """Generate for one prompt (returns a dict) or a batch (a list); `stream=True` returns an
        iterator of chunks whose `text` is the new text since the previous chunk."""
        obj = GenerateReqInput(text=prompt, input_ids=input_ids, image_data=image_data,
                               sampling_params=sampling_params, rid=rid, return_logprob=return_logprob,
                               logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
                               token_ids_logprob=token_ids_logprob, return_text_in_logprobs=return_text_in_logprobs,
                               stream=stream, lora_path=lora_path, custom_logit_processor=custom_logit_processor,
                               return_hidden_states=return_hidden_states)
        if stream:
            return self._iterate(lambda: self._deltas(obj))
        return self._run(self._first(obj))

    def async_generate(self, prompt: str | list[str] | None = None, sampling_params: Any = None,
                       input_ids: Any = None, image_data: Any = None, return_logprob: Any = False,
                       logprob_start_len: Any = None, top_logprobs_num: Any = None, token_ids_logprob: Any = None,
                       lora_path: Any = None, custom_logit_processor: Any = None, return_hidden_states: bool = False,
                       stream: bool = False, rid: Any = None, return_text_in_logprobs: bool = False) -> Any:
        """Awaitable result; with `stream=True` an async iterator of delta chunks (also awaitable)."""
        obj = GenerateReqInput(text=prompt, input_ids=input_ids, image_data=image_data,
                               sampling_params=sampling_params, rid=rid, return_logprob=return_logprob,
                               logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
                               token_ids_logprob=token_ids_logprob, return_text_in_logprobs=return_text_in_logprobs,
                               stream=stream, lora_path=lora_path, custom_logit_processor=custom_logit_processor,
                               return_hidden_states=return_hidden_states)
        if stream:
            return _AwaitableAsyncIterator(self._bridge(lambda: self._deltas(obj)))
        return self._await(self._first(obj))

    async def _first(self, obj: GenerateReqInput) -> Any:
        async for out in self.tokenizer_manager.generate_request(obj):
            return out
        raise RuntimeError("no output")

    async def _deltas(self, obj: GenerateReqInput) -> AsyncIterator[dict[str, Any]]:
        sent: dict[int, dict[str, int]] = {}
        async for out in self.tokenizer_manager.generate_request(obj):
            yield to_incremental(out, sent.setdefault(out.get("index", 0), {}))

    async def generate_raw(self, obj: GenerateReqInput) -> AsyncIterator[Any]:
        """The TokenizerManager's stream for `obj` (cumulative chunks), usable from any loop."""
        async for out in self._bridge(lambda: self.tokenizer_manager.generate_request(obj)):
            yield out

    # ---- control -----------------------------------------------------------------------------

    def abort_request(self, rid: str = "") -> None:
        self.loop.call_soon_threadsafe(self.tokenizer_manager.abort_request, rid)

    def flush_cache(self) -> FlushCacheOutput:
        return self._run(self.tokenizer_manager.flush_cache())

    async def async_flush_cache(self) -> FlushCacheOutput:
        return await self._await(self.tokenizer_manager.flush_cache())

    def start_profile(self, output_dir: str | None = None, start_step: int | None = None,
                      num_steps: int | None = None, activities: list[str] | None = None,
                      with_stack: bool = False, record_shapes: bool = False) -> None:
        """Profile the scheduler's steps with torch.profiler until `stop_profile()` (or `num_steps`).

        The trace goes to `output_dir` (default `$SGLANG_TORCH_PROFILER_DIR`, else
        ~/.cache/sglang_nb/profiles) as `{time}-TP-{rank}.trace.json.gz` plus a `.summary.txt`."""
        self._profile(ProfileReq("start", output_dir, start_step, num_steps, activities, with_stack, record_shapes))

    def stop_profile(self) -> str | None:
        """Stop profiling and write the trace; returns its path."""
        return self._profile(ProfileReq("stop")).trace_path

    def _profile(self, req: ProfileReq) -> ProfileOutput:
        req.validate()
        out = self._run(self.tokenizer_manager.profile(req))
        if not out.success:
            raise ValueError(out.message)
        return out

    async def async_profile(self, req: ProfileReq) -> ProfileOutput:
        req.validate()
        return await self._await(self.tokenizer_manager.profile(req))

    def get_internal_state(self, with_tree: bool = False, max_nodes: int = 64) -> dict[str, Any]:
        return self._run(self.tokenizer_manager.get_internal_state(with_tree, max_nodes))

    async def async_get_internal_state(self, with_tree: bool = False, max_nodes: int = 64) -> dict[str, Any]:
        return await self._await(self.tokenizer_manager.get_internal_state(with_tree, max_nodes))

    def get_server_info(self) -> dict[str, Any]:
        return {**self.server_info_static(), **self.get_internal_state()}

    def server_info_static(self) -> dict[str, Any]:
        from . import __version__

        return {**dataclasses.asdict(self.server_args), **self.scheduler.info,
                "model_dir": self.model_dir, "version": __version__}

    def get_model_info(self) -> dict[str, Any]:
        return {"model_path": self.server_args.model_path or self.model_dir, "tokenizer_path": self.model_dir,
                "is_generation": self.tokenizer_manager.is_generation}

    def get_tokenizer(self) -> Any:
        return self.tokenizer_manager.tokenizer

    def shutdown(self) -> None:
        """Stop the scheduler process and the engine loop (idempotent)."""
        if self._shutdown_done:
            return
        self._shutdown_done = True
        try:
            if self._own_thread is not None and self.loop.is_running():
                asyncio.run_coroutine_threadsafe(self.tokenizer_manager.stop(), self.loop).result(timeout=5)
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._own_thread.join(timeout=5)
        except Exception:
            logger.debug("engine loop shutdown", exc_info=True)
        self.scheduler.kill()
        shutil.rmtree(self.port_args.scheduler_input_ipc.removeprefix("ipc://").rsplit("/", 1)[0],
                      ignore_errors=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # ---- loop bridging -----------------------------------------------------------------------

    def _on_engine_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def _run(self, coro: Awaitable[T]) -> T:
        """Run a coroutine on the engine loop from synchronous code; Ctrl-C cancels it."""
        if self._on_engine_loop():
            raise RuntimeError("Synchronous engine calls cannot run on the engine's own loop; use async_* methods.")
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        try:
            return fut.result()
        except BaseException:
            fut.cancel()  # KeyboardInterrupt in a notebook: the request is aborted, the engine lives
            raise

    async def _await(self, coro: Awaitable[T]) -> T:
        if self._on_engine_loop():
            return await coro
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        try:
            return await asyncio.wrap_future(fut)
        finally:
            if not fut.done():
                fut.cancel()

    async def _bridge(self, make: Callable[[], AsyncIterator[T]]) -> AsyncIterator[T]:
        """Iterate an async generator that must run on the engine loop from another loop."""
        if self._on_engine_loop():
            async for item in make():
                yield item
            return
        caller = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for item in make():
                    caller.call_soon_threadsafe(q.put_nowait, ("item", item))
                caller.call_soon_threadsafe(q.put_nowait, ("end", None))
            except BaseException as e:  # noqa: BLE001 - forwarded to the consumer
                caller.call_soon_threadsafe(q.put_nowait, ("error", e))

        fut = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                kind, value = await q.get()
                if kind == "item":
                    yield value
                elif kind == "end":
                    return
                else:
                    raise value
        finally:
            if not fut.done():
                fut.cancel()

    def _iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """A synchronous iterator over an async generator running on the engine loop."""
        q: queue.Queue[tuple[str, Any]] = queue.Queue()

        async def pump() -> None:
            try:
                async for item in make():
                    q.put(("item", item))
                q.put(("end", None))
            except BaseException as e:  # noqa: BLE001 - forwarded to the consumer
                q.put(("error", e))

        fut = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                kind, value = q.get()
                if kind == "item":
                    yield value
                elif kind == "end":
                    return
                else:
                    raise value
        finally:
            if not fut.done():
                fut.cancel()


class _AwaitableAsyncIterator:
    """`await engine.async_generate(..., stream=True)` and `async for` on it both work."""

    def __init__(self, agen: AsyncIterator[Any]) -> None:
        self._agen = agen

    def __await__(self) -> Any:
        async def _self() -> _AwaitableAsyncIterator:
            return self
        return _self().__await__()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._agen.__aiter__()

    async def __anext__(self) -> Any:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        await self._agen.aclose()  # type: ignore[attr-defined]

