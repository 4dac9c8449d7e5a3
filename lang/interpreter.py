"""The interpreter: one coroutine per program state on the shared program loop.

`s += expr` in the program's thread only enqueues work (`StreamExecutor.submit`); the state's worker
coroutine executes items in order and resolves futures the caller can wait on (per variable, per
barrier). Forks create child executors that start when the parent reaches the fork (after the
shared prefix was prefilled once); a join waits for them inside the parent's queue, so neither
blocks the program's thread.

Failure never hangs: after an error every later item is skipped, every waiter is released, and
reading a variable raises the error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
import uuid
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import runloop
from .backend.base import BaseBackend, Prompt
from .chat_template import ChatTemplate
from .ir import (
    REGEX_BOOL,
    REGEX_FLOAT,
    REGEX_INT,
    REGEX_STR,
    SglArgument,
    SglCommitLazy,
    SglConcateAndAppend,
    SglConstantText,
    SglExpr,
    SglExprList,
    SglGen,
    SglImage,
    SglRoleBegin,
    SglRoleEnd,
    SglSamplingParams,
    SglSelect,
    SglSeparateReasoning,
    SglVariable,
    SglVarScopeBegin,
    SglVarScopeEnd,
    SglVideo,
    flatten,
)
from .media import encode_image_base64, encode_video_base64
from .reasoning import separate_reasoning_text
from .tree import RequestLog


class ProgramError(RuntimeError):
    """A program state failed; `__cause__` is the original error."""


@dataclass
class ProgramContext:
    """What one program run shares across its fork children: backend, request log, concurrency limit."""

    backend: BaseBackend
    log: RequestLog = field(default_factory=RequestLog)
    limiter: asyncio.Semaphore | None = None
    executors: list[StreamExecutor] = field(default_factory=list)

    def done_futures(self) -> list[cf.Future[None]]:
        return [e.done for e in list(self.executors)]

    def cancel(self) -> None:
        """(loop) Stop every state of the program; cancelling their requests aborts them in the runtime."""
        for executor in list(self.executors):
            executor.cancel()


_END = object()


@dataclass
class _Item:
    """An expression to execute, with the futures of the names it produces."""

    expr: SglExpr
    producers: dict[Any, list[cf.Future[Any]]]


@dataclass
class _Barrier:
    future: cf.Future[None]


@dataclass
class _Fork:
    children: list[StreamExecutor]


@dataclass
class _Join:
    children: list[StreamExecutor]
    mode: str


@dataclass
class _SetVar:
    name: Any
    value: Any


class StreamExecutor:
    """The state of one program stream and the coroutine that advances it."""

    def __init__(self, ctx: ProgramContext, *, arguments: dict[str, Any], default_params: SglSamplingParams,
                 chat_template: ChatTemplate | None, stream: bool, num_api_spec_tokens: int | None = None,
                 parent: StreamExecutor | None = None) -> None:
        self.ctx = ctx
        self.backend = ctx.backend
        self.sid = uuid.uuid4().hex
        self.arguments = arguments
        self.default_params = default_params
        self.chat_template = chat_template or self.backend.get_chat_template()
        self.stream = stream
        self.num_api_spec_tokens = num_api_spec_tokens
        # Program-visible state: written only by the worker coroutine.
        self.text_ = ""
        self.variables: dict[Any, Any] = {}
        self.meta_info: dict[Any, Any] = {}
        self.messages_: list[dict[str, Any]] = []
        self.cur_role: str | None = None
        self.cur_role_begin_pos = 0
        self.images_: list[tuple[Any, str]] = []
        self.cur_images: list[tuple[Any, str]] = []
        self.fork_start_text_pos = 0
        self.error_: BaseException | None = None
        self.ret_value: Any = None
        self.stream_chunks: dict[Any, list[tuple[str, dict[str, Any]]]] = {}
        self._scope_starts: dict[str, int] = {}
        self._last_gen_span: dict[Any, tuple[int, int]] = {}
        # Caller-side bookkeeping.
        self._producers: dict[Any, cf.Future[Any]] = {}
        self._ended = False
        self.children: list[StreamExecutor] = []
        # Loop-side machinery.
        self._items: deque[Any] = deque()
        self._wake: asyncio.Event | None = None
        # A fork child starts when its parent reaches the fork; only roots count against the batch limit.
        self.is_root = parent is None
        self._started = parent is None
        self._task: asyncio.Task[None] | None = None
        self.done: cf.Future[None] = cf.Future()
        self._listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()
        ctx.executors.append(self)

    # ---- caller side -------------------------------------------------------------------------

    def submit(self, expr: SglExpr) -> None:
        """Queue `expr`; returns at once. Names it will produce get futures readers can wait on."""
        producers: dict[Any, list[cf.Future[Any]]] = {}
        for node in flatten(expr):
            name = _produced_name(node)
            if name is not _NO_NAME:
                fut: cf.Future[Any] = cf.Future()
                producers.setdefault(name, []).append(fut)
                self._producers[name] = fut
        runloop.call_soon(self._enqueue, _Item(expr, producers))
        self.notify()

    def barrier(self) -> cf.Future[None]:
        """A future resolved once everything submitted before it was processed."""
        fut: cf.Future[None] = cf.Future()
        runloop.call_soon(self._enqueue, _Barrier(fut))
        return fut

    def fork(self, children: list[StreamExecutor]) -> None:
        """Start `children` from this state once everything submitted so far ran."""
        self.children.extend(children)
        runloop.call_soon(self._enqueue, _Fork(children))

    def join(self, children: list[StreamExecutor], mode: str) -> None:
        runloop.call_soon(self._enqueue, _Join(children, mode))

    def set_var(self, name: Any, value: Any) -> None:
        runloop.call_soon(self._enqueue, _SetVar(name, value))

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            runloop.call_soon(self._enqueue, _END)

    def producer(self, name: Any) -> cf.Future[Any] | None:
        return self._producers.get(name)

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` (from any thread) whenever text or variables change; returns an unsubscribe."""
        with self._listeners_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def notify(self) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    # ---- loop side: the worker ---------------------------------------------------------------

    def _enqueue(self, item: Any) -> None:
        self._items.append(item)
        if self.done.done():  # submitted after the state ended: release the waiter instead of hanging
            self._release_all()
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._started and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._worker())

    def cancel(self) -> None:
        """(loop) Interrupted: fail what is pending and stop the worker (its in-flight request is aborted)."""
        if self.error_ is None:
            self.error_ = KeyboardInterrupt("The program was interrupted.")
        if self._task is not None and not self._task.done():
            self._task.cancel()
        elif self._task is None:
            self._release_all()

    def start_from(self, parent: StreamExecutor | None) -> None:
        """(loop) Copy the parent's state at the fork point and start working."""
        if parent is not None:
            self.text_ = parent.text_
            self.variables = dict(parent.variables)
            self.messages_ = [dict(m) for m in parent.messages_]
            self.cur_role, self.cur_role_begin_pos = parent.cur_role, parent.cur_role_begin_pos
            self.images_, self.cur_images = list(parent.images_), list(parent.cur_images)
            self.fork_start_text_pos = len(parent.text_)
            self.error_ = parent.error_
        self._started = True
        if self._wake is None:
            self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._worker())

    async def _worker(self) -> None:
        assert self._wake is not None
        limiter = self.ctx.limiter if self.is_root else None
        if limiter is not None:
            await limiter.acquire()
        try:
            while True:
                while not self._items:
                    self._wake.clear()
                    await self._wake.wait()
                item = self._items.popleft()
                if item is _END:
                    break
                await self._process(item)
            for child in self.children:  # unjoined fork children end with their parent
                child.end()
        finally:
            if limiter is not None:
                limiter.release()
            self._release_all()
            self.notify()

    async def _process(self, item: Any) -> None:
        match item:
            case _Barrier():
                item.future.set_result(None)
            case _Fork():
                await self._fork(item.children)
            case _Join():
                await self._join(item.children, item.mode)
            case _SetVar():
                self.variables[item.name] = item.value
                self.notify()
            case _Item():
                try:
                    if self.error_ is None:
                        await self._execute(item.expr, item.producers)
                except Exception as e:  # noqa: BLE001 - recorded on the state, surfaced to readers
                    self._fail(e)
                finally:  # also when cancelled (interrupt): readers of this item must wake up
                    self._resolve_remaining(item.producers)

    def _fail(self, error: BaseException) -> None:
        self.error_ = error
        warnings.warn(f"Error in program execution: {type(error).__name__}: {error}", RuntimeWarning, stacklevel=2)

    def _resolve_remaining(self, producers: dict[Any, list[cf.Future[Any]]]) -> None:
        for futures in producers.values():
            for fut in futures:
                if not fut.done():
                    if self.error_ is not None:
                        fut.set_exception(program_error(self.error_))
                    else:
                        fut.set_result(None)

    def _release_all(self) -> None:
        """Wake every waiter of items that will never run: their producers fail, barriers pass, forks
        start their children already failed (so they end too), joins end their children."""
        while self._items:
            item = self._items.popleft()
            if item is _END:
                continue
            if isinstance(item, _Barrier):
                item.future.set_result(None)
                continue
            if self.error_ is None:
                self.error_ = RuntimeError("The program state had already ended (e.g. a joined fork).")
            match item:
                case _Item():
                    self._resolve_remaining(item.producers)
                case _Fork():
                    for child in item.children:
                        child.start_from(self)
                        child.end()
                case _Join():
                    for child in item.children:
                        child.end()
        if not self.done.done():
            self.done.set_result(None)

    # ---- expressions -------------------------------------------------------------------------

    async def _execute(self, node: SglExpr, producers: dict[Any, list[cf.Future[Any]]]) -> None:
        match node:
            case SglExprList():
                for child in node.expr_list:
                    await self._execute(child, producers)
            case SglConstantText():
                self._fill(str(node.value))
            case SglArgument():
                self._fill(str(node.value))
            case SglGen():
                await self._gen(node)
                self._produced(producers, node.name, self.variables.get(node.name))
            case SglSelect():
                await self._select(node)
                self._produced(producers, node.name, self.variables.get(node.name))
            case SglRoleBegin():
                self._role_begin(node.role)
            case SglRoleEnd():
                self._role_end(node.role)
            case SglImage():
                self._add_image(node.path, encode_image_base64(node.path))
            case SglVideo():
                self._add_image(node.path, encode_video_base64(node.path, node.num_frames))
            case SglVarScopeBegin():
                self._scope_starts[node.name] = len(self.text_)
            case SglVarScopeEnd():
                start = self._scope_starts.pop(node.name, len(self.text_))
                self.variables[node.name] = self.text_[start:]
                self._produced(producers, node.name, self.variables[node.name])
            case SglCommitLazy():
                if self.text_:
                    await self.backend.prefill(self.prompt(), self.ctx.log)
            case SglConcateAndAppend():
                self._concatenate(node.states)
            case SglSeparateReasoning():
                self._separate_reasoning(node)
                self._produced(producers, node.name, self.variables.get(node.name))
            case SglVariable():
                raise TypeError(f"Variable references ({node!r}) only exist while tracing.")
            case _:
                raise TypeError(f"Unknown expression {node!r}")
        self.notify()

    def _produced(self, producers: dict[Any, list[cf.Future[Any]]], name: Any, value: Any) -> None:
        futures = producers.get(name)
        if futures:
            fut = futures.pop(0)
            if not fut.done():
                fut.set_result(value)

    def prompt(self) -> Prompt:
        open_text = self.text_[self.cur_role_begin_pos:] if self.cur_role else ""
        return Prompt(self.text_, [b64 for _, b64 in self.images_], messages=list(self.messages_),
                      open_role=self.cur_role, open_text=open_text)

    def _fill(self, text: str) -> None:
        self.text_ += text

    def resolve_params(self, gen_params: SglSamplingParams) -> SglSamplingParams:
        """Run-level defaults, overridden by the gen's set fields, plus template stops and dtype regexes."""
        params = self.default_params.override(gen_params)
        template_stops = list(self.chat_template.stop_str)
        if template_stops:
            stop = params.stop
            stop_list = [] if not stop else ([stop] if isinstance(stop, str) else list(stop))
            params.stop = stop_list + [s for s in template_stops if s not in stop_list]
        if params.dtype is not None:
            _apply_dtype(params)
        return params

    async def _gen(self, node: SglGen) -> None:
        params = self.resolve_params(node.sampling_params)
        name, start = node.name, len(self.text_)
        if not self.stream:
            comp, meta = await self.backend.generate(self.prompt(), params, self.ctx.log)
            self.text_ += comp[0] if isinstance(comp, list) else comp
            self.variables[name] = comp
            self.meta_info[name] = meta
        else:
            self.variables[name] = ""
            chunks = self.stream_chunks.setdefault(name, [])
            chunks.clear()
            self.notify()
            async for delta, meta in self.backend.generate_stream(self.prompt(), params, self.ctx.log):
                self.text_ += delta
                self.variables[name] += delta
                self.meta_info[name] = meta
                chunks.append((delta, meta))
                self.notify()
        self._last_gen_span[name] = (start, len(self.text_))

    async def _select(self, node: SglSelect) -> None:
        decision = await self.backend.select(self.prompt(), node.choices, node.temperature, node.choices_method,
                                             self.ctx.log)
        start = len(self.text_)
        if node.name is not None:
            self.variables[node.name] = decision.decision
            self.meta_info[node.name] = decision.meta_info
        self.text_ += decision.decision
        self._last_gen_span[node.name] = (start, len(self.text_))

    def _role_begin(self, role: str) -> None:
        if self.cur_role is not None:
            raise ValueError("Nested roles are not allowed.")
        template = self.chat_template
        if not self.messages_ and role != "system" and template.default_system_prompt:
            prefix, suffix = template.get_prefix_and_suffix("system", self.messages_)
            self.text_ += prefix + template.default_system_prompt + suffix
            self.messages_.append({"role": "system", "content": template.default_system_prompt})
        prefix, _ = template.get_prefix_and_suffix(role, self.messages_)
        self.cur_role = role
        self.text_ += prefix
        self.cur_role_begin_pos = len(self.text_)

    def _role_end(self, role: str) -> None:
        if self.cur_role != role:
            raise ValueError(f"{role}_end() without a matching {role}_begin() (current role: {self.cur_role}).")
        content = self.text_[self.cur_role_begin_pos:].lstrip()
        _, suffix = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        self.cur_role = None
        self.text_ += suffix
        if self.cur_images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": content}]
            parts += [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64}"}}
                      for _, b64 in self.cur_images]
            self.messages_.append({"role": role, "content": parts})
            self.cur_images = []
        else:
            self.messages_.append({"role": role, "content": content})

    def _add_image(self, path: Any, b64: str) -> None:
        if not self.backend.supports_images:
            name = self.backend.get_model_name() or type(self.backend).__name__
            raise ValueError(f"The model {name} does not accept images: it has no vision encoder. "
                             "Remove sgl.image()/sgl.video() or serve a vision model.")
        self.images_.append((path, b64))
        self.cur_images.append((path, b64))
        self.text_ += self.chat_template.image_token

    def _concatenate(self, states: list[Any]) -> None:
        for state in states:
            child = getattr(state, "stream_executor", state)
            self.text_ += child.text_[child.fork_start_text_pos:]

    def _separate_reasoning(self, node: SglSeparateReasoning) -> None:
        source = node.source_name
        value = self.variables.get(source)
        if not isinstance(value, str):
            raise ValueError(f"separate_reasoning: no text variable {source!r} to split.")
        reasoning, answer = separate_reasoning_text(value, node.model_type)
        self.variables[source] = answer
        self.variables[node.name] = reasoning
        start, end = self._last_gen_span.get(source, (len(self.text_) - len(value), len(self.text_)))
        self.text_ = self.text_[:start] + answer + self.text_[end:]

    # ---- fork / join -------------------------------------------------------------------------

    async def _fork(self, children: list[StreamExecutor]) -> None:
        if len(children) > 1 and self.text_ and self.error_ is None:
            try:
                # The shared prefix is computed once; every branch then hits it in the radix cache.
                await self.backend.prefill(self.prompt(), self.ctx.log, kind="fork")
            except Exception as e:  # noqa: BLE001
                self._fail(e)
        for child in children:
            child.start_from(self)

    async def _join(self, children: list[StreamExecutor], mode: str) -> None:
        for child in children:
            fut: cf.Future[None] = cf.Future()
            child._enqueue(_Barrier(fut))
            await asyncio.wrap_future(fut)
        if self.error_ is not None:
            return
        failed = next((c.error_ for c in children if c.error_ is not None), None)
        if failed is not None:
            self._fail(failed)
            return
        if mode == "gather_variable":
            existing = set(self.variables)
            for child in children:
                for name, value in child.variables.items():
                    if name not in existing:
                        self.variables.setdefault(name, []).append(value)
        elif mode == "concate_and_append":
            self._concatenate(children)
        else:
            self._fail(ValueError(f"Invalid join mode: {mode!r} (use 'gather_variable' or 'concate_and_append')."))
        for child in children:
            child.end()


_NO_NAME = object()


def _produced_name(node: SglExpr) -> Any:
    if isinstance(node, (SglGen, SglSelect, SglVarScopeEnd, SglSeparateReasoning)):
        return node.name
    return _NO_NAME


def program_error(error: BaseException) -> ProgramError:
    """The error readers of a failed state get (chained to the original)."""
    err = ProgramError(f"The program failed: {type(error).__name__}: {error}")
    err.__cause__ = error
    return err


def _apply_dtype(params: SglSamplingParams) -> None:
    """dtype → regex (and number stop strings), without touching any list the caller owns."""
    dtype = params.dtype
    stops = [] if not params.stop else ([params.stop] if isinstance(params.stop, str) else list(params.stop))
    if dtype in (int, "int"):
        params.regex, params.stop = REGEX_INT, stops + [" ", "\n"]
    elif dtype in (float, "float"):
        params.regex, params.stop = REGEX_FLOAT, stops + [" ", "\n"]
    elif dtype in (str, "str"):
        params.regex = REGEX_STR
    elif dtype in (bool, "bool"):
        params.regex = REGEX_BOOL
    else:
        raise ValueError(f"Invalid dtype: {dtype!r} (use int, float, str or bool).")
    params.dtype = None
