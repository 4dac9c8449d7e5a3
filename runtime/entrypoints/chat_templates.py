"""Chat templates for `/v1/chat/completions`: `--chat-template NAME|FILE`.

NAME is one of the built-in templates below; FILE is a `.jinja` file (replaces the tokenizer's
template) or a SGLang-style `.json` conversation file (`system`/`user`/`assistant` prefixes, `sep`,
`stop_str`). Without the flag the tokenizer's own template is used, and ChatML when it has none.
Rendering goes through the tokenizer's `apply_chat_template`, so every template sees the same
Jinja environment (`bos_token`, `tools`, `raise_exception`, `tojson`, ...).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_CHATML = (
    "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}")
_QWEN = (
    "{%- if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}" + _CHATML)
_LLAMA3 = (
    "{{- bos_token or '' }}{%- for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n'"
    " + m['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
_LLAMA2 = (
    "{%- set system = messages[0]['content'] if messages[0]['role'] == 'system' else none %}"
    "{%- set turns = messages[1:] if system is not none else messages %}"
    "{%- for m in turns %}{%- if m['role'] == 'user' %}{{ (bos_token or '') + '[INST] ' }}"
    "{%- if loop.first and system is not none %}{{ '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}{%- endif %}"
    "{{ m['content'] | trim + ' [/INST]' }}{%- elif m['role'] == 'assistant' %}"
    "{{ ' ' + m['content'] | trim + ' ' + (eos_token or '') }}{%- endif %}{%- endfor %}")
_MISTRAL = (
    "{{- bos_token or '' }}{%- set system = messages[0]['content'] if messages[0]['role'] == 'system' else none %}"
    "{%- set turns = messages[1:] if system is not none else messages %}"
    "{%- for m in turns %}{%- if m['role'] == 'user' %}{{ '[INST] ' }}"
    "{%- if loop.first and system is not none %}{{ system + '\\n\\n' }}{%- endif %}{{ m['content'] + ' [/INST]' }}"
    "{%- elif m['role'] == 'assistant' %}{{ m['content'] + (eos_token or '') }}{%- endif %}{%- endfor %}")
_VICUNA = (
    "{%- if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + ' ' }}{%- else %}"
    "{{ 'A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user\\'s questions. ' }}{%- endif %}"
    "{%- for m in messages %}{%- if m['role'] == 'user' %}{{ 'USER: ' + m['content'] + ' ' }}"
    "{%- elif m['role'] == 'assistant' %}{{ 'ASSISTANT: ' + m['content'] + '</s>' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ 'ASSISTANT:' }}{%- endif %}")
_GEMMA = (
    "{{- bos_token or '' }}{%- for m in messages %}{%- set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + '<end_of_turn>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{%- endif %}")

#: name -> (Jinja source, stop strings)
BUILTIN_TEMPLATES: dict[str, tuple[str, list[str]]] = {
    "chatml": (_CHATML, ["<|im_end|>"]),
    "qwen": (_QWEN, ["<|im_end|>"]),
    "llama-3-instruct": (_LLAMA3, ["<|eot_id|>"]),
    "llama-2": (_LLAMA2, []),
    "llama-2-chat": (_LLAMA2, []),
    "mistral": (_MISTRAL, []),
    "vicuna_v1.1": (_VICUNA, ["</s>"]),
    "gemma-it": (_GEMMA, ["<end_of_turn>"]),
}

TOOL_PROMPT = (
    "You can call the following tools. Their signatures are JSON schemas:\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, answer with one JSON object per call inside <tool_call></tool_call> tags, like this:\n"
    "<tool_call>\n{{\"name\": \"<tool name>\", \"arguments\": {{<arguments as JSON>}}}}\n</tool_call>")


@dataclass
class ChatTemplate:
    """A resolved chat template: its Jinja source (None = the tokenizer's) and extra stop strings."""

    tokenizer: Any
    source: str | None
    name: str
    stop: list[str] = field(default_factory=list)

    @classmethod
    def resolve(cls, tokenizer: Any, spec: str | None) -> ChatTemplate:
        """Build from `--chat-template` (None, a built-in name, or a .jinja/.json file)."""
        if spec is None:
            if getattr(tokenizer, "chat_template", None):
                return cls(tokenizer, None, "tokenizer")
            logger.warning("The tokenizer has no chat template; using chatml for /v1/chat/completions.")
            source, stop = BUILTIN_TEMPLATES["chatml"]
            return cls(tokenizer, source, "chatml", list(stop))
        if spec in BUILTIN_TEMPLATES:
            source, stop = BUILTIN_TEMPLATES[spec]
            return cls(tokenizer, source, spec, list(stop))
        if os.path.isfile(spec):
            if spec.endswith(".json"):
                return cls._from_json(tokenizer, spec)
            with open(spec, encoding="utf-8") as f:
                return cls(tokenizer, f.read(), os.path.basename(spec))
        raise ValueError(f"--chat-template: {spec!r} is neither a built-in template "
                         f"({', '.join(sorted(BUILTIN_TEMPLATES))}) nor an existing .jinja/.json file.")

    @classmethod
    def _from_json(cls, tokenizer: Any, path: str) -> ChatTemplate:
        """A SGLang conversation file: each turn is `<role prefix>\\n<content><sep>\\n`."""
        with open(path, encoding="utf-8") as f:
            conv = json.load(f)
        try:
            prefixes = {r: conv[r] for r in ("system", "user", "assistant")}
        except (KeyError, TypeError):
            raise ValueError(f"--chat-template: {path} needs 'system', 'user' and 'assistant' keys.") from None
        sep = conv.get("sep", "\n")
        stop = conv.get("stop_str") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        source = ("{%- set p = " + json.dumps(prefixes) + " %}{%- for m in messages %}"
                  "{{ p.get(m['role'], m['role']) + '\\n' + m['content'] + " + json.dumps(sep) + " + '\\n' }}"
                  "{%- endfor %}{%- if add_generation_prompt %}{{ p['assistant'] + '\\n' }}{%- endif %}")
        return cls(tokenizer, source, str(conv.get("name", os.path.basename(path))), stop)

    @property
    def supports_tools(self) -> bool:
        source = self.source if self.source is not None else str(self.tokenizer.chat_template)
        return "tools" in source

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
               continue_final_message: bool = False, **kwargs: Any) -> str:
        """The prompt text; template errors (e.g. roles that must alternate) raise ValueError."""
        if tools and not self.supports_tools:
            messages = with_tool_prompt(messages, tools)
            tools = None
        add_generation_prompt = not (continue_final_message and messages[-1]["role"] == "assistant")
        try:
            prompt = self.tokenizer.apply_chat_template(
                messages, tools=tools, chat_template=self.source, tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=not add_generation_prompt, **kwargs)
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 - a Jinja error in the template is the request's problem
            raise ValueError(f"The chat template could not render these messages: {type(e).__name__}: {e}") from None
        if not isinstance(prompt, str):
            raise ValueError("The chat template did not produce text.")
        return prompt


def with_tool_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Describe `tools` in the system message for templates that do not render tools themselves;
    assistant tool calls in the history become `<tool_call>` text so the model sees the format."""
    text = TOOL_PROMPT.format(tools="\n".join(json.dumps(t.get("function", t)) for t in tools))
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = "\n".join("<tool_call>\n" + json.dumps({"name": c["function"]["name"],
                                                           "arguments": c["function"]["arguments"]})
                              + "\n</tool_call>" for c in m.pop("tool_calls"))
            m["content"] = (m.get("content") or "") + calls
        out.append(m)
    if out and out[0]["role"] == "system":
        out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + text}
    else:
        out.insert(0, {"role": "system", "content": text})
    return out
