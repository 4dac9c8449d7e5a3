"""OpenAI response objects built from native outputs: choices, logprobs, usage, and the per-choice
delta state of streamed completions and chat completions."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .reasoning_parser import ReasoningParser
from .tool_parser import ToolCallParser


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def finish_fields(meta: dict[str, Any]) -> tuple[str | None, Any]:
    """(finish_reason, matched_stop) from a native `meta_info`."""
    fr = meta.get("finish_reason")
    if not fr:
        return None, None
    return fr.get("type"), fr.get("matched")


def usage(outs: list[dict[str, Any]], n: int, cache_report: bool) -> dict[str, Any]:
    """Prompt tokens are counted once per distinct prompt (every n-th output)."""
    metas = [o["meta_info"] for o in outs]
    prompt = sum(m["prompt_tokens"] for m in metas[::n])
    completion = sum(m["completion_tokens"] for m in metas)
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    if cache_report:
        out["prompt_tokens_details"] = {"cached_tokens": sum(m.get("cached_tokens", 0) for m in metas[::n])}
    return out


# ---- logprobs --------------------------------------------------------------------------------

def _top_dict(top: list[list[Any]] | None) -> dict[str, float] | None:
    if top is None:
        return None
    return {str(txt): lp for lp, _, txt in top}


def completion_logprobs(entries: list[list[Any]], tops: list[Any], offset: int) -> dict[str, Any]:
    """The completions `logprobs` object for `[lp, id, text]` entries starting at text `offset`."""
    tokens = [str(e[2]) for e in entries]
    offsets = []
    for tok in tokens:
        offsets.append(offset)
        offset += len(tok)
    return {"text_offset": offsets, "token_logprobs": [e[0] for e in entries], "tokens": tokens,
            "top_logprobs": [_top_dict(t) for t in tops] if tops else [None] * len(entries)}


def chat_logprobs(entries: list[list[Any]], tops: list[Any], top_n: int) -> dict[str, Any]:
    content = []
    for j, (lp, _, txt) in enumerate(entries):
        txt = str(txt)
        alts = tops[j] if j < len(tops) and tops[j] else []
        content.append({"token": txt, "bytes": list(txt.encode("utf-8")), "logprob": lp,
                        "top_logprobs": [{"token": str(t), "bytes": list(str(t).encode("utf-8")), "logprob": v}
                                         for v, _, t in alts[:top_n]]})
    return {"content": content}


def output_logprob_slice(meta: dict[str, Any], start: int) -> tuple[list[Any], list[Any]]:
    entries = meta.get("output_token_logprobs") or []
    tops = meta.get("output_top_logprobs") or []
    return entries[start:], tops[start:]


def with_input_logprobs(meta: dict[str, Any], entries: list[Any], tops: list[Any]) -> tuple[list[Any], list[Any]]:
    """Prompt logprobs (echo) in front of the output ones; top lists only when they were asked for."""
    in_entries = meta.get("input_token_logprobs") or []
    if "output_top_logprobs" not in meta:
        return in_entries + entries, []
    in_tops = meta.get("input_top_logprobs") or [None] * len(in_entries)
    return in_entries + entries, in_tops + tops


# ---- completions -----------------------------------------------------------------------------

def completion_choice(i: int, out: dict[str, Any], prompt_text: str | None, echo: bool,
                      want_logprobs: bool) -> dict[str, Any]:
    meta = out["meta_info"]
    prefix = (prompt_text or "") if echo else ""
    logprobs = None
    if want_logprobs:
        entries, tops = output_logprob_slice(meta, 0)
        if echo:
            entries, tops = with_input_logprobs(meta, entries, tops)
        logprobs = completion_logprobs(entries, tops, 0 if echo else len(prefix))
    reason, matched = finish_fields(meta)
    return {"index": i, "text": prefix + out["text"], "logprobs": logprobs, "finish_reason": reason,
            "matched_stop": matched}


def completion_response(rid: str, model: str, choices: list[dict[str, Any]], use: dict[str, Any]) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use, "system_fingerprint": None}


@dataclass
class CompletionStream:
    """Turns cumulative native chunks into `text_completion` stream chunks for one request."""

    rid: str
    model: str
    prompt_texts: list[str]
    n: int
    echo: bool
    want_logprobs: bool
    include_usage: bool
    sent_text: dict[int, int] = field(default_factory=dict)
    sent_lp: dict[int, int] = field(default_factory=dict)
    emitted: dict[int, int] = field(default_factory=dict)  # characters streamed per choice (text_offset base)
    finals: dict[int, dict[str, Any]] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    def chunk(self, out: dict[str, Any]) -> dict[str, Any] | None:
        idx = out.get("index", 0)
        meta = out["meta_info"]
        first = idx not in self.sent_text
        text = out["text"]
        start = self.sent_text.get(idx, 0)
        delta = text[start:]
        self.sent_text[idx] = max(start, len(text))
        prefix = self.prompt_texts[idx // self.n] if self.echo and first else ""
        logprobs = None
        if self.want_logprobs:
            entries, tops = output_logprob_slice(meta, self.sent_lp.get(idx, 0))
            self.sent_lp[idx] = self.sent_lp.get(idx, 0) + len(entries)
            if first and self.echo:
                entries, tops = with_input_logprobs(meta, entries, tops)
            logprobs = completion_logprobs(entries, tops, self.emitted.get(idx, 0))
        self.emitted[idx] = self.emitted.get(idx, 0) + len(prefix) + len(delta)
        reason, matched = finish_fields(meta)
        if reason is not None:
            self.finals[idx] = out
        if not (delta or prefix or reason or (logprobs and logprobs["tokens"])):
            return None
        body = {"id": self.rid, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"index": idx, "text": prefix + delta, "logprobs": logprobs, "finish_reason": reason,
                             "matched_stop": matched}]}
        if self.include_usage:
            body["usage"] = None
        return body

    def usage_chunk(self, cache_report: bool) -> dict[str, Any]:
        outs = [self.finals[i] for i in sorted(self.finals)]
        return {"id": self.rid, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [], "usage": usage(outs, self.n, cache_report) if outs else None}


# ---- chat ------------------------------------------------------------------------------------

def chat_choice(i: int, out: dict[str, Any], parser: ToolCallParser | None, top_n: int,
                want_logprobs: bool, reasoner: ReasoningParser | None = None) -> dict[str, Any]:
    meta = out["meta_info"]
    reason, matched = finish_fields(meta)
    reasoning, answer = reasoner.split(out["text"]) if reasoner is not None else (None, out["text"])
    content: str | None = answer
    tool_calls = None
    if parser is not None:
        text, calls = parser.parse(answer)
        if calls:
            content = text.strip()
            tool_calls = [c.to_openai(k) for k, c in enumerate(calls)]
            reason, matched = "tool_calls", None
    logprobs = chat_logprobs(*output_logprob_slice(meta, 0), top_n) if want_logprobs else None
    return {"index": i, "message": {"role": "assistant", "content": content or None, "reasoning_content": reasoning,
                                    "tool_calls": tool_calls},
            "logprobs": logprobs, "finish_reason": reason, "matched_stop": matched}


def chat_response(rid: str, model: str, choices: list[dict[str, Any]], use: dict[str, Any]) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use, "system_fingerprint": None}


@dataclass
class ChatStream:
    """Turns cumulative native chunks into `chat.completion.chunk`s; tool calls are held back until
    they can be parsed whole, plain content streams as it comes."""

    rid: str
    model: str
    n: int
    parser_factory: Any  # () -> ToolCallParser | None
    want_logprobs: bool
    top_n: int
    include_usage: bool
    reasoner: ReasoningParser | None = None
    stream_reasoning: bool = True
    sent_text: dict[int, int] = field(default_factory=dict)
    sent_reasoning: dict[int, int] = field(default_factory=dict)
    sent_lp: dict[int, int] = field(default_factory=dict)
    parsers: dict[int, Any] = field(default_factory=dict)
    finals: dict[int, dict[str, Any]] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    def _wrap(self, idx: int, delta: dict[str, Any], logprobs: Any = None, reason: str | None = None,
              matched: Any = None) -> dict[str, Any]:
        body = {"id": self.rid, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": idx, "delta": delta, "logprobs": logprobs, "finish_reason": reason,
                             "matched_stop": matched}]}
        if self.include_usage:
            body["usage"] = None
        return body

    def chunks(self, out: dict[str, Any]) -> list[dict[str, Any]]:
        idx = out.get("index", 0)
        meta = out["meta_info"]
        text = out["text"]
        result = []
        if idx not in self.sent_text:
            self.sent_text[idx] = 0
            self.parsers[idx] = self.parser_factory()
            result.append(self._wrap(idx, {"role": "assistant", "content": ""}))
        parser = self.parsers[idx]
        reason, matched = finish_fields(meta)
        if self.reasoner is not None:
            text = self._reasoning_delta(idx, text, reason is not None, result)
        sent = self.sent_text[idx]
        logprobs = None
        if self.want_logprobs:
            entries, tops = output_logprob_slice(meta, self.sent_lp.get(idx, 0))
            self.sent_lp[idx] = self.sent_lp.get(idx, 0) + len(entries)
            logprobs = chat_logprobs(entries, tops, self.top_n) if entries else None
        calls: list[Any] = []
        if reason is None:
            upto = parser.safe_content_len(text) if parser is not None else len(text)
            new = text[sent:max(upto, sent)]
        else:
            self.finals[idx] = out
            content = text
            if parser is not None:
                content, calls = parser.parse(text)
            new = content[sent:] if content.startswith(text[:sent]) else ""
        self.sent_text[idx] = sent + len(new)
        if new or logprobs:
            result.append(self._wrap(idx, {"content": new}, logprobs))
        if calls:
            result.append(self._wrap(idx, {"tool_calls": [c.to_openai(k) for k, c in enumerate(calls)]}))
            reason, matched = "tool_calls", None
        if reason is not None:
            result.append(self._wrap(idx, {}, None, reason, matched))
        return result

    def _reasoning_delta(self, idx: int, text: str, finished: bool, result: list[dict[str, Any]]) -> str:
        """Emit new reasoning text (all at the end unless stream_reasoning); return the answer part."""
        assert self.reasoner is not None
        if finished:
            reasoning, answer = self.reasoner.split(text)
            reasoning = reasoning or ""
        else:
            reasoning, answer = self.reasoner.split_partial(text)
        if self.stream_reasoning or finished:
            sent = self.sent_reasoning.get(idx, 0)
            if len(reasoning) > sent:
                result.append(self._wrap(idx, {"reasoning_content": reasoning[sent:]}))
                self.sent_reasoning[idx] = len(reasoning)
        return answer

    def usage_chunk(self, cache_report: bool) -> dict[str, Any]:
        outs = [self.finals[i] for i in sorted(self.finals)]
        return {"id": self.rid, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage(outs, self.n, cache_report) if outs else None}
