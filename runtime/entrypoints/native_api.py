"""SGLang's native HTTP API: `/generate`, health, model and server info, cache flush, abort,
tokenize/detokenize, load, metrics and the radix-cache snapshot used by the notebook inspector."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tornado.iostream import StreamClosedError

from ..managers.io_struct import GenerateReqInput, ProfileReq
from ..managers.output_format import to_incremental
from .handler_base import BaseHandler, closing, first_item
from .metrics import CONTENT_TYPE
from .protocol import ApiError, get_bool, get_str, parse_generate

FLUSH_MESSAGE = ("Cache flushed.\nPlease check backend logs for more details. (When there are running or waiting "
                 "requests, the operation will not be performed.)\n")
HEALTH_TIMEOUT_S = float(os.environ.get("SGLANG_HEALTH_CHECK_TIMEOUT", "20"))


class GenerateHandler(BaseHandler):
    """`POST|PUT /generate`: one JSON object (single), an array (batch / n > 1), or an SSE stream."""

    async def post(self) -> None:
        await self.run_cancellable(self._handle())

    put = post

    async def _handle(self) -> None:
        args = self.ctx.server_args
        obj = parse_generate(self.body_json(), multimodal=self.ctx.is_multimodal,
                             custom_logit_processor=args.enable_custom_logit_processor)
        gen = self.ctx.generate(obj)
        async with closing(gen):
            first = await first_item(gen)
            if not obj.stream:
                self.write_json(first)
                return
            incremental = args.incremental_streaming_output
            sent: dict[int, dict[str, int]] = {}

            def shape(out: dict[str, Any]) -> dict[str, Any]:
                return to_incremental(out, sent.setdefault(out.get("index", 0), {})) if incremental else out

            self.start_sse()
            try:
                await self.send_event(shape(first))
                async for out in gen:
                    await self.send_event(shape(out))
            except StreamClosedError:
                raise
            except Exception as e:  # noqa: BLE001 - reported in the stream, the status is already 200
                await self.stream_error(e)
                return
        await self.finish_sse()


class EncodeHandler(BaseHandler):
    """`/encode` and `/classify`: embedding models only."""

    def post(self) -> None:
        self.body_json()
        if self.ctx.is_generation:
            raise ApiError("This model does not appear to be an embedding model by default. Please add "
                           "`--is-embedding` when launching the server or try another model.")
        raise ApiError("Embeddings are not supported by this server yet.")

    put = post


class HealthHandler(BaseHandler):
    def get(self) -> None:
        dead = self.ctx.dead_message()
        if dead is not None or not self.ctx.ready:
            self.send_error_json(503, dead or "The server is starting.")
            return
        self.finish()


class HealthGenerateHandler(BaseHandler):
    """Runs a one-token generation; 200 when it completes in time, 503 otherwise."""

    async def get(self) -> None:
        dead = self.ctx.dead_message()
        if dead is not None:
            self.send_error_json(503, dead)
            return
        params = {"max_new_tokens": 1, "temperature": 0.0}
        obj = GenerateReqInput(input_ids=[0], sampling_params=params) if self.ctx.tokenizer is None \
            else GenerateReqInput(text="ping", sampling_params=params)
        gen = self.ctx.generate(obj)
        try:
            async with closing(gen):
                await asyncio.wait_for(first_item(gen), HEALTH_TIMEOUT_S)
        except (asyncio.TimeoutError, ValueError, RuntimeError) as e:
            self.send_error_json(503, f"Health check failed: {e or 'timed out'}")
            return
        self.finish()


class ModelInfoHandler(BaseHandler):
    def get(self) -> None:
        info = self.ctx.engine.get_model_info()
        self.write_json({**info, "served_model_name": self.ctx.model_name, "preferred_sampling_params": None,
                         "weight_version": "default", "has_image_understanding": self.ctx.is_multimodal,
                         "has_audio_understanding": False, "context_length": self.ctx.context_len,
                         **_template_info(self.ctx.tokenizer)})


def _template_info(tokenizer: Any) -> dict[str, Any]:
    """The tokenizer's Jinja chat template and the special tokens it renders with.

    Clients derive role markers from these (the frontend language does) without loading the
    tokenizer themselves; servers without them leave both keys out.
    """
    source = getattr(tokenizer, "chat_template", None)
    if not isinstance(source, str):
        return {}
    specials = {name: getattr(tokenizer, name, None) for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
    return {"chat_template": source, "chat_template_tokens": {k: v for k, v in specials.items() if isinstance(v, str)}}


class ServerInfoHandler(BaseHandler):
    async def get(self) -> None:
        self.write_json(self.ctx.server_info(await self.ctx.internal_state()))


class ServerArgsHandler(BaseHandler):
    def get(self) -> None:
        info = self.ctx.engine.server_info_static()
        info.pop("api_key", None)
        self.write_json(info)


class FlushCacheHandler(BaseHandler):
    """Empties the radix cache; refused (400) while requests are running or waiting."""

    async def post(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if self.ctx.num_active() > 0:
            self.set_status(400)
            self.finish(FLUSH_MESSAGE)
            return
        out = await self.ctx.flush_cache()
        self.set_status(200 if out.success else 400)
        self.finish(FLUSH_MESSAGE)

    get = post


class StartProfileHandler(BaseHandler):
    """SGLang's `/start_profile`: optional `{output_dir, start_step, num_steps, activities, with_stack,
    record_shapes}`; torch-profiler traces of the scheduler go to `output_dir`."""

    action = "start"

    async def post(self) -> None:
        body = self.body_json() if self.body.strip() else {}
        if self.action == "start":
            req = ProfileReq("start", output_dir=body.get("output_dir"), start_step=body.get("start_step"),
                             num_steps=body.get("num_steps"), activities=body.get("activities"),
                             with_stack=body.get("with_stack", False), record_shapes=body.get("record_shapes", False))
        else:
            req = ProfileReq("stop")
        try:
            req.validate()
        except ValueError as e:
            field = str(e).split(" ", 1)[0]
            raise ApiError(str(e), param=field) from None
        out = await self.ctx.profile(req)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_status(200 if out.success else 400)
        self.finish(out.message if out.message.endswith("\n") else out.message + "\n")

    get = post


class StopProfileHandler(StartProfileHandler):
    """SGLang's `/stop_profile`: stops the profile and writes its trace (the reply names the file)."""

    action = "stop"


class AbortHandler(BaseHandler):
    """`{"rid": "..."}` aborts one request, `{"abort_all": true}` every request."""

    def post(self) -> None:
        body = self.body_json()
        rid = get_str(body, "rid", "")
        abort_all = get_bool(body, "abort_all", False)
        if not rid and not abort_all:
            raise ApiError("rid is required (or set abort_all to true).", param="rid")
        self.ctx.abort("" if abort_all else rid)
        self.finish()


class LoadHandler(BaseHandler):
    async def get(self) -> None:
        s = await self.ctx.internal_state()
        self.write_json([{"dp_rank": 0, "num_reqs": s["num_running_reqs"] + s["num_waiting_reqs"],
                          "num_waiting_reqs": s["num_waiting_reqs"], "num_tokens": s["used_kv_tokens"]}])


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        state = await self.ctx.internal_state()
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.ctx.metrics.render(state))


class CacheStateHandler(BaseHandler):
    """`GET /cache_state?tree=1&max_nodes=N`: the scheduler's counters and a bounded radix-tree snapshot."""

    async def get(self) -> None:
        tree = self.get_query_argument("tree", "0").lower() in ("1", "true", "yes")
        raw = self.get_query_argument("max_nodes", "64")
        if not raw.isdigit() or not 1 <= int(raw) <= 10000:
            raise ApiError(f"max_nodes must be an integer in [1, 10000], got {raw!r}.", param="max_nodes")
        self.write_json(await self.ctx.internal_state(tree, int(raw)))


class TokenizeHandler(BaseHandler):
    """`{"prompt": str | [str]}` or `{"messages": [...]}` -> token ids, counts and the context length."""

    def post(self) -> None:
        body = self.body_json()
        tok = self._tokenizer()
        prompt, messages = body.get("prompt"), body.get("messages")
        if (prompt is None) == (messages is None):
            raise ApiError("Exactly one of 'prompt' or 'messages' must be provided.", param="prompt")
        add_special = get_bool(body, "add_special_tokens", True)
        if messages is not None:
            from .openai_protocol import parse_chat

            chat = parse_chat({"messages": messages}, self.ctx.model_name, self.ctx.is_multimodal)
            assert self.ctx.chat_template is not None
            text = self.ctx.chat_template.render(chat.messages)
            ids: Any = tok.encode(text, add_special_tokens=False)
            count: Any = len(ids)
        elif isinstance(prompt, str):
            ids = tok.encode(prompt, add_special_tokens=add_special)
            count = len(ids)
        elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            ids = [tok.encode(p, add_special_tokens=add_special) for p in prompt]
            count = [len(i) for i in ids]
        else:
            raise ApiError("prompt must be a string or an array of strings.", param="prompt")
        self.write_json({"tokens": ids, "count": count, "max_model_len": self.ctx.context_len})

    def _tokenizer(self) -> Any:
        if self.ctx.tokenizer is None:
            raise ApiError("This server runs without a tokenizer (--skip-tokenizer-init).")
        return self.ctx.tokenizer


class DetokenizeHandler(TokenizeHandler):
    """`{"tokens": [ids] | [[ids]]}` -> `{"text": str | [str]}`."""

    def post(self) -> None:
        body = self.body_json()
        tok = self._tokenizer()
        tokens = body.get("tokens")
        skip = get_bool(body, "skip_special_tokens", True)

        def valid(ids: Any) -> bool:
            return isinstance(ids, list) and all(isinstance(t, int) and not isinstance(t, bool)
                                                 and 0 <= t < self.ctx.vocab_size for t in ids)

        if valid(tokens):
            self.write_json({"text": tok.decode(tokens, skip_special_tokens=skip)})
        elif isinstance(tokens, list) and tokens and all(valid(t) for t in tokens):
            self.write_json({"text": [tok.decode(t, skip_special_tokens=skip) for t in tokens]})
        else:
            raise ApiError(f"tokens must be an array of token ids in [0, {self.ctx.vocab_size - 1}] or an array "
                           "of such arrays.", param="tokens")


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:  # type: ignore[override]
        self.send_error_json(404, f"Not found: {self.request.method} {self.request.path}")
