"""Interpreter semantics on the tiny model: failures never hang, async and Jupyter-style callers,
streaming metadata, batches (positional, generator, control flow), scopes, joins, reasoning."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

import sglang_nb as sgl
from sglang_nb.lang.interpreter import ProgramError


@sgl.function
def bad_schema(s):
    s += "JSON: " + sgl.gen("x", json_schema='{"type": "nope"}', max_tokens=4)
    s += "after" + sgl.gen("y", max_tokens=2)


def test_a_failed_request_reports_and_never_hangs(tiny_backend):
    start = time.monotonic()
    state = bad_schema.run(backend=tiny_backend)
    assert isinstance(state.error(), ValueError) and "Invalid json_schema" in str(state.error())
    with pytest.raises(ProgramError, match="Invalid json_schema"):
        state["y"]
    assert "after" not in state.text()  # later expressions were skipped
    state += "more" + sgl.gen("z", max_tokens=2)  # appending to a finished state does not hang either
    with pytest.raises(ProgramError):
        state["z"]
    assert time.monotonic() - start < 60


@sgl.function
def short(s, topic):
    s += "Topic: " + topic + "\n" + sgl.gen("x", max_tokens=3, temperature=0)


def test_sync_run_inside_a_running_event_loop_like_a_notebook_cell(tiny_backend):
    async def cell():
        return short.run(topic="a", backend=tiny_backend)["x"]

    assert isinstance(asyncio.run(cell()), str)


def test_async_callers(tiny_backend):
    async def main():
        state = await short.run_async(topic="b", backend=tiny_backend)
        streamed = short.run(topic="c", stream=True, backend=tiny_backend)
        chunks = [c async for c in streamed]  # `async for` over a state streams its text
        return state, streamed, chunks

    state, streamed, chunks = asyncio.run(main())
    assert state["x"] and "".join(chunks) == streamed.text()


@sgl.function
def logprob_stream(s):
    s += "Count:" + sgl.gen("n", max_tokens=6, temperature=0, ignore_eos=True, return_logprob=True)


def test_stream_with_meta_data_has_incremental_logprobs(tiny_backend):
    async def main():
        state = logprob_stream.run(stream=True, backend=tiny_backend)
        return [c async for c in state.text_async_iter("n", return_meta_data=True)]

    chunks = asyncio.run(main())
    assert chunks and all(text for text, _ in chunks)
    total = 0
    for _, meta in chunks:
        new = meta["completion_tokens"] - total
        assert len(meta["output_token_logprobs"]) == new
        total = meta["completion_tokens"]
    assert total == 6


@sgl.function
def control_flow(s, question):
    s += question + sgl.select("kind", [" yes", " no"])
    if s["kind"] == " yes":
        s += " because" + sgl.gen("why", max_tokens=2)
    else:
        s += " not" + sgl.gen("why", max_tokens=2)


def test_run_batch_rows_forms_and_control_flow(tiny_backend):
    states = control_flow.run_batch([("Q1?",), ["Q2?"], ("Q3?",)], backend=tiny_backend, num_threads=2)
    assert [s.error() for s in states] == [None] * 3 and all(s["why"] is not None for s in states)
    gen = short.run_batch([{"topic": t} for t in "xyz"], backend=tiny_backend, generator_style=True)
    assert [s.text().split("\n")[0] for s in gen] == ["Topic: x", "Topic: y", "Topic: z"]
    assert short.run_batch([], backend=tiny_backend) == []
    with pytest.raises(ValueError, match="does not match the signature"):
        short.run_batch([("a", "b", "c")], backend=tiny_backend)


def test_program_bodies_do_not_get_a_thread_each(tiny_backend):
    before = threading.active_count()
    states = short.run_batch([{"topic": str(i)} for i in range(24)], backend=tiny_backend)
    assert len(states) == 24 and threading.active_count() <= before + 1


@sgl.function
def scopes(s):
    with s.var_scope("block"):
        s += "A" + sgl.gen("inner", max_tokens=2, temperature=0)
    with s.copy() as child:
        child += "child" + sgl.gen("c", max_tokens=1)
    forks = s.fork(2)
    forks += lambda i: f" part{i}"
    forks.join(mode="concate_and_append")
    s["manual"] = 42
    s += sgl.gen("pair", max_tokens=2, n=2)


def test_scopes_copy_concat_join_set_var_and_n(tiny_backend):
    state = scopes.run(backend=tiny_backend)
    assert state.error() is None
    assert state["block"] == "A" + state["inner"]
    assert isinstance(state["c"], list) and len(state["c"]) == 1  # copy() gathers into one-element lists
    assert " part0 part1" in state.text()
    assert state["manual"] == 42
    assert isinstance(state["pair"], list) and len(state["pair"]) == 2
    assert state.text().endswith(state["pair"][0])


@sgl.function
def thinking(s):
    s += sgl.user("Think.")
    s += sgl.assistant(sgl.separate_reasoning(
        sgl.gen("answer", regex=r"<think>[a-z]{3}</think>[a-z]{2}", max_tokens=24, temperature=0), model_type="qwen3"))


def test_separate_reasoning_splits_the_gen_and_the_text(tiny_backend):
    state = thinking.run(backend=tiny_backend)
    assert state.error() is None
    assert len(state["answer_reasoning_content"]) == 3 and len(state["answer"]) == 2
    assert "<think>" not in state.text() and state.messages()[-1]["content"] == state["answer"]


@sgl.function
def nested(s):
    s += sgl.user_begin() + sgl.assistant_begin()


def test_nested_roles_and_template_stops(tiny_backend):
    assert "Nested roles" in str(nested.run(backend=tiny_backend).error())
    state = short.run(topic="t", backend=tiny_backend, stop=["\n"])
    params = state.stream_executor.resolve_params(sgl.gen("x", stop=None).sampling_params)
    assert params.stop == ["\n", "<|im_end|>"]


@sgl.function
def json_gen(s):
    s += "Object: " + sgl.gen("obj", json_schema={"type": "object", "properties": {"ok": {"type": "boolean"}},
                                                  "required": ["ok"]}, max_tokens=12, temperature=0)


def test_json_schema_as_dict_and_the_state_repr(tiny_backend):
    state = json_gen.run(backend=tiny_backend)
    assert json.loads(state["obj"])["ok"] in (True, False)
    assert repr(state).startswith("ProgramState(Object: {")


@sgl.function
def fork_after_join(s):
    s += "Root."
    forks = s.fork(2)
    forks.join()
    s.sync()  # the join has run: the forks have ended
    again = forks[0].fork(2)
    again += lambda i: sgl.gen("late", max_tokens=1)
    again.join()


def test_forking_an_ended_state_fails_instead_of_hanging(tiny_backend):
    state = fork_after_join.run(backend=tiny_backend)
    assert state.error() is None  # the root itself is fine
    assert "already ended" in str(state.stream_executor.children[0].error_)


@sgl.function
def long_gen(s):
    s += "Story:" + sgl.gen("story", max_tokens=3000, ignore_eos=True, temperature=1.0)


def test_interrupt_aborts_the_program_requests(tiny_backend, tiny_text_engine):
    import os
    import signal

    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGINT))  # what Jupyter's Interrupt sends
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        long_gen.run(backend=tiny_backend)
    assert time.monotonic() - start < 10
    deadline = time.monotonic() + 20
    while tiny_text_engine.get_internal_state()["num_running_reqs"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tiny_text_engine.get_internal_state()["num_running_reqs"] == 0
