"""Tool-call parsing, chat templates and request validation, without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sglang_nb.runtime.entrypoints.chat_templates import BUILTIN_TEMPLATES, ChatTemplate
from sglang_nb.runtime.entrypoints.openai_protocol import parse_chat, parse_completion
from sglang_nb.runtime.entrypoints.protocol import ApiError, parse_generate
from sglang_nb.runtime.entrypoints.tool_parser import ToolCallParser

NAMES = ["get_weather", "add"]


@pytest.mark.parametrize(("fmt", "text", "content", "calls"), [
    ("hermes", 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "Sure.\n", [("get_weather", {"city": "Paris"})]),
    ("auto", '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call><tool_call>{"name": "add", '
             '"arguments": {"a": 2}}</tool_call>', "", [("add", {"a": 1}), ("add", {"a": 2})]),
    ("mistral", 'x [TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 2}}]', "x ", [("add", {"a": 1, "b": 2})]),
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Rome"}}', "",
     [("get_weather", {"city": "Rome"})]),
    ("auto", '{"name": "get_weather", "parameters": {"city": "Oslo"}}', "", [("get_weather", {"city": "Oslo"})]),
    ("pythonic", '[get_weather(city="Lima"), add(a=1, b=2)]', "",
     [("get_weather", {"city": "Lima"}), ("add", {"a": 1, "b": 2})]),
    ("auto", "Just text, no calls.", "Just text, no calls.", []),
    ("auto", '<tool_call>{"name": "unknown_tool", "arguments": {}}</tool_call>',
     '<tool_call>{"name": "unknown_tool", "arguments": {}}</tool_call>', []),
    ("hermes", "<tool_call>{not json</tool_call>", "<tool_call>{not json</tool_call>", []),
])
def test_tool_call_formats(fmt: str, text: str, content: str, calls: list[tuple[str, dict[str, Any]]]) -> None:
    got_content, got = ToolCallParser(fmt, NAMES).parse(text)
    assert got_content == content
    assert [(c.name, json.loads(c.arguments)) for c in got] == calls
    assert all(c.id.startswith("call_") for c in got)


def test_streaming_holds_back_possible_markers() -> None:
    p = ToolCallParser(None, NAMES)
    assert p.safe_content_len("Hello <tool") == len("Hello ")
    assert p.safe_content_len("Hello there") == len("Hello there")
    assert p.safe_content_len('Hi <tool_call>{"name"') == len("Hi ")
    assert p.safe_content_len('{"name": "add"') == 0
    with pytest.raises(ValueError, match="tool-call-parser"):
        ToolCallParser("nonsense", NAMES)


class _Tok:
    """A minimal tokenizer facade: apply_chat_template through transformers' own renderer."""

    chat_template = None
    bos_token = "<s>"
    eos_token = "</s>"

    def apply_chat_template(self, messages: list[dict[str, Any]], chat_template: str | None = None, **kw: Any) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(conversations=[messages], chat_template=chat_template,
                                            tools=kw.get("tools"), add_generation_prompt=kw["add_generation_prompt"],
                                            continue_final_message=kw["continue_final_message"],
                                            bos_token=self.bos_token, eos_token=self.eos_token)
        return str(rendered[0])


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_builtin_templates_render(name: str) -> None:
    t = ChatTemplate.resolve(_Tok(), name)
    text = t.render(MESSAGES)
    assert "Hi" in text and "Hello!" in text and "Bye" in text


def test_chatml_exact_and_template_files(tmp_path: Path) -> None:
    chatml = ChatTemplate.resolve(_Tok(), "chatml").render(MESSAGES[:2])
    assert chatml == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    jinja = tmp_path / "t.jinja"
    jinja.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    assert ChatTemplate.resolve(_Tok(), str(jinja)).render(MESSAGES[1:2]) == "[user] Hi\n"
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps({"name": "mine", "system": "<|im_start|>system", "user": "<|im_start|>user",
                                "assistant": "<|im_start|>assistant", "sep": "<|im_end|>", "stop_str": ["<|im_end|>"]}))
    t = ChatTemplate.resolve(_Tok(), str(conv))
    assert t.render(MESSAGES[:2]) == chatml and t.stop == ["<|im_end|>"]
    with pytest.raises(ValueError, match="--chat-template"):
        ChatTemplate.resolve(_Tok(), "no-such-template")


