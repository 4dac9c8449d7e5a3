"""Splitting a model's reasoning ("<think>...</think>") from its answer, per model family."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReasoningFormat:
    start: str
    end: str
    # The chat template opens the reasoning block itself, so the output starts inside it.
    starts_in_reasoning: bool = False


REASONING_FORMATS: dict[str, ReasoningFormat] = {
    "deepseek-r1": ReasoningFormat("<think>", "</think>", starts_in_reasoning=True),
    "deepseek-v3": ReasoningFormat("<think>", "</think>"),
    "qwen3": ReasoningFormat("<think>", "</think>"),
    "qwen3-thinking": ReasoningFormat("<think>", "</think>", starts_in_reasoning=True),
    "glm45": ReasoningFormat("<think>", "</think>"),
    "step3": ReasoningFormat("<think>", "</think>", starts_in_reasoning=True),
    "kimi": ReasoningFormat("◁think▷", "◁/think▷"),
}


def separate_reasoning_text(text: str, model_type: str | None) -> tuple[str, str]:
    """(reasoning, answer). Without an end marker the text is all reasoning only for formats whose
    output starts inside the reasoning block; otherwise it is all answer."""
    fmt = REASONING_FORMATS.get(model_type or "deepseek-r1")
    if fmt is None:
        raise ValueError(f"Unknown reasoning model_type {model_type!r}; known: {', '.join(sorted(REASONING_FORMATS))}")
    body = text.lstrip()
    opened = body.startswith(fmt.start)
    if opened:
        body = body[len(fmt.start):]
    if fmt.end in body:
        reasoning, answer = body.split(fmt.end, 1)
        return reasoning.strip(), answer.lstrip()
    if opened or fmt.starts_in_reasoning:
        return body.strip(), ""
    return "", text
