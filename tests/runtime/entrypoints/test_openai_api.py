"""The OpenAI-compatible API through the official `openai` SDK against a real server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from http_helpers import chat_prompt

QUESTION = chat_prompt("What is the capital of France?")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_models_list(oai: Any) -> None:
    models = oai.models.list().data
    assert len(models) == 1 and models[0].id == "SmolLM2-135M-Instruct"
    assert models[0].object == "model"
    assert oai.models.retrieve(models[0].id).id == models[0].id
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")


def test_completion_basic_usage_and_default_max_tokens(oai: Any) -> None:
    r = oai.completions.create(model="m", prompt="The capital of France is", temperature=0, max_tokens=5)
    assert r.object == "text_completion" and r.model == "m" and r.id.startswith("cmpl-")
    c = r.choices[0]
    assert c.finish_reason in ("length", "stop") and c.text
    assert r.usage.prompt_tokens == 5 and r.usage.completion_tokens <= 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    default = oai.completions.create(model="m", prompt="Count: 1, 2, 3,", temperature=0,
                                     extra_body={"ignore_eos": True})
    assert default.usage.completion_tokens == 16  # OpenAI's max_tokens default


def test_completion_echo_logprobs_and_token_prompts(oai: Any, http: httpx.Client) -> None:
    r = oai.completions.create(model="m", prompt="Hello world", max_tokens=3, temperature=0, echo=True, logprobs=2)
    c = r.choices[0]
    assert c.text.startswith("Hello world")
    lp = c.logprobs
    assert lp.tokens[0] == "Hello" and lp.token_logprobs[0] is None
    assert len(lp.tokens) == r.usage.prompt_tokens + r.usage.completion_tokens
    assert lp.text_offset[:2] == [0, len("Hello")]
    assert all(t is None or len(t) <= 2 for t in lp.top_logprobs)
    ids = http.post("/tokenize", json={"prompt": "Hello world"}).json()["tokens"]
    by_ids = oai.completions.create(model="m", prompt=ids, max_tokens=3, temperature=0)
    assert by_ids.choices[0].text == c.text[len("Hello world"):]
    many = oai.completions.create(model="m", prompt=["One", "Two"], max_tokens=2, temperature=0, n=2)
    assert [ch.index for ch in many.choices] == [0, 1, 2, 3]


def test_completion_stream_matches_non_stream(oai: Any) -> None:
    args = dict(model="m", prompt="Once upon a time", max_tokens=8, temperature=0)
    full = oai.completions.create(**args).choices[0].text
    chunks = list(oai.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == full
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] in ("length", "stop")
    with_lp = [ch.choices[0] for ch in oai.completions.create(**args, stream=True, logprobs=1, echo=True)]
    offsets = [o for c in with_lp if c.logprobs for o in c.logprobs.text_offset]
    tokens = [t for c in with_lp if c.logprobs for t in c.logprobs.tokens]
    assert offsets == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    assert "".join(c.text for c in with_lp) == args["prompt"] + full


def test_completion_suffix_is_rejected(oai: Any) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.completions.create(model="m", prompt="def f():", suffix="return 1", max_tokens=2)
    assert "suffix" in str(e.value)


def test_chat_basic(oai: Any) -> None:
    r = oai.chat.completions.create(model="m", messages=QUESTION, temperature=0, max_tokens=12)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    msg = r.choices[0].message
    assert msg.role == "assistant" and "Paris" in msg.content
    assert r.usage.prompt_tokens > 20 and r.usage.completion_tokens <= 12
    assert r.usage.prompt_tokens_details is not None  # --enable-cache-report


def test_chat_roles_and_content_parts(oai: Any) -> None:
    messages = [{"role": "system", "content": "You answer in one word."},
                {"role": "user", "content": [{"type": "text", "text": "What is the capital"},
                                             {"type": "text", "text": "of Italy?"}]},
                {"role": "assistant", "content": "Rome."},
                {"role": "user", "content": "And of France?"}]
    r = oai.chat.completions.create(model="m", messages=messages, temperature=0, max_completion_tokens=8)
    assert r.choices[0].message.content


def test_chat_stream_matches_non_stream_and_reports_usage(oai: Any) -> None:
    args: dict[str, Any] = dict(model="m", messages=QUESTION, temperature=0, max_tokens=12)
    full = oai.chat.completions.create(**args).choices[0].message.content
    chunks = list(oai.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == ["stop"] or finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_chat_n2_logprobs_top_logprobs(oai: Any) -> None:
    r = oai.chat.completions.create(model="m", messages=QUESTION, n=2, max_tokens=4, temperature=0.8, seed=7,
                                    logprobs=True, top_logprobs=3)
    assert [c.index for c in r.choices] == [0, 1]
    for c in r.choices:
        content = c.logprobs.content
        assert len(content) >= 1
        for item in content:
            assert item.logprob <= 0 and len(item.top_logprobs) == 3
            assert item.bytes == list(item.token.encode())
    assert r.usage.completion_tokens == sum(len(c.logprobs.content) for c in r.choices)
    one = oai.chat.completions.create(model="m", messages=QUESTION, max_tokens=1)
    assert r.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counts once, not per sample


def test_chat_stop_string(oai: Any) -> None:
    r = oai.chat.completions.create(model="m", messages=chat_prompt("Count from 1 to 10, comma separated."),
                                    temperature=0, max_tokens=40, stop=["5"])
    c = r.choices[0]
    assert c.finish_reason == "stop" and "5" not in c.message.content
    assert c.model_extra.get("matched_stop") == "5"


def test_chat_seed_is_reproducible(oai: Any) -> None:
    args: dict[str, Any] = dict(model="m", messages=chat_prompt("Tell me a word."), temperature=1.0, max_tokens=6)
    a = oai.chat.completions.create(**args, seed=1234).choices[0].message.content
    b = oai.chat.completions.create(**args, seed=1234).choices[0].message.content
    assert a == b


def _few_shot_tool_messages() -> list[dict[str, Any]]:
    return [{"role": "user", "content": "What's the weather in London?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"London\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
            {"role": "assistant", "content": "It is rainy in London."},
            {"role": "user", "content": "What's the weather in Paris?"}]


def test_chat_tool_calls(oai: Any) -> None:
    r = oai.chat.completions.create(model="m", messages=_few_shot_tool_messages(), tools=[WEATHER_TOOL],
                                    temperature=0, max_tokens=30)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(oai.chat.completions.create(model="m", messages=_few_shot_tool_messages(), tools=[WEATHER_TOOL],
                                              temperature=0, max_tokens=30, stream=True))
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    none = oai.chat.completions.create(model="m", messages=_few_shot_tool_messages(), tools=[WEATHER_TOOL],
                                       tool_choice="none", temperature=0, max_tokens=4)
    assert none.choices[0].message.tool_calls is None


def test_response_format_goes_to_the_grammar_backend(oai: Any) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    try:
        r = oai.chat.completions.create(
            model="m", messages=chat_prompt("Give me a city as JSON."), temperature=0, max_tokens=32,
            response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}})
    except openai.BadRequestError as e:  # no grammar backend on this server: a clean 400
        assert "onstrained decoding" in str(e) or "grammar" in str(e).lower()
        return
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_embeddings_rejected_for_generation_model(oai: Any) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model="m", input="hello")
    assert "embedding model" in str(e.value)
