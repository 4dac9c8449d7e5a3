"""The three select methods on fixed logprobs (three choices tokenized into 1, 2 and 8 tokens)."""

from __future__ import annotations

import math

import pytest

from sglang_nb.lang.choices import (
    greedy_token_selection,
    normalized_logprob,
    token_length_normalized,
    unconditional_likelihood_normalized,
)

CHOICES = ["organ", "organism", "antidisestablishmentarianism"]
CONDITIONAL = [
    [[-0.1, 1, None]],
    [[-0.1, 1, None], [-0.3, 2, None]],
    [[-0.4, 3, None], [-0.25, 4, None], [-0.1, 5, None]] + [[-0.01, t, None] for t in (6, 7, 8, 9, 2)],
]
UNCONDITIONAL = [
    [[None, 1, None]],
    [[None, 1, None], [-1.4, 2, None]],
    [[None, 3, None], [-0.25, 4, None], [-0.1, 5, None]] + [[-0.01, t, None] for t in (6, 7, 8, 9, 2)],
]


def _call(method, normalized=(-0.1, -0.2, -0.05), **extra):
    return method(choices=CHOICES, normalized_prompt_logprobs=list(normalized), input_token_logprobs=CONDITIONAL,
                  output_token_logprobs=[[], [], []], **extra)


def test_token_length_normalized_prefers_the_best_mean():
    assert _call(token_length_normalized).decision == "antidisestablishmentarianism"
    assert _call(token_length_normalized, normalized=(-0.1, -0.2, -0.1)).decision == "organ"  # ties: lowest index
    assert [normalized_logprob(c) for c in CONDITIONAL] == pytest.approx([-0.1, -0.2, -0.1])


def test_greedy_token_selection_walks_the_token_columns():
    decision = _call(greedy_token_selection)
    assert decision.decision == "organ"
    matrix = decision.meta_info["greedy_logprob_matrix"]
    assert matrix[0] == pytest.approx([-0.1] * 8)  # padded with its own mean
    assert matrix[1] == pytest.approx([-0.1, -0.3] + [-0.2] * 6)


def test_unconditional_likelihood_normalized_subtracts_the_context_free_logprobs():
    decision = _call(unconditional_likelihood_normalized, unconditional_token_logprobs=UNCONDITIONAL)
    assert decision.decision == "organism"
    assert decision.meta_info["normalized_unconditional_prompt_logprobs"] == pytest.approx([-0.1, 0.5, -0.05])
    with pytest.raises(ValueError, match="unconditional_token_logprobs"):
        _call(unconditional_likelihood_normalized)


def test_null_entries_are_skipped_not_added():
    assert normalized_logprob([[None, 1, None], [-1.0, 2, None]]) == -1.0
    assert math.isinf(normalized_logprob([[None, 1, None]]))
