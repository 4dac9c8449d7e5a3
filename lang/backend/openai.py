"""OpenAI: programs against any OpenAI-compatible API (chat or completions).

Chat models receive the program's messages; a gen must start an assistant turn. Completion models
receive the program text. `select` is scored from logprobs where the API offers them: completion
models through `echo` + prompt logprobs (every choice method works), chat models through the first
answer token's `top_logprobs`. JSON schemas go out as `response_format`; regexes are sent only to
servers that accept them (`regex_support=True`, e.g. this project's or SGLang's server).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from ..chat_template import get_chat_template
from ..choices import ChoicesDecision, ChoicesSamplingMethod, normalized_logprob
from .base import BaseBackend, Prompt
from .runtime_endpoint import ServerError, _decode

if TYPE_CHECKING:
    from ..ir import SglSamplingParams
    from ..tree import RequestLog

COMPLETION_MODEL_HINTS = ("gpt-3.5-turbo-instruct", "davinci", "babbage")
TOP_LOGPROBS = 20


@dataclass
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def reset(self) -> None:
        self.prompt_tokens = self.completion_tokens = 0


class OpenAI(BaseBackend):
    """`OpenAI(model_name, base_url=None, api_key=None, is_chat_model=None, regex_support=False)`."""

    def __init__(self, model_name: str, is_chat_model: bool | None = None, chat_template: Any = None,
                 base_url: str | None = None, api_key: str | None = None, regex_support: bool = False,
                 **client_kwargs: Any) -> None:
        super().__init__()
        self.model_name = model_name
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.is_chat_model = is_chat_model if is_chat_model is not None else \
            not any(h in model_name for h in COMPLETION_MODEL_HINTS)
        self.chat_template = chat_template or get_chat_template("default")
        self.regex_support = regex_support
        self.token_usage = TokenUsage()
        self._client_kwargs = client_kwargs
        self._aclient: httpx.AsyncClient | None = None

    def get_model_name(self) -> str:
        return self.model_name

    # ---- transport ---------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._aclient is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._aclient = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0), headers=headers,
                                              **self._client_kwargs)
        return self._aclient

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._client().post(self.base_url + path, json=body)
        if response.status_code != 200:
            raise ServerError(response.status_code, _decode(response))
        out: dict[str, Any] = response.json()
        usage = out.get("usage") or {}
        self.token_usage.prompt_tokens += usage.get("prompt_tokens") or 0
        self.token_usage.completion_tokens += usage.get("completion_tokens") or 0
        return out

    # ---- request bodies ----------------------------------------------------------------------

    def _sampling(self, params: SglSamplingParams) -> dict[str, Any]:
        stop = params.stop
        body: dict[str, Any] = {
            "model": self.model_name, "max_tokens": params.max_new_tokens, "n": params.n or 1,
            "stop": (stop if isinstance(stop, str) else list(stop or [])) or None,
            "temperature": params.temperature, "top_p": params.top_p,
            "frequency_penalty": params.frequency_penalty, "presence_penalty": params.presence_penalty,
        }
        if params.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": json.loads(params.json_schema)}}
        if params.regex is not None:
            if self.regex_support:
                body["regex"] = params.regex
            else:
                warnings.warn("The OpenAI backend ignores regex constraints (pass regex_support=True for servers "
                              "that accept them).", UserWarning, stacklevel=2)
        return {k: v for k, v in body.items() if v is not None}

    def _messages(self, prompt: Prompt) -> list[dict[str, Any]]:
        if prompt.open_role != "assistant" or prompt.open_text.strip():
            raise ValueError("With a chat model, gen() must start an assistant turn: "
                             "s += sgl.assistant(sgl.gen(...)).")
        return list(prompt.messages)

    def _body(self, prompt: Prompt, params: SglSamplingParams) -> tuple[str, dict[str, Any]]:
        if self.is_chat_model:
            return "/chat/completions", {"messages": self._messages(prompt), **self._sampling(params)}
        return "/completions", {"prompt": prompt.text, **self._sampling(params)}

    @staticmethod
    def _meta(out: dict[str, Any], choice: dict[str, Any]) -> dict[str, Any]:
        usage = out.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return {"id": out.get("id"), "finish_reason": choice.get("finish_reason"),
                "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
                "cached_tokens": details.get("cached_tokens", 0)}

    def _text(self, choice: dict[str, Any]) -> str:
        if self.is_chat_model:
            return str((choice.get("message") or {}).get("content") or "")
        return str(choice.get("text") or "")

    # ---- model calls -------------------------------------------------------------------------

    async def generate(self, prompt: Prompt, params: SglSamplingParams, log: RequestLog) -> tuple[Any, dict[str, Any]]:
        path, body = self._body(prompt, params)
        out = await self._post(path, body)
        texts = [self._text(c) for c in out["choices"]]
        meta = self._meta(out, out["choices"][0])
        log.add("gen", prompt.text, meta, output=texts[0])
        return (texts if len(texts) > 1 else texts[0]), meta

    async def generate_stream(self, prompt: Prompt, params: SglSamplingParams,
                              log: RequestLog) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        path, body = self._body(prompt, params)
        body = {**body, "stream": True, "n": 1}
        text, meta = "", {}
        async with self._client().stream("POST", self.base_url + path, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                raise ServerError(response.status_code, _decode(response))
            async for line in response.aiter_lines():
                data = line[5:].strip() if line.startswith("data:") else ""
                if not data or data == "[DONE]":
                    continue
                chunk = json.loads(data)
                if not chunk.get("choices"):
                    continue
                choice = chunk["choices"][0]
                delta = (choice.get("delta") or {}).get("content") if self.is_chat_model else choice.get("text")
                meta = self._meta(chunk, choice)
                if delta:
                    text += delta
                    yield delta, meta
        log.add("stream", prompt.text, meta, output=text)

    async def select(self, prompt: Prompt, choices: list[str], temperature: float,
                     method: ChoicesSamplingMethod, log: RequestLog) -> ChoicesDecision:
        if not choices:
            raise ValueError("select() needs at least one choice.")
        if self.is_chat_model:
            return await self._select_by_top_logprobs(prompt, choices, log)
        scored = [await self._echo_logprobs(prompt.text, c, log) for c in choices]
        unconditional = None
        if method.requires_unconditional_logprobs:
            unconditional = [await self._echo_logprobs("", c, log) for c in choices]
        return method(choices=choices, normalized_prompt_logprobs=[normalized_logprob(s) for s in scored],
                      input_token_logprobs=scored, output_token_logprobs=[[] for _ in choices],
                      unconditional_token_logprobs=unconditional)

    async def _echo_logprobs(self, context: str, choice: str, log: RequestLog) -> list[list[Any]]:
        """Logprobs of the choice's tokens: echo the prompt, generate nothing, keep tokens past the context."""
        out = await self._post("/completions", {"model": self.model_name, "prompt": context + choice,
                                                "max_tokens": 0, "echo": True, "logprobs": 0, "temperature": 0})
        choice_out = out["choices"][0]
        log.add("score", context + choice, self._meta(out, choice_out))
        lp = choice_out.get("logprobs") or {}
        tokens, values, offsets = lp.get("tokens") or [], lp.get("token_logprobs") or [], lp.get("text_offset") or []
        if not tokens:
            raise ValueError("The server returned no prompt logprobs (it does not support echo with logprobs).")
        entries = [[v, None, t] for t, v, o in zip(tokens, values, offsets) if o + len(t) > len(context)]
        return entries or [[values[-1], None, tokens[-1]]]

    async def _select_by_top_logprobs(self, prompt: Prompt, choices: list[str], log: RequestLog) -> ChoicesDecision:
        """Chat models: score each choice by the logprob of its first token among the answer's top tokens."""
        out = await self._post("/chat/completions", {
            "model": self.model_name, "messages": self._messages(prompt), "max_tokens": 1, "temperature": 0,
            "logprobs": True, "top_logprobs": TOP_LOGPROBS})
        choice_out = out["choices"][0]
        log.add("select", prompt.text, self._meta(out, choice_out), output=self._text(choice_out))
        content = ((choice_out.get("logprobs") or {}).get("content") or [{}])[0]
        top = {e["token"]: e["logprob"] for e in content.get("top_logprobs") or []}
        scores = []
        for choice in choices:
            matches = [lp for tok, lp in top.items() if tok.strip() and choice.strip().startswith(tok.strip())]
            scores.append(max(matches) if matches else float("-inf"))
        if all(s == float("-inf") for s in scores):
            if not self.regex_support:
                raise ValueError(f"None of the choices {choices} is among the model's top {TOP_LOGPROBS} first "
                                 "tokens (a server with regex support can constrain the answer instead).")
            return await self._select_by_regex(prompt, choices, log, scores)
        best = scores.index(max(scores))
        return ChoicesDecision(choices[best], {"first_token_logprobs": scores, "top_logprobs": top})

    async def _select_by_regex(self, prompt: Prompt, choices: list[str], log: RequestLog,
                               scores: list[float]) -> ChoicesDecision:
        """Let the server's grammar force one of the choices."""
        pattern = "(" + "|".join(re.escape(c) for c in choices) + ")"
        out = await self._post("/chat/completions", {
            "model": self.model_name, "messages": self._messages(prompt), "temperature": 0, "regex": pattern,
            "max_tokens": max(len(c) for c in choices) + 4})
        choice_out = out["choices"][0]
        text = self._text(choice_out)
        log.add("select", prompt.text, self._meta(out, choice_out), output=text)
        if text not in choices:
            raise ValueError(f"The server did not constrain the answer to the choices (got {text!r}).")
        return ChoicesDecision(text, {"first_token_logprobs": scores, "constrained": True})

    def shutdown(self) -> None:
        if self._aclient is not None:
            from .. import runloop

            client, self._aclient = self._aclient, None
            runloop.submit(client.aclose())
