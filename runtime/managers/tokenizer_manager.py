"""TokenizerManager: the front of the engine. Validates and tokenizes requests, sends them to the
scheduler, detokenizes what comes back and resolves each request's stream.

It lives on one asyncio loop (the HTTP server's, or the Engine's own background loop); every
method must be called on that loop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from ..model_loader.tokenizer import load_tokenizer
from ..sampling.sampling_params import SamplingParams
from ..server_args import PortArgs, ServerArgs
from .detokenizer import DecodeStatus, decode_incrementally, holdback_len
from .io_struct import (
    AbortReq,
    BatchTokenIDOut,
    FlushCacheOutput,
    FlushCacheReq,
    GenerateReqInput,
    GetInternalStateReq,
    InternalState,
    ProfileOutput,
    ProfileReq,
    TokenizedGenerateReqInput,
    new_rid,
)
from .output_format import build_output

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request the scheduler refused (bad input); carries the HTTP status to answer with."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass
class ReqState:
    rid: str
    index: int
    tokenized: TokenizedGenerateReqInput
    return_text_in_logprobs: bool
    decode: DecodeStatus
    created: float = field(default_factory=time.perf_counter)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    finished: bool = False
    finish_reason: dict[str, Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    logprobs: dict[str, list[Any]] = field(default_factory=dict)
    normalized_prompt_logprob: float | None = None
    dirty: bool = False
    first_token_time: float | None = None
    last_token_time: float | None = None


class TokenizerManager:
    def __init__(self, server_args: ServerArgs, port_args: PortArgs, model_dir: str, info: dict[str, Any],
                 is_backend_alive: Callable[[], bool] | None = None, tokenizer: Any = None) -> None:
        self.server_args = server_args
        self.model_dir = model_dir
        self.info = info
        self.context_len: int = info["context_len"]
        self.vocab_size: int = info["vocab_size"]
        self.is_generation: bool = info.get("is_generation", True)
        self.generation_defaults: dict[str, Any] = info.get("generation_defaults", {})
        self.is_backend_alive = is_backend_alive or (lambda: True)
        self.tokenizer: Any = tokenizer
        if tokenizer is None and not server_args.skip_tokenizer_init:
            self.tokenizer = load_tokenizer(server_args.tokenizer_path or model_dir, server_args.trust_remote_code)
        self.port_args = port_args
        self.rid_to_state: dict[str, ReqState] = {}
        self._control_waiters: list[tuple[type, asyncio.Future[Any]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.metrics_hooks: list[Callable[[ReqState, bool], None]] = []
        self.dead_message: str | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sockets on the current loop and start the receive loop (side effect: tasks)."""
        self._loop = asyncio.get_running_loop()
        ctx = zmq.asyncio.Context(2)
        self.send_to_scheduler = ctx.socket(zmq.PUSH)
        self.send_to_scheduler.connect(self.port_args.scheduler_input_ipc)
        self.recv_from_scheduler = ctx.socket(zmq.PULL)
        self.recv_from_scheduler.bind(self.port_args.tokenizer_input_ipc)
        self._tasks = [asyncio.create_task(self._handle_loop()), asyncio.create_task(self._watchdog())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "TokenizerManager.start() was not called"
        return self._loop

    # ---- generation --------------------------------------------------------------------------

    async def generate_request(self, obj: GenerateReqInput) -> AsyncIterator[Any]:
        """Yield output dicts: each update when streaming (cumulative text, with "index" for
        batches), else one dict (single) or one list (batch) when everything finished."""
        obj.normalize()
        states = await self._submit(obj)
        try:
            if obj.stream:
                async for out in self._stream(states, with_index=not obj.is_single or obj.parallel_sample_num > 1):
                    yield out
            else:
                outs = [await self._wait_final(st) for st in states]
                yield outs[0] if obj.is_single and obj.parallel_sample_num == 1 else outs
        finally:
            for st in states:
                if not st.finished:
                    self.abort_request(st.rid)
                self.rid_to_state.pop(st.rid, None)

    async def _submit(self, obj: GenerateReqInput) -> list[ReqState]:
        """Tokenize and validate every prompt, then send; `n > 1` first caches each prompt's prefix."""
        n = obj.parallel_sample_num
        prepared = [self._tokenize_one(obj, i) for i in range(obj.batch_size)]  # raises before sending anything
        if n == 1:
            return [self._send(t, i, obj.return_text_in_logprobs) for i, t in enumerate(prepared)]
        warm = []
        for t in prepared:
            w = copy.copy(t)
            w.rid, w.stream, w.return_logprob = new_rid(), False, False
            w.sampling_params = copy.copy(t.sampling_params)
            w.sampling_params.max_new_tokens = 0
            warm.append(self._send(w, -1, False))
        for st in warm:
            await self._wait_final(st)
            self.rid_to_state.pop(st.rid, None)
        states = []
        for i, t in enumerate(prepared):
            for j in range(n):
                copy_t = copy.copy(t)
                copy_t.rid = new_rid()
                copy_t.sampling_params = copy.deepcopy(t.sampling_params)
                if copy_t.sampling_params.sampling_seed is not None:
                    copy_t.sampling_params.sampling_seed += j
                states.append(self._send(copy_t, i * n + j, obj.return_text_in_logprobs))
        return states

    def _tokenize_one(self, obj: GenerateReqInput, i: int) -> TokenizedGenerateReqInput:
        text, input_ids = obj.prompt(i)
        if input_ids is None:
            if self.tokenizer is None:
                raise ValueError("The engine initialized with skip_tokenizer_init=True cannot accept text prompts. "
                                 "Please provide input_ids or re-initialize the engine with skip_tokenizer_init=False.")
            if text == "":
                raise ValueError("The prompt is empty.")
            input_ids = self.tokenizer.encode(text)
        if not input_ids:
            raise ValueError("input_ids cannot be empty.")
        if any(not 0 <= t < self.vocab_size for t in input_ids):
            raise ValueError(f"input_ids must be in [0, {self.vocab_size - 1}].")
        if len(input_ids) >= self.context_len:
            if not self.server_args.allow_auto_truncate:
                raise ValueError(f"The input ({len(input_ids)} tokens) is longer than the model's context length "
                                 f"({self.context_len} tokens).")
            input_ids = input_ids[: self.context_len - 1]
        raw = obj.item(i, "sampling_params", {})
        params = SamplingParams.from_dict({**self._default_sampling(), **raw})
        params.normalize(self.tokenizer)
        params.verify(self.vocab_size)
        return_logprob = bool(obj.item(i, "return_logprob", False))
        start = obj.item(i, "logprob_start_len", -1)
        top = obj.item(i, "top_logprobs_num", 0)
        token_ids = obj.item(i, "token_ids_logprob", None)
        if not isinstance(start, int) or isinstance(start, bool) or start < -1:
            raise ValueError(f"logprob_start_len must be an integer >= -1, got {start!r}.")
        if not isinstance(top, int) or isinstance(top, bool) or top < 0:
            raise ValueError(f"top_logprobs_num must be a non-negative integer, got {top!r}.")
        if token_ids is not None and (not isinstance(token_ids, list)
                                      or any(not isinstance(t, int) or not 0 <= t < self.vocab_size for t in token_ids)):
            raise ValueError("token_ids_logprob must be a flat list of integers.")
        if return_logprob and start >= len(input_ids):
            raise ValueError(f"logprob_start_len, ({start}) is higher than the number of input tokens "
                             f"({len(input_ids)}). Request with a lower logprob_start_len.")
        if top > self.vocab_size:
            raise ValueError(f"top_logprobs_num must be at most the vocabulary size ({self.vocab_size}).")
        return TokenizedGenerateReqInput(
            rid=obj.rid_for(i) if obj.parallel_sample_num == 1 else new_rid(),
            input_text=text, input_ids=list(input_ids), sampling_params=params, return_logprob=return_logprob,
            logprob_start_len=start, top_logprobs_num=top if return_logprob else 0,
            token_ids_logprob=token_ids if return_logprob else None, stream=obj.stream,
            image_inputs=obj.item(i, "image_data", None))

    def _default_sampling(self) -> dict[str, Any]:
        return {}

    def _send(self, t: TokenizedGenerateReqInput, index: int, text_in_logprobs: bool) -> ReqState:
        if self.dead_message is not None:
            raise RequestError(self.dead_message, 503)
        if t.rid in self.rid_to_state:
            raise ValueError(f"Duplicate request id: {t.rid}")
        params = t.sampling_params
        state = ReqState(rid=t.rid, index=index, tokenized=t, return_text_in_logprobs=text_in_logprobs,
                         decode=DecodeStatus(params.skip_special_tokens, params.spaces_between_special_tokens),
                         prompt_tokens=len(t.input_ids))
        self.rid_to_state[t.rid] = state
        self.send_to_scheduler.send_pyobj(t)
        return state

    async def _wait_final(self, st: ReqState) -> dict[str, Any]:
        while not st.finished:
            await st.event.wait()
            st.event.clear()
        return self._output(st)

    async def _stream(self, states: list[ReqState], with_index: bool) -> AsyncIterator[dict[str, Any]]:
        pending = {st.rid: st for st in states}
        wake = asyncio.Event()
        for st in states:
            st.event = wake  # one event wakes the consumer for any of its requests
        while pending:
            wake.clear()
            for st in list(pending.values()):
                if not st.dirty:
                    continue
                st.dirty = False
                out = self._output(st)
                if with_index:
                    out["index"] = st.index
                yield out
                if st.finished:
                    del pending[st.rid]
            # Updates that arrived while we were yielding left `dirty` set; only sleep if none did.
            if pending and not any(st.dirty for st in pending.values()):
                await wake.wait()

    def _output(self, st: ReqState) -> dict[str, Any]:
        fr = st.finish_reason
        if fr is not None and fr.get("type") == "abort" and fr.get("status_code") == 400:
            raise RequestError(fr.get("message", "Bad request"), 400)
        text = self._visible_text(st)
        return build_output(st, text, self._token_texts if st.return_text_in_logprobs else None)

    def _visible_text(self, st: ReqState) -> str:
        params = st.tokenized.sampling_params
        text = st.decode.text
        if not st.finished:
            if params.stop_strs:
                hold = holdback_len(text, params.stop_strs)
                return text[: len(text) - hold] if hold else text
            return text
        fr = st.finish_reason or {}
        if params.no_stop_trim:
            return text
        matched = fr.get("matched")
        if isinstance(matched, str):
            pos = text.find(matched)
            return text[:pos] if pos >= 0 else text
        if isinstance(matched, int) and self.tokenizer is not None and st.decode.ids:
            return self.tokenizer.decode(st.decode.ids[:-1], skip_special_tokens=params.skip_special_tokens)
        return text

    def _token_texts(self, ids: list[int]) -> list[str]:
        if self.tokenizer is None:
            return ["" for _ in ids]
        return [self.tokenizer.decode([i]) for i in ids]

    # ---- receiving ---------------------------------------------------------------------------

    async def _handle_loop(self) -> None:
        while True:
            msg = await self.recv_from_scheduler.recv_pyobj()
            try:
                if isinstance(msg, BatchTokenIDOut):
                    self._handle_batch_out(msg)
                else:
                    self._resolve_control(msg)
            except Exception:
                logger.exception("Failed to handle a scheduler message")

    def _handle_batch_out(self, msg: BatchTokenIDOut) -> None:
        states, ids, finished = [], [], []
        now = time.perf_counter()
        for i, rid in enumerate(msg.rids):
            st = self.rid_to_state.get(rid)
            if st is None:
                continue  # aborted by the client and already forgotten
            states.append(st)
            ids.append(msg.new_token_ids[i])
            finished.append(msg.finished_reasons[i] is not None)
            st.finish_reason = msg.finished_reasons[i]
            st.completion_tokens = msg.completion_tokens[i]
            st.cached_tokens = msg.cached_tokens[i]
            if msg.new_token_ids[i]:
                st.first_token_time = st.first_token_time or now
                st.last_token_time = now
            _merge_logprobs(st, msg, i)
        if self.tokenizer is not None and states:
            decode_incrementally(self.tokenizer, [s.decode for s in states], ids, finished)
        else:
            for st, new in zip(states, ids):
                st.decode.ids.extend(new)
        for st, done in zip(states, finished):
            st.finished = done
            st.dirty = True
            for hook in self.metrics_hooks:
                hook(st, done)
            st.event.set()

    def _resolve_control(self, msg: Any) -> None:
        for i, (kind, fut) in enumerate(self._control_waiters):
            if isinstance(msg, kind):
                del self._control_waiters[i]
                if not fut.done():
                    fut.set_result(msg)
                return

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if not self.is_backend_alive():
                self.dead_message = "The scheduler process died; restart the engine."
                logger.error(self.dead_message)
                for st in list(self.rid_to_state.values()):
                    st.finish_reason = {"type": "abort", "message": self.dead_message, "status_code": 503}
                    st.finished = st.dirty = True
                    st.event.set()
                for _, fut in self._control_waiters:
                    if not fut.done():
                        fut.set_exception(RequestError(self.dead_message, 503))
                return

    async def _control(self, request: Any, reply: type, timeout: float = 30.0) -> Any:
        if self.dead_message is not None:
            raise RequestError(self.dead_message, 503)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._control_waiters.append((reply, fut))
        self.send_to_scheduler.send_pyobj(request)
        return await asyncio.wait_for(fut, timeout)

    # ---- control -----------------------------------------------------------------------------

    def abort_request(self, rid: str = "") -> None:
        """Abort `rid` (all requests when empty); the stream ends with finish_reason abort."""
        if rid and rid not in self.rid_to_state:
            return
        self.send_to_scheduler.send_pyobj(AbortReq(rid))

    async def flush_cache(self) -> FlushCacheOutput:
        out: FlushCacheOutput = await self._control(FlushCacheReq(), FlushCacheOutput)
        return out

    async def profile(self, req: ProfileReq) -> ProfileOutput:
        """Start or stop the scheduler's profiler; stopping waits for the trace to be written."""
        out: ProfileOutput = await self._control(req, ProfileOutput, timeout=600.0)
        return out

    async def get_internal_state(self, with_tree: bool = False, max_nodes: int = 64) -> dict[str, Any]:
        out: InternalState = await self._control(GetInternalStateReq(with_tree, max_nodes), InternalState)
        return out.state

    def num_active(self) -> int:
        return len(self.rid_to_state)


def _merge_logprobs(st: ReqState, msg: BatchTokenIDOut, i: int) -> None:
    names = ("input_token_logprobs", "input_top_logprobs", "input_token_ids_logprobs",
             "output_token_logprobs", "output_top_logprobs", "output_token_ids_logprobs")
    for name in names:
        value = getattr(msg, name)[i] if getattr(msg, name) else None
        if value:
            st.logprobs.setdefault(name, []).extend(value)
    if msg.normalized_prompt_logprob and msg.normalized_prompt_logprob[i] is not None:
        st.normalized_prompt_logprob = msg.normalized_prompt_logprob[i]
