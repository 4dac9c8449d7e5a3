"""The SGLang `/generate` output object built from a request's state (text, ids, meta_info)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tokenizer_manager import ReqState


def build_output(st: ReqState, text: str, token_text: Callable[[list[int]], list[str]] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": st.rid,
        "finish_reason": st.finish_reason,
        "prompt_tokens": st.prompt_tokens,
        "completion_tokens": st.completion_tokens,
        "completion_tokens_wo_jump_forward": st.completion_tokens,
        "cached_tokens": st.cached_tokens,
    }
    if st.finished:
        meta["e2e_latency"] = round(time.perf_counter() - st.created, 6)
    t = st.tokenized
    if t.return_logprob:
        lp = st.logprobs
        meta["input_token_logprobs"] = _triples(lp.get("input_token_logprobs", []), token_text)
        meta["output_token_logprobs"] = _triples(lp.get("output_token_logprobs", []), token_text)
        if t.top_logprobs_num > 0:
            meta["input_top_logprobs"] = [_top(x, token_text) for x in lp.get("input_top_logprobs", [])]
            meta["output_top_logprobs"] = [_top(x, token_text) for x in lp.get("output_top_logprobs", [])]
        if t.token_ids_logprob:
            ids = t.token_ids_logprob
            meta["input_token_ids_logprobs"] = [_ids(x, ids, token_text) for x in lp.get("input_token_ids_logprobs", [])]
            meta["output_token_ids_logprobs"] = [_ids(x, ids, token_text)
                                                 for x in lp.get("output_token_ids_logprobs", [])]
        meta["normalized_prompt_logprob"] = st.normalized_prompt_logprob
    return {"text": text, "output_ids": list(st.decode.ids), "meta_info": meta}


def _triples(pairs: list[tuple[float | None, int]], token_text: Callable[[list[int]], list[str]] | None
             ) -> list[list[Any]]:
    texts = token_text([tid for _, tid in pairs]) if token_text else [None] * len(pairs)
    return [[lp, tid, txt] for (lp, tid), txt in zip(pairs, texts)]


def _top(item: tuple[list[float], list[int]] | None, token_text: Callable[[list[int]], list[str]] | None
         ) -> list[list[Any]] | None:
    if item is None:
        return None
    vals, ids = item
    return _triples(list(zip(vals, ids)), token_text)


def _ids(item: list[float] | None, ids: list[int], token_text: Callable[[list[int]], list[str]] | None
         ) -> list[list[Any]] | None:
    if item is None:
        return None
    return _triples(list(zip(item, ids)), token_text)


def to_incremental(out: dict[str, Any], sent: dict[str, int]) -> dict[str, Any]:
    """Turn a cumulative streaming chunk into a delta; `sent` tracks offsets across calls."""
    text, ids = out["text"], out.get("output_ids", [])
    delta = dict(out)
    delta["text"] = text[sent.get("text", 0):]
    delta["output_ids"] = ids[sent.get("ids", 0):]
    meta = dict(out["meta_info"])
    for key in ("output_token_logprobs", "output_top_logprobs", "output_token_ids_logprobs"):
        if key in meta:
            meta[key] = meta[key][sent.get(key, 0):]
            sent[key] = len(out["meta_info"][key])
    delta["meta_info"] = meta
    sent["text"] = max(len(text), sent.get("text", 0))
    sent["ids"] = len(ids)
    return delta
