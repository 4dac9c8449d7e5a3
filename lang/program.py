"""`@sgl.function` programs: run, run_batch, trace, compile, cache, bind."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from . import runloop
from .backend.base import BaseBackend
from .compiler import MIN_SHARED_CHARS, RowPlan, compile_tree, plan_rows, run_prefills
from .global_config import global_config
from .interpreter import ProgramContext, StreamExecutor
from .ir import SglSamplingParams
from .state import ProgramState
from .tracer import TracerProgramState, bind_arguments, current_tracer, trace_program
from .tree import RequestLog, RequestTree

# Program bodies that must wait on model output while the caller moves on (stream=True, dynamic
# run_batch rows) run here: a bounded pool, never a thread per program.
_BODY_POOL_SIZE = 32
_body_pool: cf.ThreadPoolExecutor | None = None


def _get_body_pool() -> cf.ThreadPoolExecutor:
    global _body_pool
    if _body_pool is None:
        _body_pool = cf.ThreadPoolExecutor(max_workers=_BODY_POOL_SIZE, thread_name_prefix="sglang_nb-program")
    return _body_pool


def resolve_backend(backend: Any = None) -> BaseBackend:
    """The given backend or the default one; a `Runtime` gives its endpoint, an `Engine` gets wrapped."""
    backend = backend if backend is not None else global_config.default_backend
    if backend is None:
        raise ValueError("Please specify a backend: sgl.set_default_backend(...) or run(..., backend=...).")
    if hasattr(backend, "endpoint") and not isinstance(backend, BaseBackend):  # Runtime
        backend = backend.endpoint
    engine_mod = sys.modules.get("sglang_nb.runtime.engine")
    if engine_mod is not None and isinstance(backend, engine_mod.Engine):
        from .backend.engine import EngineBackend

        wrapped = getattr(backend, "_lang_backend", None)
        if wrapped is None:
            wrapped = EngineBackend(backend)
            backend._lang_backend = wrapped
        return wrapped
    if not isinstance(backend, BaseBackend):
        raise TypeError(f"Not a backend: {type(backend).__name__} (use an Engine, RuntimeEndpoint, Runtime or OpenAI).")
    return backend


def _sampling_defaults(max_new_tokens: int | None, n: int, stop: Any, stop_token_ids: Any, stop_regex: Any,
                       temperature: float, top_p: float, top_k: int, min_p: float, frequency_penalty: float,
                       presence_penalty: float, ignore_eos: bool, return_logprob: bool | None,
                       logprob_start_len: int | None, top_logprobs_num: int | None,
                       return_text_in_logprobs: bool | None) -> SglSamplingParams:
    # Lists are copied: the caller's stop list must never grow (SGLang appended template stops in place).
    return SglSamplingParams(
        max_new_tokens=max_new_tokens, n=n, stop=list(stop) if isinstance(stop, (list, tuple)) else (stop or []),
        stop_token_ids=list(stop_token_ids or []),
        stop_regex=list(stop_regex) if isinstance(stop_regex, (list, tuple)) else (stop_regex or []),
        temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty, ignore_eos=ignore_eos, return_logprob=return_logprob,
        logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
        return_text_in_logprobs=return_text_in_logprobs)


class ProgramStateList(list):  # type: ignore[type-arg]
    """What `run_batch` returns: the states in input order, plus the batch's request tree."""

    def __init__(self, states: list[ProgramState], planned: RequestTree, batch_log: RequestLog) -> None:
        super().__init__(states)
        self._planned = planned
        self._batch_log = batch_log

    @property
    def request_tree(self) -> RequestTree:
        """The planned tree with every request of the batch (prefills and rows) attached."""
        tree = self._planned
        seen = {id(r) for r in tree.requests()}
        records = self._batch_log.snapshot() + [r for s in self for r in s.stream_executor.ctx.log.snapshot()]
        for record in records:
            if id(record) not in seen:
                tree.add_request(record)
        return tree

    @property
    def cache_hit_ratio(self) -> float:
        return self.request_tree.cache_hit_ratio


