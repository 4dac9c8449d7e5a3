"""The OpenAI backend against this project's OpenAI-compatible server (/v1) over the tiny model."""

from __future__ import annotations

import json

import pytest

import sglang_nb as sgl


@pytest.fixture(scope="module")
def chat(tiny_runtime):
    name = tiny_runtime.endpoint.get_model_info()["served_model_name"]
    return sgl.OpenAI(name, base_url=tiny_runtime.url + "/v1", api_key=tiny_runtime.api_key, regex_support=True)


@pytest.fixture(scope="module")
def completion(tiny_runtime):
    name = tiny_runtime.endpoint.get_model_info()["served_model_name"]
    return sgl.OpenAI(name, base_url=tiny_runtime.url + "/v1", api_key=tiny_runtime.api_key, is_chat_model=False,
                      regex_support=True)


@sgl.function
def chat_turns(s):
    s += sgl.system("Be brief.")
    s += sgl.user("Say hi.")
    s += sgl.assistant(sgl.gen("hello", max_tokens=4, temperature=0))
    s += sgl.user("Pick one.")
    s += sgl.assistant(sgl.select("pick", ["yes", "no", "maybe"]))


def test_chat_model_gen_stream_and_select(chat):
    state = chat_turns.run(backend=chat)
    assert state.error() is None
    assert state["pick"] in ("yes", "no", "maybe")
    assert [m["role"] for m in state.messages()] == ["system", "user", "assistant", "user", "assistant"]
    assert state.get_meta_info("hello")["prompt_tokens"] > 0
    streamed = chat_turns.run(backend=chat, stream=True)
    chunks = list(streamed.text_iter("hello"))
    assert "".join(chunks) == streamed["hello"] and chat.token_usage.prompt_tokens > 0


@sgl.function
def completion_prog(s, method):
    s += "Q: Is water wet?\nA:" + sgl.select("b", [" yes", " no"], choices_method=method)
    s += "\nIP: " + sgl.gen("ip", regex=r"[0-9]{1,3}\.[0-9]{1,3}", max_tokens=8, temperature=0)
    s += "\nJSON: " + sgl.gen("obj", json_schema=json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}},
                                                            "required": ["ok"]}), max_tokens=10, temperature=0)


@pytest.mark.parametrize("method", [sgl.token_length_normalized, sgl.greedy_token_selection,
                                    sgl.unconditional_likelihood_normalized])
def test_completion_model_select_by_echo_logprobs_and_constraints(completion, method):
    state = completion_prog.run(method=method, backend=completion)
    assert state.error() is None, state.error()
    assert state["b"] in (" yes", " no")
    scores = state.get_meta_info("b")["normalized_prompt_logprobs"]
    assert len(scores) == 2 and all(x < 0 for x in scores)
    assert "." in state["ip"]
    assert json.loads(state["obj"])["ok"] in (True, False)


@sgl.function
def no_assistant_turn(s):
    s += "plain text " + sgl.gen("x", max_tokens=2)


def test_chat_gen_outside_an_assistant_turn_is_a_clear_error(chat):
    error = no_assistant_turn.run(backend=chat).error()
    assert isinstance(error, ValueError) and "must start an assistant turn" in str(error)
