"""Prefix sharing is measured, not assumed: forks and batches report the runtime's cached_tokens."""

from __future__ import annotations

import uuid

import pytest

import sglang_nb as sgl

BACKENDS = ["smollm_backend", "tiny_backend"]


def _unique_document(tokenizer, min_tokens: int) -> str:
    """A fresh (never cached) text of at least `min_tokens` tokens."""
    words = f"Document {uuid.uuid4().hex}. The river runs through the old town, past the mill and the bridge. "
    text = ""
    while len(tokenizer.encode(text)) < min_tokens:
        text += words
    return text


@sgl.function
def branches(s, document, num_branches):
    s += document + "\nQuestions about the document:\n"
    forks = s.fork(num_branches)
    for i in range(num_branches):
        forks[i] += f"Q{i}: What is item {i}?\nA{i}:" + sgl.gen("answer", max_tokens=2, temperature=0)
    forks.join()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_fork_of_8_branches_hits_the_shared_300_token_prefix(backend_name, request):
    backend = request.getfixturevalue(backend_name)
    document = _unique_document(backend.tokenizer, 300)
    state = branches.run(document=document, num_branches=8, backend=backend)
    assert state.error() is None and len(state["answer"]) == 8
    records = state.request_tree().requests()
    fork = [r for r in records if r.kind == "fork"]
    gens = [r for r in records if r.kind == "gen"]
    assert len(fork) == 1 and len(gens) == 8
    assert fork[0].prompt_tokens >= 300 and fork[0].cached_tokens < 16  # the prefix was computed once, here
    for record in gens:
        assert record.prompt_tokens >= 300
        assert record.cached_tokens >= 280, record


@sgl.function
def few_shot_row(s, shots, question):
    s += shots + "Q: " + question + "\nA:"
    s += sgl.gen("answer", max_tokens=2, stop="\n", temperature=0)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_run_batch_of_16_few_shot_rows_reuses_the_prefix(backend_name, request):
    backend = request.getfixturevalue(backend_name)
    shots = f"Quiz {uuid.uuid4().hex}\n" + "".join(
        f"Q: What is {a} plus {b}?\nA: {a + b}\n" for a, b in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)]) * 2
    rows = [{"shots": shots, "question": f"What is {i} plus {i + 1}?"} for i in range(16)]
    states = few_shot_row.run_batch(rows, backend=backend)
    assert all(s.error() is None for s in states)
    tree = states.request_tree
    planned = [n for n in tree.nodes() if n.planned_prefill]
    assert len(planned) == 1 and planned[0].prefix.startswith(shots)
    assert tree.cache_hit_ratio >= 0.8, tree.pretty()
    rows_records = [r for r in tree.requests() if r.kind == "gen"]
    assert len(rows_records) == 16 and all(r.rid for r in rows_records)


def test_request_tree_nodes_carry_spans_rids_and_token_counts(tiny_backend):
    state = branches.run(document=_unique_document(tiny_backend.tokenizer, 40), num_branches=2, backend=tiny_backend)
    tree = state.request_tree()
    shared = tree.root.children[0]
    assert shared.start == 0 and shared.end == len(shared.text)
    assert shared.requests[0].kind == "fork" and shared.rids == [shared.requests[0].rid]
    leaves = [n for n in tree.nodes() if not n.children]
    assert len(leaves) == 2
    for leaf in leaves:
        assert leaf.start == shared.end or leaf.parent is not shared
        assert leaf.prompt_tokens > 40 and leaf.cached_tokens >= 38
        assert leaf.prefix.startswith(shared.text)
    as_dict = tree.to_dict()
    assert as_dict["root"]["children"][0]["rids"] == shared.rids
