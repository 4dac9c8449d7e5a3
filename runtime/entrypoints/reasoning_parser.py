"""Reasoning separation for `/v1/chat/completions` (`--reasoning-parser`): the text inside the
model's think markers goes to `reasoning_content`, the rest to `content`.

`deepseek-r1`: the answer starts inside the reasoning (the template opens `<think>`), which ends at
`</think>`. `qwen3`: reasoning only when the answer opens with `<think>`.
"""

from __future__ import annotations

START, END = "<think>", "</think>"
KINDS = ("deepseek-r1", "qwen3")


class ReasoningParser:
    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"--reasoning-parser: unknown parser {kind!r}; choose from {', '.join(KINDS)}.")
        self.forced = kind == "deepseek-r1"

    def _body(self, text: str) -> str | None:
        """The text after the opening marker, or None when this answer has no reasoning."""
        stripped = text.lstrip()
        if stripped.startswith(START):
            return stripped[len(START):]
        if self.forced:
            return text
        if START.startswith(stripped):  # the opening marker may still be arriving
            return ""
        return None

    def split(self, text: str) -> tuple[str | None, str]:
        """(reasoning or None, content) of a finished answer."""
        body = self._body(text)
        if body is None:
            return None, text
        reasoning, sep, content = body.partition(END)
        return reasoning, content.lstrip() if sep else ""

    def split_partial(self, text: str) -> tuple[str, str]:
        """(reasoning, content) safe to stream so far: a partial end marker is held back."""
        body = self._body(text)
        if body is None:
            return "", text
        reasoning, sep, content = body.partition(END)
        if sep:
            return reasoning, content.lstrip()
        for k in range(min(len(END) - 1, len(reasoning)), 0, -1):
            if reasoning.endswith(END[:k]):
                return reasoning[:-k], ""
        return reasoning, ""
