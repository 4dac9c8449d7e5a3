"""Incremental detokenization (runs in the front process, batched per scheduler message).

Per request we keep `surr_offset <= read_offset <= len(ids)`: the text of ids[surr:read] was
already emitted; decoding ids[surr:] and subtracting it gives the new text without re-decoding the
whole sequence. If the new text ends in U+FFFD (an incomplete UTF-8 sequence) it is held back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_REPLACEMENT = "\ufffd"


@dataclass
class DecodeStatus:
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    ids: list[int] = field(default_factory=list)
    text: str = ""
    surr_offset: int = 0
    read_offset: int = 0


def decode_incrementally(tokenizer: Any, states: list[DecodeStatus], new_ids: list[list[int]],
                         finished: list[bool]) -> None:
    """Append `new_ids` to each state and extend its `text` (two batched decodes for the batch)."""
    for st, ids in zip(states, new_ids):
        st.ids.extend(ids)
    groups: dict[tuple[bool, bool], list[int]] = {}
    for i, st in enumerate(states):
        groups.setdefault((st.skip_special_tokens, st.spaces_between_special_tokens), []).append(i)
    for (skip, spaces), idx in groups.items():
        kwargs = {"skip_special_tokens": skip}
        if not spaces:
            kwargs["spaces_between_special_tokens"] = False
        surr = tokenizer.batch_decode([states[i].ids[states[i].surr_offset:states[i].read_offset] for i in idx],
                                      **kwargs)
        full = tokenizer.batch_decode([states[i].ids[states[i].surr_offset:] for i in idx], **kwargs)
        for j, i in enumerate(idx):
            st = states[i]
            if full[j].endswith(_REPLACEMENT) and not finished[i]:
                continue
            st.text += full[j][len(surr[j]):]
            st.surr_offset = st.read_offset
            st.read_offset = len(st.ids)


def holdback_len(text: str, stop_strs: list[str]) -> int:
    """Length of the longest suffix of `text` that could still grow into a stop string.

    Streaming holds it back so that a stop string is never shown and then taken away."""
    best = 0
    for stop in stop_strs:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