class SglFunction:
    """A program: a Python function whose first parameter is the state `s`."""

    def __init__(self, func: Callable[..., Any], num_api_spec_tokens: int | None = None,
                 bind_arguments: dict[str, Any] | None = None) -> None:
        self.func = func
        self.num_api_spec_tokens = num_api_spec_tokens
        self.bind_arguments = bind_arguments or {}
        self.pin_prefix_rid = None
        spec = inspect.getfullargspec(func)
        if not spec.args or spec.args[0] != "s":
            raise ValueError(f"The first parameter of an sgl.function must be named 's' ({func.__name__}).")
        self.arg_names = spec.args[1:]
        self.arg_defaults = spec.defaults or ()
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__

    def bind(self, **kwargs: Any) -> SglFunction:
        unknown = [k for k in kwargs if k not in self.arg_names]
        if unknown:
            raise ValueError(f"Cannot bind unknown argument(s) {unknown} of {self.func.__name__}.")
        return SglFunction(self.func, num_api_spec_tokens=self.num_api_spec_tokens,
                           bind_arguments={**self.bind_arguments, **kwargs})

    # ---- running -----------------------------------------------------------------------------

    def run(self, *args: Any, max_new_tokens: int | None = 128, n: int = 1, stop: Any = None,
            stop_token_ids: Any = None, stop_regex: Any = None, temperature: float = 1.0, top_p: float = 1.0,
            top_k: int = -1, min_p: float = 0.0, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
            ignore_eos: bool = False, return_logprob: bool | None = None, logprob_start_len: int | None = None,
            top_logprobs_num: int | None = None, return_text_in_logprobs: bool | None = None,
            stream: bool = False, backend: Any = None, use_thread: bool = True, **kwargs: Any) -> ProgramState:
        """Run the program; returns when it finished (or at once with `stream=True`)."""
        params = _sampling_defaults(max_new_tokens, n, stop, stop_token_ids, stop_regex, temperature, top_p, top_k,
                                    min_p, frequency_penalty, presence_penalty, ignore_eos, return_logprob,
                                    logprob_start_len, top_logprobs_num, return_text_in_logprobs)
        arguments = {**bind_arguments(self.func, self.arg_names, args, kwargs), **self.bind_arguments}
        state = self._new_state(resolve_backend(backend), params, arguments, stream, limiter=None)
        if stream and not self._is_static(arguments, state.stream_executor.backend):
            _get_body_pool().submit(self._body, state, arguments)
            return state
        self._body(state, arguments)
        if not stream:
            wait_program(state)
            if global_config.verbosity >= 2:
                print(state.text())
        return state

    async def run_async(self, *args: Any, backend: Any = None, **kwargs: Any) -> ProgramState:
        """`await prog.run_async(...)`: like run(), without blocking the caller's event loop."""
        sampling = {k: kwargs.pop(k) for k in list(kwargs) if k in _SAMPLING_KWARGS}
        params = _sampling_defaults(**{**_SAMPLING_DEFAULTS, **sampling})
        arguments = {**bind_arguments(self.func, self.arg_names, args, kwargs), **self.bind_arguments}
        state = self._new_state(resolve_backend(backend), params, arguments, False, limiter=None)
        if self._is_static(arguments, state.stream_executor.backend):
            self._body(state, arguments)
        else:
            await asyncio.wrap_future(_get_body_pool().submit(self._body, state, arguments))
        await runloop.wait_async(runloop.submit(_program_done(state.stream_executor.ctx)))
        return state

    def run_batch(self, batch_kwargs: Any, *, max_new_tokens: int | None = 128, n: int = 1, stop: Any = None,
                  stop_token_ids: Any = None, stop_regex: Any = None, temperature: float = 1.0, top_p: float = 1.0,
                  top_k: int = -1, min_p: float = 0.0, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                  ignore_eos: bool = False, return_logprob: bool | None = None, logprob_start_len: int | None = None,
                  top_logprobs_num: int | None = None, return_text_in_logprobs: bool | None = None,
                  backend: Any = None, num_threads: int | str = "auto", progress_bar: bool = False,
                  generator_style: bool = False) -> Any:
        """Run one program per row, concurrently; shared prompt prefixes are prefilled once first."""
        if not batch_kwargs:
            return []
        rows = self._normalize_rows(batch_kwargs)
        params = _sampling_defaults(max_new_tokens, n, stop, stop_token_ids, stop_regex, temperature, top_p, top_k,
                                    min_p, frequency_penalty, presence_penalty, ignore_eos, return_logprob,
                                    logprob_start_len, top_logprobs_num, return_text_in_logprobs)
        backend_obj = resolve_backend(backend)
        if num_threads == "auto":
            num_threads = max(96, (os.cpu_count() or 1) * 16)
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive integer or 'auto', got {num_threads!r}.")
        num_threads = min(num_threads, len(rows))
        plans = plan_rows(self.func, self.arg_names, rows, backend_obj)
        tree = compile_tree(plans) if global_config.enable_precache_with_tracing and len(rows) > 1 else RequestTree()
        batch_log = RequestLog()
        runloop.wait(runloop.submit(run_prefills(tree, backend_obj, batch_log)))
        limiter = asyncio.Semaphore(num_threads)
        states = [self._new_state(backend_obj, params, plan.arguments, False, limiter) for plan in plans]
        if generator_style:
            return self._generate_in_order(states, plans, num_threads, progress_bar)
        bodies = self._start_rows(states, plans, num_threads)
        _wait_rows(states, progress_bar)
        for body in bodies:  # a Python error in a program body propagates, as it would from run()
            body.result()
        return ProgramStateList(states, tree, batch_log)

    def _generate_in_order(self, states: list[ProgramState], plans: list[RowPlan], num_threads: int,
                           progress_bar: bool) -> Iterator[ProgramState]:
        bodies = self._start_rows(states, plans, num_threads)
        bar = _progress(len(states), progress_bar)
        for state in states:
            wait_program(state)
            if bar is not None:
                bar.update(1)
            yield state
        if bar is not None:
            bar.close()
        for body in bodies:
            body.result()

    def _start_rows(self, states: list[ProgramState], plans: list[RowPlan],
                    num_threads: int) -> list[cf.Future[None]]:
        """Static bodies only enqueue work, so they run right here; others get a bounded worker pool."""
        dynamic = [(s, p) for s, p in zip(states, plans) if not p.static]
        for state, plan in zip(states, plans):
            if plan.static:
                self._body(state, plan.arguments)
        if not dynamic:
            return []
        pool = cf.ThreadPoolExecutor(max_workers=min(num_threads, len(dynamic)), thread_name_prefix="sglang_nb-batch")
        futures = [pool.submit(self._body, s, p.arguments) for s, p in dynamic]
        pool.shutdown(wait=False)
        return futures

    def _normalize_rows(self, batch_kwargs: Any) -> list[dict[str, Any]]:
        if not isinstance(batch_kwargs, (list, tuple)):
            raise TypeError("batch_kwargs must be a list of dicts (or of positional argument lists).")
        rows = []
        num_required = len(self.arg_names) - len(self.arg_defaults)
        for item in batch_kwargs:
            if isinstance(item, dict):
                rows.append({**item, **self.bind_arguments})
            elif isinstance(item, (list, tuple)) and num_required <= len(item) <= len(self.arg_names):
                rows.append({**dict(zip(self.arg_names, item)), **self.bind_arguments})
            else:
                raise ValueError(f"Batch item {item!r} does not match the signature of {self.func.__name__} "
                                 f"(arguments: {self.arg_names}).")
        return rows

    def _new_state(self, backend: BaseBackend, params: SglSamplingParams, arguments: dict[str, Any], stream: bool,
                   limiter: asyncio.Semaphore | None) -> ProgramState:
        ctx = ProgramContext(backend, limiter=limiter)
        executor = StreamExecutor(ctx, arguments=arguments, default_params=params, chat_template=None,
                                  stream=stream, num_api_spec_tokens=self.num_api_spec_tokens)
        return ProgramState(executor)

    def _body(self, state: ProgramState, arguments: dict[str, Any]) -> None:
        """Run the Python function; the state ends (and its forks with it) whatever happens."""
        try:
            state.stream_executor.ret_value = self.func(state, **arguments)
        finally:
            state.stream_executor.end()

    def _is_static(self, arguments: dict[str, Any], backend: BaseBackend) -> bool:
        try:
            return not trace_program(self.func, arguments, self.arg_names, backend=backend,
                                     substitute_arguments=True).reads_variables
        except Exception:  # noqa: BLE001
            return False

    # ---- tracing and compiling -------------------------------------------------------------------

    def trace(self, *, backend: Any = None, **kwargs: Any) -> TracerProgramState:
        """The program's IR (unspecified arguments become placeholders)."""
        backend_obj = backend if isinstance(backend, BaseBackend) or backend is None else resolve_backend(backend)
        return trace_program(self.func, {**kwargs, **self.bind_arguments}, self.arg_names, backend=backend_obj)

    def compile(self, batch_kwargs: list[dict[str, Any]] | None = None, *, backend: Any = None,
                min_shared_chars: int = MIN_SHARED_CHARS, **kwargs: Any) -> RequestTree:
        """The planned request tree of a call (`kwargs`) or of a batch, without running anything."""
        backend_obj = resolve_backend(backend)
        rows = self._normalize_rows(batch_kwargs) if batch_kwargs is not None else [{**kwargs, **self.bind_arguments}]
        return compile_tree(plan_rows(self.func, self.arg_names, rows, backend_obj), min_shared_chars)

    def cache(self, backend: Any = None) -> None:
        """Prefill the program's constant prefix (when longer than 64 characters)."""
        backend_obj = resolve_backend(backend)
        prefix = trace_program(self.func, dict(self.bind_arguments), self.arg_names, backend=backend_obj,
                               only_trace_prefix=True).prefix_text()
        if len(prefix) > MIN_SHARED_CHARS:
            backend_obj.cache_prefix(prefix)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracer = current_tracer()
        if tracer is not None:
            arguments = bind_arguments(self.func, self.arg_names, args, kwargs)
            return trace_program(self.func, {**arguments, **self.bind_arguments}, self.arg_names,
                                 backend=tracer.backend)
        return self.run(*args, **kwargs)

    def __repr__(self) -> str:
        return f"SglFunction({self.func.__name__})"


