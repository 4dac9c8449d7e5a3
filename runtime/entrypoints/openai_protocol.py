"""OpenAI request bodies (`/v1/completions`, `/v1/chat/completions`) validated into plain
dataclasses with native sampling parameters. Unknown fields are ignored, as OpenAI-compatible
servers do; every known field is type- and range-checked and errors name the OpenAI field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .protocol import (
    ApiError,
    get_bool,
    get_dict,
    get_int,
    get_int_list,
    get_number,
    get_stop,
    get_str,
    is_token_ids,
)

MAX_N = 128
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
CHAT_DEFAULT_TEMPERATURE = 0.7  # SGLang's OpenAI chat default (v0.4 wire format)


@dataclass
class OpenAIRequest:
    model: str
    n: int
    stream: bool
    include_usage: bool
    sampling: dict[str, Any]
    rid: str | None
    max_tokens: int | None


@dataclass
class CompletionRequest(OpenAIRequest):
    prompts: list[str | list[int]] = field(default_factory=list)
    echo: bool = False
    logprobs: int | None = None


@dataclass
class ChatRequest(OpenAIRequest):
    messages: list[dict[str, Any]] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] = "none"
    continue_final_message: bool = False
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    separate_reasoning: bool = True
    stream_reasoning: bool = True


def _common(body: dict[str, Any], default_model: str, temperature: float) -> dict[str, Any]:
    """Fields shared by completions and chat, as OpenAIRequest keyword arguments."""
    model = get_str(body, "model", default_model)
    n = get_int(body, "n", 1, lo=1, hi=MAX_N)
    get_int(body, "best_of", None, lo=1)  # accepted, not used
    get_str(body, "user")
    stream = get_bool(body, "stream", False)
    options = get_dict(body, "stream_options")
    if options is not None and not stream:
        raise ApiError("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                       param="stream_options")
    include_usage = bool(get_bool(options or {}, "include_usage", False))
    sp: dict[str, Any] = {
        "temperature": get_number(body, "temperature", temperature, lo=0.0),
        "top_p": get_number(body, "top_p", 1.0),
        "top_k": get_int(body, "top_k", -1),
        "min_p": get_number(body, "min_p", 0.0, lo=0.0, hi=1.0),
        "frequency_penalty": get_number(body, "frequency_penalty", 0.0, lo=-2.0, hi=2.0),
        "presence_penalty": get_number(body, "presence_penalty", 0.0, lo=-2.0, hi=2.0),
        "repetition_penalty": get_number(body, "repetition_penalty", 1.0),
        "min_new_tokens": get_int(body, "min_tokens", 0, lo=0),
        "stop": get_stop(body),
        "stop_token_ids": get_int_list(body, "stop_token_ids"),
        "ignore_eos": get_bool(body, "ignore_eos", False),
        "skip_special_tokens": get_bool(body, "skip_special_tokens", True),
        "no_stop_trim": get_bool(body, "no_stop_trim", False),
        "sampling_seed": get_int(body, "seed"),
        "regex": get_str(body, "regex"),
        "ebnf": get_str(body, "ebnf"),
        "n": n,
    }
    if not 0.0 < sp["top_p"] <= 1.0:
        raise ApiError(f"top_p must be in (0, 1], got {sp['top_p']}.", param="top_p")
    if sp["top_k"] == 0 or sp["top_k"] < -1:
        raise ApiError(f"top_k must be -1 (disable), or at least 1, got {sp['top_k']}.", param="top_k")
    if not 0.0 < sp["repetition_penalty"] <= 2.0:
        raise ApiError(f"repetition_penalty must be in (0, 2], got {sp['repetition_penalty']}.",
                       param="repetition_penalty")
    schema = body.get("json_schema")
    if schema is not None:
        if not isinstance(schema, (str, dict)):
            raise ApiError("json_schema must be a JSON string or an object.", param="json_schema")
        sp["json_schema"] = schema if isinstance(schema, str) else json.dumps(schema)
    bias = get_dict(body, "logit_bias")
    if bias:
        for key, value in bias.items():
            if not str(key).lstrip("-").isdigit():
                raise ApiError(f"logit_bias keys must be token ids, got {key!r}.", param="logit_bias")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100 <= value <= 100:
                raise ApiError(f"logit_bias values must be numbers in [-100, 100], got {value!r}.",
                               param="logit_bias")
        sp["logit_bias"] = {str(k): float(v) for k, v in bias.items()}
    _response_format(body, sp)
    if sum(sp.get(k) is not None for k in ("regex", "ebnf", "json_schema")) > 1:
        raise ApiError("Only one of regex, json_schema, or ebnf can be set.", param="response_format")
    if body.get("lora_path") is not None:
        raise ApiError("lora_path: LoRA adapters are not supported by this server.", param="lora_path")
    rid = get_str(body, "rid")
    return {"model": model, "n": n, "stream": stream, "include_usage": include_usage,
            "sampling": {k: v for k, v in sp.items() if v is not None}, "rid": rid}


def _response_format(body: dict[str, Any], sp: dict[str, Any]) -> None:
    """`response_format` -> a grammar constraint in the sampling parameters."""
    fmt = get_dict(body, "response_format")
    if fmt is None:
        return
    kind = fmt.get("type")
    if kind == "text":
        return
    if kind == "json_object":
        sp["json_schema"] = json.dumps({"type": "object"})
    elif kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise ApiError("response_format.json_schema must be an object with a 'schema'.",
                           param="response_format.json_schema")
        schema = spec.get("schema", spec.get("schema_"))
        if schema is None:
            schema = {"type": "object"}
        if not isinstance(schema, dict):
            raise ApiError("response_format.json_schema.schema must be an object.",
                           param="response_format.json_schema.schema")
        sp["json_schema"] = json.dumps(schema)
    elif kind == "structural_tag":
        sp["structural_tag"] = json.dumps(fmt)
    else:
        raise ApiError(f"response_format.type must be one of text, json_object, json_schema, structural_tag; "
                       f"got {kind!r}.", param="response_format.type")


# ---- /v1/completions -------------------------------------------------------------------------

def parse_completion(body: dict[str, Any], default_model: str) -> CompletionRequest:
    common = _common(body, default_model, temperature=1.0)
    if body.get("suffix") not in (None, ""):
        raise ApiError("suffix is not supported by this server.", param="suffix")
    prompt = body.get("prompt")
    if prompt is None:
        raise ApiError("prompt is required.", param="prompt")
    if isinstance(prompt, str):
        prompts: list[str | list[int]] = [prompt]
    elif is_token_ids(prompt):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) or is_token_ids(p) for p in prompt):
        prompts = list(prompt)
    else:
        raise ApiError("prompt must be a string, an array of strings, an array of token ids, or an array of "
                       "arrays of token ids (and not empty).", param="prompt")
    if any(p == "" for p in prompts):
        raise ApiError("prompt must not be empty.", param="prompt")
    max_tokens = get_int(body, "max_tokens", 16, lo=0)
    return CompletionRequest(**common, max_tokens=max_tokens, prompts=prompts,
                             echo=get_bool(body, "echo", False), logprobs=get_int(body, "logprobs", None, lo=0))


# ---- /v1/chat/completions --------------------------------------------------------------------

def parse_chat(body: dict[str, Any], default_model: str, multimodal: bool = False) -> ChatRequest:
    common = _common(body, default_model, temperature=CHAT_DEFAULT_TEMPERATURE)
    max_tokens = get_int(body, "max_completion_tokens", None, lo=1)
    if max_tokens is None:
        max_tokens = get_int(body, "max_tokens", None, lo=1)
    logprobs = get_bool(body, "logprobs", False)
    top = get_int(body, "top_logprobs", 0, lo=0, hi=20)
    if top and not logprobs:
        raise ApiError("top_logprobs requires logprobs to be true.", param="top_logprobs")
    tools = _tools(body)
    choice = _tool_choice(body, tools)
    return ChatRequest(**common, max_tokens=max_tokens, messages=_messages(body, multimodal), logprobs=logprobs,
                       top_logprobs=top, tools=tools if choice != "none" else None, tool_choice=choice,
                       continue_final_message=get_bool(body, "continue_final_message", False),
                       chat_template_kwargs=get_dict(body, "chat_template_kwargs", {}),
                       separate_reasoning=get_bool(body, "separate_reasoning", True),
                       stream_reasoning=get_bool(body, "stream_reasoning", True))


def _messages(body: dict[str, Any], multimodal: bool) -> list[dict[str, Any]]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError("messages must be a non-empty array of message objects.", param="messages")
    out = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise ApiError(f"{where} must be an object.", param=where)
        role = msg.get("role")
        if not isinstance(role, str) or role.lower() not in CHAT_ROLES:
            raise ApiError(f"{where}.role must be one of {', '.join(CHAT_ROLES)}; got {role!r}.", param=f"{where}.role")
        role = role.lower()
        item: dict[str, Any] = {"role": "system" if role == "developer" else role,
                                "content": _content(msg.get("content"), where, multimodal)}
        if role == "assistant" and msg.get("tool_calls") is not None:
            item["tool_calls"] = _assistant_tool_calls(msg["tool_calls"], where)
        elif item["content"] is None and role != "assistant":
            raise ApiError(f"{where}.content is required for role {role}.", param=f"{where}.content")
        if item["content"] is None:
            item["content"] = ""
        for key in ("name", "tool_call_id"):
            if msg.get(key) is not None:
                if not isinstance(msg[key], str):
                    raise ApiError(f"{where}.{key} must be a string.", param=f"{where}.{key}")
                item[key] = msg[key]
        out.append(item)
    return out


def _content(content: Any, where: str, multimodal: bool) -> str | None:
    """Message content as one string (text parts are joined by newlines)."""
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiError(f"{where}.content must be a string, null, or an array of content parts.",
                       param=f"{where}.content")
    texts = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ApiError(f"{at} must be an object with a 'type'.", param=at)
        kind = part["type"]
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise ApiError(f"{at}.text must be a string.", param=f"{at}.text")
            texts.append(part["text"])
        elif kind in ("image_url", "input_image"):
            if not multimodal:
                raise ApiError(f"{at}: the served model does not accept images.", param=at)
            raise ApiError(f"{at}: image input is not supported by this server yet.", param=at)
        else:
            raise ApiError(f"{at}.type {kind!r} is not supported (use 'text').", param=f"{at}.type")
    return "\n".join(texts)


def _assistant_tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise ApiError(f"{where}.tool_calls must be an array.", param=f"{where}.tool_calls")
    out = []
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ApiError(f"{where}.tool_calls[{k}].function.name is required.", param=f"{where}.tool_calls")
        args: Any = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                pass  # templates print it as given
        out.append({"id": call.get("id"), "type": "function", "function": {"name": fn["name"], "arguments": args}})
    return out


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise ApiError("tools must be an array of tool objects.", param="tools")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict) \
                or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ApiError(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}.",
                           param=f"tools[{i}]")
        if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
            raise ApiError(f"tools[{i}].function.parameters must be a JSON schema object.",
                           param=f"tools[{i}].function.parameters")
    return tools or None


def _tool_choice(body: dict[str, Any], tools: list[dict[str, Any]] | None) -> str | dict[str, Any]:
    choice = body.get("tool_choice")
    if choice is None:
        return "auto" if tools else "none"
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise ApiError(f"tool_choice must be none, auto, required or a function; got {choice!r}.",
                           param="tool_choice")
        if choice != "none" and not tools:
            raise ApiError(f"tool_choice {choice!r} needs tools.", param="tool_choice")
        return choice
    fn = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ApiError("tool_choice must be a string or {\"type\": \"function\", \"function\": {\"name\": ...}}.",
                       param="tool_choice")
    names = [t["function"]["name"] for t in tools or []]
    if fn["name"] not in names:
        raise ApiError(f"tool_choice names {fn['name']!r}, which is not among the tools.", param="tool_choice")
    return {"type": "function", "function": {"name": fn["name"]}}
