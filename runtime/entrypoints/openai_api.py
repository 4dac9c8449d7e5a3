"""The OpenAI-compatible API: `/v1/models`, `/v1/completions`, `/v1/chat/completions`,
`/v1/embeddings`. Requests are validated (`openai_protocol`), turned into one native
`GenerateReqInput`, run through the engine, and shaped back (`openai_format`).

`run_completion` / `run_chat` are also what `/v1/batches` executes for each input line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tornado.iostream import StreamClosedError

from ..managers.io_struct import GenerateReqInput
from . import openai_format as fmt
from .context import ServerContext
from .handler_base import BaseHandler, closing, first_item
from .openai_protocol import ChatRequest, CompletionRequest, parse_chat, parse_completion
from .protocol import ApiError
from .reasoning_parser import ReasoningParser
from .tool_parser import ToolCallParser


@dataclass
class Prepared:
    """A validated OpenAI request as one native request, plus what shaping the answer needs."""

    req: CompletionRequest | ChatRequest
    obj: GenerateReqInput
    prompt_texts: list[str]
    tool_names: list[str]
    reasoner: ReasoningParser | None = None


def _check_length(ctx: ServerContext, num_tokens: int, max_tokens: int | None, param: str) -> None:
    if num_tokens >= ctx.context_len:
        raise ApiError(f"The input ({num_tokens} tokens) is longer than the model's context length "
                       f"({ctx.context_len} tokens).", param=param)
    if max_tokens is not None and num_tokens + max_tokens > ctx.context_len:
        raise ApiError(
            f"Requested token count exceeds the model's maximum context length of {ctx.context_len} tokens. "
            f"You requested a total of {num_tokens + max_tokens} tokens: {num_tokens} tokens from the input "
            f"messages and {max_tokens} tokens for the completion. Please reduce the number of tokens in the input "
            "messages or the completion to fit within the limit.", param="max_tokens")


def _tokenizer(ctx: ServerContext, param: str) -> Any:
    if ctx.tokenizer is None:
        raise ApiError("This server runs without a tokenizer (--skip-tokenizer-init); send token ids.", param=param)
    return ctx.tokenizer


def prepare_completion(ctx: ServerContext, body: dict[str, Any]) -> Prepared:
    req = parse_completion(body, ctx.model_name)
    ids_list, texts = [], []
    for p in req.prompts:
        if isinstance(p, str):
            ids = _tokenizer(ctx, "prompt").encode(p)
            texts.append(p)
        else:
            if any(not 0 <= t < ctx.vocab_size for t in p):
                raise ApiError(f"prompt token ids must be in [0, {ctx.vocab_size - 1}].", param="prompt")
            ids = p
            texts.append(ctx.tokenizer.decode(p) if req.echo and ctx.tokenizer is not None else "")
        _check_length(ctx, len(ids), req.max_tokens, "prompt")
        ids_list.append(list(ids))
    want_lp = req.logprobs is not None
    obj = GenerateReqInput(
        input_ids=ids_list[0] if len(ids_list) == 1 else ids_list,
        sampling_params={**req.sampling, "max_new_tokens": req.max_tokens}, rid=req.rid,
        return_logprob=want_lp, top_logprobs_num=req.logprobs or 0,
        logprob_start_len=0 if (req.echo and want_lp) else -1, return_text_in_logprobs=True, stream=req.stream)
    return Prepared(req, obj, texts, [])


def prepare_chat(ctx: ServerContext, body: dict[str, Any]) -> Prepared:
    req = parse_chat(body, ctx.model_name, ctx.is_multimodal)
    tokenizer = _tokenizer(ctx, "messages")
    template = ctx.chat_template
    assert template is not None  # present whenever a tokenizer is
    tools = req.tools
    if tools and isinstance(req.tool_choice, dict):
        tools = [t for t in tools if t["function"]["name"] == req.tool_choice["function"]["name"]]
    try:
        prompt = template.render(req.messages, tools=tools, continue_final_message=req.continue_final_message,
                                 **req.chat_template_kwargs)
    except ValueError as e:
        raise ApiError(str(e), param="messages") from None
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    _check_length(ctx, len(ids), req.max_tokens, "messages")
    sampling = {**req.sampling, "max_new_tokens": req.max_tokens}
    if template.stop and not sampling.get("ignore_eos"):
        stop = sampling.get("stop") or []
        sampling["stop"] = ([stop] if isinstance(stop, str) else list(stop)) + template.stop
    if tools:
        sampling["skip_special_tokens"] = False  # keep tool-call markers that are special tokens
    obj = GenerateReqInput(input_ids=ids, sampling_params=sampling, rid=req.rid, return_logprob=req.logprobs,
                           top_logprobs_num=req.top_logprobs if req.logprobs else 0, return_text_in_logprobs=True,
                           stream=req.stream)
    kind = ctx.server_args.reasoning_parser
    thinking = req.chat_template_kwargs.get("enable_thinking", True) is not False
    reasoner = ReasoningParser(kind) if kind and req.separate_reasoning and thinking else None
    return Prepared(req, obj, [prompt], [t["function"]["name"] for t in tools or []], reasoner)


def _parser(ctx: ServerContext, names: list[str]) -> ToolCallParser | None:
    return ToolCallParser(ctx.server_args.tool_call_parser, names) if names else None


def _as_list(out: Any) -> list[dict[str, Any]]:
    return out if isinstance(out, list) else [out]


async def _collect(ctx: ServerContext, obj: GenerateReqInput) -> list[dict[str, Any]]:
    gen = ctx.generate(obj)
    async with closing(gen):
        return _as_list(await first_item(gen))


async def run_completion(ctx: ServerContext, request: dict[str, Any] | Prepared) -> dict[str, Any]:
    """A non-streamed `/v1/completions` response for a JSON body (or an already prepared one)."""
    p = request if isinstance(request, Prepared) else prepare_completion(ctx, request)
    req = p.req
    assert isinstance(req, CompletionRequest)
    outs = await _collect(ctx, p.obj)
    choices = [fmt.completion_choice(i, out, p.prompt_texts[i // req.n], req.echo, req.logprobs is not None)
               for i, out in enumerate(outs)]
    use = fmt.usage(outs, req.n, ctx.server_args.enable_cache_report)
    return fmt.completion_response(req.rid or fmt.new_id("cmpl"), req.model, choices, use)


async def run_chat(ctx: ServerContext, request: dict[str, Any] | Prepared) -> dict[str, Any]:
    """A non-streamed `/v1/chat/completions` response for a JSON body (or an already prepared one)."""
    p = request if isinstance(request, Prepared) else prepare_chat(ctx, request)
    req = p.req
    assert isinstance(req, ChatRequest)
    outs = await _collect(ctx, p.obj)
    choices = [fmt.chat_choice(i, out, _parser(ctx, p.tool_names), req.top_logprobs, req.logprobs, p.reasoner)
               for i, out in enumerate(outs)]
    use = fmt.usage(outs, req.n, ctx.server_args.enable_cache_report)
    return fmt.chat_response(req.rid or fmt.new_id("chatcmpl"), req.model, choices, use)


class OpenAIHandler(BaseHandler):
    openai_errors = True
    nan_as = -9999.0  # OpenAI clients expect a number for an impossible token's logprob

    async def _stream(self, p: Prepared, state: Any, chunks: Any) -> None:
        gen = self.ctx.generate(p.obj)
        async with closing(gen):
            first = await first_item(gen)  # bad input is still a plain HTTP 4xx here
            self.start_sse()
            try:
                for c in chunks(first):
                    await self.send_event(c)
                async for out in gen:
                    for c in chunks(out):
                        await self.send_event(c)
            except StreamClosedError:
                raise
            except Exception as e:  # noqa: BLE001 - reported in the stream, the status is already 200
                await self.stream_error(e)
                return
        if p.req.include_usage:
            await self.send_event(state.usage_chunk(self.ctx.server_args.enable_cache_report))
        await self.finish_sse()


class CompletionsHandler(OpenAIHandler):
    async def post(self) -> None:
        await self.run_cancellable(self._handle())

    async def _handle(self) -> None:
        p = prepare_completion(self.ctx, self.body_json())
        req = p.req
        assert isinstance(req, CompletionRequest)
        if not req.stream:
            self.write_json(await run_completion(self.ctx, p))
            return
        state = fmt.CompletionStream(req.rid or fmt.new_id("cmpl"), req.model, p.prompt_texts, req.n, req.echo,
                                     req.logprobs is not None, req.include_usage)

        def chunks(out: dict[str, Any]) -> list[dict[str, Any]]:
            c = state.chunk(out)
            return [c] if c is not None else []

        await self._stream(p, state, chunks)


class ChatCompletionsHandler(OpenAIHandler):
    async def post(self) -> None:
        await self.run_cancellable(self._handle())

    async def _handle(self) -> None:
        p = prepare_chat(self.ctx, self.body_json())
        req = p.req
        assert isinstance(req, ChatRequest)
        if not req.stream:
            self.write_json(await run_chat(self.ctx, p))
            return
        state = fmt.ChatStream(req.rid or fmt.new_id("chatcmpl"), req.model, req.n,
                               lambda: _parser(self.ctx, p.tool_names), req.logprobs, req.top_logprobs,
                               req.include_usage, p.reasoner, req.stream_reasoning)
        await self._stream(p, state, state.chunks)


class ModelsHandler(OpenAIHandler):
    def _card(self) -> dict[str, Any]:
        name = self.ctx.model_name
        return {"id": name, "object": "model", "created": self.ctx.created, "owned_by": "sglang_nb", "root": name,
                "parent": None, "max_model_len": self.ctx.context_len}

    def get(self, model: str | None = None) -> None:
        if model is None:
            self.write_json({"object": "list", "data": [self._card()]})
        elif model == self.ctx.model_name:
            self.write_json(self._card())
        else:
            self.send_error_json(404, f"The model '{model}' does not exist.", param="model",
                                 err_type="invalid_request_error")


class EmbeddingsHandler(OpenAIHandler):
    def post(self) -> None:
        body = self.body_json()
        if body.get("input") in (None, "", [], [""], [[]]):
            raise ApiError("Input cannot be empty or contain only whitespace.", param="input")
        if self.ctx.is_generation:
            raise ApiError("This model does not appear to be an embedding model by default. Please add "
                           "`--is-embedding` when launching the server or try another model.", param="model")
        raise ApiError("Embeddings are not supported by this server yet.", param="model")
