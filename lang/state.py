"""ProgramState: what a program function receives as `s` and what `run()` returns.

Appending (`s += expr`) never blocks. Reading (`s["x"]`, `text()`, `messages()`) waits for the
values it needs; `text_iter()` and `text_async_iter()` stream. Every wait works from any thread or
event loop (see runloop.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import runloop
from .interpreter import StreamExecutor, program_error
from .ir import (
    SglConstantText,
    SglExpr,
    SglExprList,
    SglRoleBegin,
    SglRoleEnd,
    SglVarScopeBegin,
    SglVarScopeEnd,
)
from .tree import RequestTree

INCREMENTAL_META_KEYS = ("output_token_logprobs", "output_top_logprobs", "output_token_ids_logprobs")


def to_expr(value: Any) -> SglExpr:
    if isinstance(value, SglExpr):
        return value
    if isinstance(value, str):
        return SglConstantText(value)
    raise TypeError(f"Cannot append a {type(value).__name__} to a program state; use str or sgl expressions.")


class ProgramState:
    """The user-facing handle of one program stream (wraps its `StreamExecutor`)."""

    def __init__(self, stream_executor: StreamExecutor) -> None:
        self.stream_executor = stream_executor

    # ---- appending ---------------------------------------------------------------------------

    def __iadd__(self, other: Any) -> ProgramState:
        self.stream_executor.submit(to_expr(other))
        return self

    def _role_common(self, name: str, expr: Any = None) -> Any:
        if expr is not None:
            role_expr = SglExprList([SglRoleBegin(name), to_expr(expr), SglRoleEnd(name)])
            self.stream_executor.submit(role_expr)
            return role_expr

        @contextmanager
        def role_scope() -> Iterator[None]:
            self.stream_executor.submit(SglRoleBegin(name))
            yield
            self.stream_executor.submit(SglRoleEnd(name))

        return role_scope()

    def system(self, expr: Any = None) -> Any:
        return self._role_common("system", expr)

    def user(self, expr: Any = None) -> Any:
        return self._role_common("user", expr)

    def assistant(self, expr: Any = None) -> Any:
        return self._role_common("assistant", expr)

    @contextmanager
    def var_scope(self, name: str) -> Iterator[None]:
        """Capture the text appended inside the block as variable `name`."""
        self.stream_executor.submit(SglVarScopeBegin(name))
        yield
        self.stream_executor.submit(SglVarScopeEnd(name))

    def fork(self, size: int = 1, position_ids_offset: Any = None) -> ProgramStateGroup:
        """`size` copies of this state that run in parallel; the shared prefix is prefilled once."""
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"fork size must be a positive integer, got {size!r}.")
        parent = self.stream_executor
        children = [StreamExecutor(parent.ctx, arguments=parent.arguments, default_params=parent.default_params,
                                   chat_template=parent.chat_template, stream=parent.stream, parent=parent)
                    for _ in range(size)]
        parent.fork(children)
        return ProgramStateGroup([ProgramState(c) for c in children], self)

    @contextmanager
    def copy(self, position_ids_offset: Any = None) -> Iterator[ProgramState]:
        group = self.fork(1, position_ids_offset)
        try:
            yield group[0]
        finally:
            group.join()

    def set_var(self, name: Any, value: Any) -> None:
        self.stream_executor.set_var(name, value)

    def __setitem__(self, name: Any, value: Any) -> None:
        self.set_var(name, value)

    # ---- reading (blocking) ------------------------------------------------------------------

    def sync(self) -> None:
        """Wait until everything appended so far was executed."""
        runloop.wait(self.stream_executor.barrier())

    def get_var(self, name: Any) -> Any:
        ex = self.stream_executor
        fut = ex.producer(name)
        if fut is not None:
            runloop.wait(fut)  # raises ProgramError when the program failed before producing it
        else:
            self.sync()
        if name not in ex.variables:
            if ex.error_ is not None:
                raise program_error(ex.error_)
            raise KeyError(name)
        return ex.variables[name]

    def __getitem__(self, name: Any) -> Any:
        return self.get_var(name)

    def __contains__(self, name: Any) -> bool:
        self.sync()
        return name in self.stream_executor.variables

    def get_meta_info(self, name: Any) -> Any:
        fut = self.stream_executor.producer(name)
        if fut is not None:
            cf.wait([fut])
        else:
            self.sync()
        return self.stream_executor.meta_info.get(name)

    def text(self) -> str:
        self.sync()
        return self.stream_executor.text_

    def messages(self) -> list[dict[str, Any]]:
        self.sync()
        return self.stream_executor.messages_

    def error(self) -> BaseException | None:
        self.sync()
        return self.stream_executor.error_

    def request_tree(self) -> RequestTree:
        """The requests this program (and its forks) sent so far, as a prefix tree."""
        self.sync()
        return RequestTree.from_records(self.stream_executor.ctx.log.snapshot())

    # ---- reading (async) ---------------------------------------------------------------------

    async def async_sync(self) -> None:
        await runloop.wait_async(self.stream_executor.barrier())

    async def async_get_var(self, name: Any) -> Any:
        fut = self.stream_executor.producer(name)
        if fut is not None:
            await runloop.wait_async(fut)
        else:
            await self.async_sync()
        return self.stream_executor.variables[name]

    async def async_text(self) -> str:
        await self.async_sync()
        return self.stream_executor.text_

    # ---- streaming ---------------------------------------------------------------------------

    def text_iter(self, var_name: Any = None) -> Iterator[str]:
        """Yield text as it is produced: the whole program text, or only variable `var_name`."""
        ex = self.stream_executor
        if not ex.stream:
            yield self.text() if var_name is None else self.get_var(var_name)
            return
        wake: queue.SimpleQueue[None] = queue.SimpleQueue()
        unsubscribe = ex.subscribe(lambda: wake.put(None))
        try:
            cursor = _Cursor(ex, var_name)
            while True:
                done = cursor.done()
                for delta, _ in cursor.take():
                    if delta:
                        yield delta
                if done:
                    return
                wake.get()
        finally:
            unsubscribe()

    async def text_async_iter(self, var_name: Any = None, return_meta_data: bool = False) -> AsyncIterator[Any]:
        """Async `text_iter`; with `return_meta_data` (needs `var_name`) yields (text, meta_info) pairs whose
        incremental logprob lists cover exactly the tokens of that text."""
        ex = self.stream_executor
        if return_meta_data and var_name is None:
            raise ValueError("return_meta_data=True needs a var_name.")
        if not ex.stream:
            await self.async_sync()
            value = ex.text_ if var_name is None else ex.variables.get(var_name, "")
            yield (value, ex.meta_info.get(var_name)) if return_meta_data else value
            return
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        def wake_up() -> None:
            loop.call_soon_threadsafe(wake.set)

        unsubscribe = ex.subscribe(wake_up)
        try:
            cursor = _Cursor(ex, var_name)
            pending: dict[str, Any] | None = None
            while True:
                wake.clear()
                done = cursor.done()
                for delta, meta in cursor.take():
                    if not return_meta_data:
                        if delta:
                            yield delta
                        continue
                    pending = _merge_meta(pending, meta)
                    if delta:
                        yield delta, pending
                        pending = None
                if done:
                    return
                await wake.wait()
        finally:
            unsubscribe()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.text_async_iter()

    # ---- misc --------------------------------------------------------------------------------

    def end(self) -> None:
        self.stream_executor.end()

    def __del__(self) -> None:
        try:
            self.stream_executor.end()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"ProgramState({self.text()})"


class _Cursor:
    """Reads what a stream produced since the last read: text deltas, or a variable's chunks."""

    def __init__(self, ex: StreamExecutor, var_name: Any) -> None:
        self.ex, self.var_name = ex, var_name
        self.pos = 0

    def done(self) -> bool:
        ex = self.ex
        if ex.done.done():
            return True
        if self.var_name is None:
            return False
        fut = ex.producer(self.var_name)
        return fut is not None and fut.done()

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        ex = self.ex
        if self.var_name is None:
            text = ex.text_
            out: list[tuple[str, dict[str, Any]]] = [(text[self.pos:], {})] if len(text) > self.pos else []
            self.pos = max(self.pos, len(text))
            return out
        chunks = ex.stream_chunks.get(self.var_name)
        if chunks is None:  # not streamed (e.g. a select): its final value once
            fut = ex.producer(self.var_name)
            if fut is not None and fut.done() and self.pos == 0 and self.var_name in ex.variables:
                self.pos = 1
                return [(str(ex.variables[self.var_name]), ex.meta_info.get(self.var_name) or {})]
            return []
        new = chunks[self.pos:]
        self.pos += len(new)
        return [c for c in new if c[0] or c[1]]


