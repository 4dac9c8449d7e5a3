"""How `select` picks a choice from per-token logprobs.

Every method receives, per choice, the logprobs of the choice's own tokens (conditioned on the
prompt); `null` entries (no context to score from) are skipped, never added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# One logprob entry as the runtime returns it: [logprob | None, token_id, text | None].
TokenLogprob = list[Any]


@dataclass
class ChoicesDecision:
    decision: str
    meta_info: dict[str, Any] = field(default_factory=dict)


def _values(entries: list[TokenLogprob]) -> list[float]:
    return [e[0] for e in entries if e[0] is not None]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("-inf")


def _argmax(scores: list[float]) -> int:
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best]:  # ties keep the lowest index
            best = i
    return best


class ChoicesSamplingMethod:
    """Base of the three methods; `requires_unconditional_logprobs` asks for a context-free pass."""

    requires_unconditional_logprobs = False

    def __call__(self, *, choices: list[str], normalized_prompt_logprobs: list[float],
                 input_token_logprobs: list[list[TokenLogprob]], output_token_logprobs: list[list[TokenLogprob]],
                 unconditional_token_logprobs: list[list[TokenLogprob]] | None = None) -> ChoicesDecision:
        raise NotImplementedError


class TokenLengthNormalized(ChoicesSamplingMethod):
    """Pick the choice with the highest mean logprob per token."""

    def __call__(self, *, choices: list[str], normalized_prompt_logprobs: list[float],
                 input_token_logprobs: list[list[TokenLogprob]], output_token_logprobs: list[list[TokenLogprob]],
                 unconditional_token_logprobs: list[list[TokenLogprob]] | None = None) -> ChoicesDecision:
        best = _argmax(normalized_prompt_logprobs)
        return ChoicesDecision(choices[best], {
            "normalized_prompt_logprobs": normalized_prompt_logprobs,
            "input_token_logprobs": input_token_logprobs,
            "output_token_logprobs": output_token_logprobs,
        })


class GreedyTokenSelection(ChoicesSamplingMethod):
    """Walk the tokens left to right, keeping only the choices that tie the best logprob at each step.

    Shorter choices are padded with their own mean so that a short, likely choice is not beaten by a
    longer one that merely continues it.
    """

    def __call__(self, *, choices: list[str], normalized_prompt_logprobs: list[float],
                 input_token_logprobs: list[list[TokenLogprob]], output_token_logprobs: list[list[TokenLogprob]],
                 unconditional_token_logprobs: list[list[TokenLogprob]] | None = None) -> ChoicesDecision:
        rows = [_values(entries) for entries in input_token_logprobs]
        width = max((len(r) for r in rows), default=0)
        matrix = [r + [_mean(r)] * (width - len(r)) for r in rows]
        remaining = list(range(len(choices)))
        for col in range(width):
            if len(remaining) == 1:
                break
            top = max(matrix[i][col] for i in remaining)
            remaining = [i for i in remaining if matrix[i][col] == top]
        best = remaining[0]
        return ChoicesDecision(choices[best], {
            "normalized_prompt_logprobs": normalized_prompt_logprobs,
            "input_token_logprobs": input_token_logprobs,
            "output_token_logprobs": output_token_logprobs,
            "greedy_logprob_matrix": matrix,
        })


class UnconditionalLikelihoodNormalized(ChoicesSamplingMethod):
    """Pick the choice whose tokens gain the most likelihood from the prompt (conditional − unconditional)."""

    requires_unconditional_logprobs = True

    def __call__(self, *, choices: list[str], normalized_prompt_logprobs: list[float],
                 input_token_logprobs: list[list[TokenLogprob]], output_token_logprobs: list[list[TokenLogprob]],
                 unconditional_token_logprobs: list[list[TokenLogprob]] | None = None) -> ChoicesDecision:
        if unconditional_token_logprobs is None:
            raise ValueError("unconditional_likelihood_normalized needs unconditional_token_logprobs.")
        scores = []
        for cond, uncond in zip(input_token_logprobs, unconditional_token_logprobs):
            # The first unconditional token has no context: its logprob is null and counts as 0.
            u = [e[0] if e[0] is not None else 0.0 for e in uncond]
            c = [e[0] for e in cond]
            diffs = [ci - ui for ci, ui in zip(c, u) if ci is not None]
            scores.append(_mean(diffs))
        best = _argmax(scores)
        return ChoicesDecision(choices[best], {
            "normalized_prompt_logprobs": normalized_prompt_logprobs,
            "input_token_logprobs": input_token_logprobs,
            "output_token_logprobs": output_token_logprobs,
            "unconditional_token_logprobs": unconditional_token_logprobs,
            "normalized_unconditional_prompt_logprobs": scores,
        })


token_length_normalized = TokenLengthNormalized()
greedy_token_selection = GreedyTokenSelection()
unconditional_likelihood_normalized = UnconditionalLikelihoodNormalized()


def normalized_logprob(entries: list[TokenLogprob]) -> float:
    """Mean of the non-null logprobs of one choice's tokens."""
    return _mean(_values(entries))
