"""Backends that speak the native `/generate` protocol (in-process Engine or HTTP).

Subclasses supply the transport (`_post`, `_post_stream`); everything else — request bodies,
streaming deltas, prefills and `select` scoring from prompt logprobs — lives here once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sglang_nb.runtime.managers.output_format import to_incremental

from ..chat_template import (
    ChatTemplate,
    chat_template_from_tokenizer,
    get_chat_template,
    match_chat_template_name,
)
from ..choices import ChoicesDecision, ChoicesSamplingMethod, normalized_logprob
from .base import BaseBackend, Prompt

if TYPE_CHECKING:
    from ..ir import SglSamplingParams
    from ..tree import RequestLog

PREFILL_PARAMS = {"max_new_tokens": 0}
_VISION_HINTS = ("VL", "Vision", "Llava", "LLaVA", "ConditionalGeneration", "Mllama", "MiniCPMV", "InternVL")


def sampling_body(params: SglSamplingParams) -> dict[str, Any]:
    """`sampling_params` of a gen request; `stop_regex` only when set (older servers reject the key)."""
    body = {"skip_special_tokens": True, "spaces_between_special_tokens": True, **params.to_srt_kwargs()}
    if not body["stop_regex"]:
        del body["stop_regex"]
    return body


def resolve_chat_template(name: str | None, model_path: str, tokenizer: Any) -> ChatTemplate:
    """Explicit name, else SGLang's model-path rules, else the tokenizer's own template, else "default"."""
    if name:
        return get_chat_template(name)
    matched = match_chat_template_name(model_path)
    if matched:
        return get_chat_template(matched)
    derived = chat_template_from_tokenizer(tokenizer) if tokenizer is not None else None
    return derived or get_chat_template("default")


def model_supports_images(model_info: dict[str, Any]) -> bool:
    flag = model_info.get("has_image_understanding")
    if flag is not None:
        return bool(flag)
    archs = model_info.get("architectures") or []
    return any(h in a for a in archs for h in _VISION_HINTS)


def _common_prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class NativeBackend(BaseBackend):
    """Everything a program needs, built from two transport primitives."""

    def __init__(self, model_info: dict[str, Any], chat_template_name: str | None, tokenizer: Any) -> None:
        super().__init__()
        self.model_info = model_info
        self.tokenizer = tokenizer
        self.chat_template = resolve_chat_template(chat_template_name, str(model_info.get("model_path") or ""),
                                                   tokenizer)

    # ---- transport (subclasses) --------------------------------------------------------------

    async def _post(self, body: dict[str, Any]) -> Any:
        """One non-streaming /generate call: a dict, or a list for batch bodies."""
        raise NotImplementedError

    def _post_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A streaming /generate call: cumulative chunks."""
        raise NotImplementedError

    # ---- model calls -------------------------------------------------------------------------

    @property
    def supports_images(self) -> bool:
        return model_supports_images(self.model_info)

    def tokenize(self, text: str) -> list[int] | None:
        return None if self.tokenizer is None else list(self.tokenizer.encode(text))

    def get_model_name(self) -> str:
        return str(self.model_info.get("model_path") or "")

    def _with_images(self, body: dict[str, Any], prompt: Prompt) -> dict[str, Any]:
        if prompt.images:
            if not self.supports_images:
                raise ValueError(f"The model {self.get_model_name() or '(unnamed)'} does not accept images: it has "
                                 "no vision encoder. Remove sgl.image()/sgl.video() or serve a vision model.")
            images = prompt.images[0] if len(prompt.images) == 1 else list(prompt.images)
            if isinstance(body.get("text"), list) or isinstance((body.get("input_ids") or [None])[0], list):
                n = len(body.get("text") or body["input_ids"])
                body["image_data"] = [images] * n
            else:
                body["image_data"] = images
        return body

    def _gen_body(self, prompt: Prompt, params: SglSamplingParams, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"text": prompt.text, "sampling_params": sampling_body(params),
                                **params.logprob_kwargs()}
        if stream:
            body["stream"] = True
        return self._with_images(body, prompt)

    async def generate(self, prompt: Prompt, params: SglSamplingParams, log: RequestLog) -> tuple[Any, dict[str, Any]]:
        out = await self._post(self._gen_body(prompt, params, stream=False))
        if isinstance(out, list):  # n > 1
            for o in out:
                log.add("gen", prompt.text, o["meta_info"], output=o["text"])
            return [o["text"] for o in out], out[0]["meta_info"]
        log.add("gen", prompt.text, out["meta_info"], output=out["text"])
        return out["text"], out["meta_info"]

    async def generate_stream(self, prompt: Prompt, params: SglSamplingParams,
                              log: RequestLog) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        sent: dict[str, int] = {}
        last: dict[str, Any] | None = None
        text = ""
        async for chunk in self._post_stream(self._gen_body(prompt, params, stream=True)):
            last = chunk
            delta = to_incremental(chunk, sent)
            text += delta["text"]
            yield delta["text"], delta["meta_info"]
        log.add("stream", prompt.text, last["meta_info"] if last else None, output=text)

    async def prefill(self, prompt: Prompt, log: RequestLog, *, input_ids: list[int] | None = None,
                      kind: str = "prefill") -> dict[str, Any]:
        body: dict[str, Any] = {"input_ids": input_ids} if input_ids is not None else {"text": prompt.text}
        body["sampling_params"] = dict(PREFILL_PARAMS)
        out = await self._post(self._with_images(body, prompt))
        log.add(kind, prompt.text, out["meta_info"])
        return dict(out["meta_info"])

    def cache_prefix(self, prefix_str: str) -> None:
        from ..runloop import submit, wait
        from ..tree import RequestLog

        wait(submit(self.prefill(Prompt(prefix_str), RequestLog())))

    # ---- select ------------------------------------------------------------------------------

    async def select(self, prompt: Prompt, choices: list[str], temperature: float,
                     method: ChoicesSamplingMethod, log: RequestLog) -> ChoicesDecision:
        """Score every choice from prompt logprobs in one batched request (plus one to cache the context).

        Each choice's tokens are found exactly: by token ids when the tokenizer is known, else by the
        token texts the runtime returns.
        """
        if not choices:
            raise ValueError("select() needs at least one choice.")
        if self.tokenizer is not None:
            scored = await self._score_by_ids(prompt, choices, log)
        else:
            scored = await self._score_by_text(prompt, choices, log)
        unconditional = None
        if method.requires_unconditional_logprobs:
            unconditional = await self._unconditional(scored, log)
        return method(choices=choices, normalized_prompt_logprobs=[normalized_logprob(s) for s in scored],
                      input_token_logprobs=scored, output_token_logprobs=[[] for _ in choices],
                      unconditional_token_logprobs=unconditional)

    async def _score_by_ids(self, prompt: Prompt, choices: list[str], log: RequestLog) -> list[list[list[Any]]]:
        context = self.tokenize(prompt.text) or []
        full = [self.tokenize(prompt.text + c) or [] for c in choices]
        # Where each choice's tokens begin (a token merging context and choice text counts as the choice's).
        starts = [max(1, min(_common_prefix_len(context, ids), len(ids) - 1)) if len(ids) > 1 else 0 for ids in full]
        if context:
            await self.prefill(prompt, log, input_ids=context)
        outs = await self._post(self._with_images({
            "input_ids": full, "sampling_params": {"max_new_tokens": 0, "temperature": 0},
            "return_logprob": True, "logprob_start_len": starts, "return_text_in_logprobs": True}, prompt))
        scored = []
        for choice, out in zip(choices, outs):
            log.add("score", prompt.text + choice, out["meta_info"])
            scored.append([list(e) for e in out["meta_info"]["input_token_logprobs"]])
        return scored

    async def _score_by_text(self, prompt: Prompt, choices: list[str], log: RequestLog) -> list[list[list[Any]]]:
        meta = await self.prefill(prompt, log)
        context_len = int(meta.get("prompt_tokens") or 0)
        start = max(context_len - 2, 0)
        outs = await self._post(self._with_images({
            "text": [prompt.text + c for c in choices], "sampling_params": {"max_new_tokens": 0, "temperature": 0},
            "return_logprob": True, "logprob_start_len": start, "return_text_in_logprobs": True}, prompt))
        scored = []
        for choice, out in zip(choices, outs):
            log.add("score", prompt.text + choice, out["meta_info"])
            entries = [list(e) for e in out["meta_info"]["input_token_logprobs"]]
            n = _choice_token_count(entries, len(prompt.text), prompt.text + choice,
                                    int(out["meta_info"].get("prompt_tokens") or 0) - context_len)
            scored.append(entries[len(entries) - n:])
        return scored

    async def _unconditional(self, scored: list[list[list[Any]]], log: RequestLog) -> list[list[list[Any]]]:
        ids = [[e[1] for e in entries] for entries in scored]
        if any(not x for x in ids):
            raise ValueError("unconditional_likelihood_normalized: a choice has no tokens of its own.")
        outs = await self._post({"input_ids": ids, "sampling_params": dict(PREFILL_PARAMS), "return_logprob": True,
                                 "logprob_start_len": 0})
        result = []
        for out in outs:
            log.add("unconditional", "", out["meta_info"])
            result.append([list(e) for e in out["meta_info"]["input_token_logprobs"]])
        return result


def _choice_token_count(entries: list[list[Any]], context_chars: int, full_text: str, fallback: int) -> int:
    """How many trailing entries carry choice text: walk back from the end by each token's text."""
    end = len(full_text)
    count = 0
    for entry in reversed(entries):
        text = entry[2] if len(entry) > 2 else None
        if text is None:
            break
        if end <= context_chars:
            return max(count, 1)
        end -= len(text)
        count += 1
    else:
        if end <= context_chars:
            return max(count, 1)
    return max(min(fallback, len(entries)), 1)


def local_tokenizer(path: str | None) -> Any:
    """The tokenizer at `path` when it is a local directory (a server on this machine), else None."""
    if not path or not os.path.isdir(path):
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    except Exception:  # noqa: BLE001 - no tokenizer means text-based scoring, not an error
        return None