def _merge_meta(pending: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any]:
    if pending is None:
        return dict(meta)
    merged = dict(meta)
    for key in INCREMENTAL_META_KEYS:
        if key in meta or key in pending:
            merged[key] = list(pending.get(key) or []) + list(meta.get(key) or [])
    return merged


class ProgramStateGroup:
    """The states made by `s.fork(n)`."""

    def __init__(self, states: list[ProgramState], parent: ProgramState) -> None:
        self.states = states
        self.parent = parent

    def __getitem__(self, i: int) -> ProgramState:
        return self.states[i]

    def __setitem__(self, i: int, state: ProgramState) -> None:
        # `forks[i] += expr` assigns the (same) state back after appending.
        if state is not self.states[i]:
            raise TypeError("Fork states cannot be replaced.")

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[ProgramState]:
        return iter(self.states)

    def __iadd__(self, other: Any) -> ProgramStateGroup:
        if isinstance(other, Callable) and not isinstance(other, SglExpr):  # type: ignore[arg-type]
            for i, state in enumerate(self.states):
                state += other(i)
        elif isinstance(other, SglExpr):
            for state in self.states:
                state += other
        elif isinstance(other, (list, tuple)):
            if len(other) != len(self.states):
                raise ValueError(f"Got {len(other)} values for {len(self.states)} forks.")
            for state, value in zip(self.states, other):
                state += value
        else:
            raise ValueError(f"Invalid value: {other!r}; add a callable i -> expr, an sgl expression, or a list.")
        return self

    def join(self, mode: str = "gather_variable") -> None:
        """Gather the children's new variables into lists on the parent (or append their text)."""
        self.parent.stream_executor.join([s.stream_executor for s in self.states], mode)