_SAMPLING_DEFAULTS: dict[str, Any] = dict(
    max_new_tokens=128, n=1, stop=None, stop_token_ids=None, stop_regex=None, temperature=1.0, top_p=1.0, top_k=-1,
    min_p=0.0, frequency_penalty=0.0, presence_penalty=0.0, ignore_eos=False, return_logprob=None,
    logprob_start_len=None, top_logprobs_num=None, return_text_in_logprobs=None)
_SAMPLING_KWARGS = set(_SAMPLING_DEFAULTS)


async def _program_done(ctx: ProgramContext) -> None:
    """(loop) Wait until every executor of the program (forks included) finished."""
    while True:
        pending = [f for f in ctx.done_futures() if not f.done()]
        if not pending:
            return
        await asyncio.gather(*(asyncio.wrap_future(f) for f in pending))


def wait_program(state: ProgramState) -> None:
    """Wait for a program (forks included); an interrupt (Ctrl-C, Jupyter's Interrupt) aborts its requests."""
    ctx = state.stream_executor.ctx
    try:
        runloop.wait(runloop.submit(_program_done(ctx)))
    except KeyboardInterrupt:
        runloop.call_soon(ctx.cancel)
        raise


def _wait_rows(states: list[ProgramState], progress_bar: bool) -> None:
    futures = {runloop.submit(_program_done(s.stream_executor.ctx)): s for s in states}
    bar = _progress(len(states), progress_bar)
    try:
        for fut in cf.as_completed(futures):
            fut.result()
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        for state in states:
            runloop.call_soon(state.stream_executor.ctx.cancel)
        raise
    finally:
        if bar is not None:
            bar.close()


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total)