def test_tools_are_described_for_templates_without_tool_support() -> None:
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    text = ChatTemplate.resolve(_Tok(), "chatml").render(MESSAGES[1:2], tools=tools)
    assert "<tool_call>" in text and '"name": "add"' in text


def test_protocol_maps_openai_fields() -> None:
    req = parse_completion({"prompt": ["a", [1, 2]], "max_tokens": 3, "seed": 5, "min_tokens": 1, "n": 2,
                            "stop": "x"}, "m")
    assert req.prompts == ["a", [1, 2]] and req.max_tokens == 3
    assert req.sampling["sampling_seed"] == 5 and req.sampling["min_new_tokens"] == 1 and req.sampling["n"] == 2
    chat = parse_chat({"messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": "y"}],
                       "response_format": {"type": "json_object"}}, "m")
    assert chat.messages[0]["role"] == "system" and chat.sampling["temperature"] == 0.7
    assert json.loads(chat.sampling["json_schema"]) == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat = parse_chat({"messages": [{"role": "user", "content": "y"}],
                       "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}, "m")
    assert json.loads(chat.sampling["json_schema"]) == schema
    with pytest.raises(ApiError) as e:
        parse_chat({"messages": [{"role": "user", "content": "y"}], "tool_choice": {"type": "function",
                    "function": {"name": "nope"}}, "tools": [{"type": "function", "function": {"name": "a"}}]}, "m")
    assert e.value.param == "tool_choice"


def test_generate_body_validation_names_the_field() -> None:
    obj = parse_generate({"text": ["a", "b"], "sampling_params": {"max_new_tokens": 2}, "priority": 3})
    assert obj.text == ["a", "b"]
    with pytest.raises(ApiError) as e:
        parse_generate({"text": "a", "top_logprobs_num": "2"})
    assert e.value.param == "top_logprobs_num"


def _cumulative(texts: list[str]) -> list[dict[str, Any]]:
    outs = []
    for k, text in enumerate(texts):
        done = k == len(texts) - 1
        outs.append({"text": text, "meta_info": {"finish_reason": {"type": "stop", "matched": 2} if done else None,
                                                 "prompt_tokens": 3, "completion_tokens": k + 1}})
    return outs


@pytest.mark.parametrize("stream_reasoning", [True, False])
def test_reasoning_is_separated_in_streams_and_whole_answers(stream_reasoning: bool) -> None:
    from sglang_nb.runtime.entrypoints.openai_format import ChatStream, chat_choice
    from sglang_nb.runtime.entrypoints.reasoning_parser import ReasoningParser

    texts = ["<think>", "<think>Let me", "<think>Let me think</th", "<think>Let me think</think>\n\nPar",
             "<think>Let me think</think>\n\nParis."]
    reasoner = ReasoningParser("qwen3")
    whole = chat_choice(0, _cumulative(texts)[-1], None, 0, False, reasoner)["message"]
    assert whole["reasoning_content"] == "Let me think" and whole["content"] == "Paris."
    stream = ChatStream("id", "m", 1, lambda: None, False, 0, False, reasoner, stream_reasoning)
    chunks = [c for out in _cumulative(texts) for c in stream.chunks(out)]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Let me think"
    assert "".join(d.get("content") or "" for d in deltas) == "Paris."
    assert sum("reasoning_content" in d for d in deltas) == (2 if stream_reasoning else 1)
    plain = ReasoningParser("qwen3").split("No thinking here.")
    assert plain == (None, "No thinking here.")
    assert ReasoningParser("deepseek-r1").split("Hmm</think>Yes") == ("Hmm", "Yes")
