"""Tool-call parsing for `/v1/chat/completions`: model text -> OpenAI `tool_calls`.

Formats (`--tool-call-parser`): `hermes` / `qwen25` (`<tool_call>{json}</tool_call>`), `mistral`
(`[TOOL_CALLS] [{json}, ...]`), `llama3` (`<|python_tag|>{json}` or a bare JSON object with
`parameters`), `pythonic` (`[f(a=1), g()]`). Without the flag every format is tried (`auto`).
Only calls naming a declared tool are accepted; anything else stays in `content`.
"""

from __future__ import annotations

import ast
import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FORMATS = ("auto", "hermes", "qwen25", "qwen", "mistral", "llama3", "pythonic")
_MARKERS = {"hermes": ["<tool_call>"], "qwen25": ["<tool_call>"], "qwen": ["<tool_call>"],
            "mistral": ["[TOOL_CALLS]"], "llama3": ["<|python_tag|>"], "pythonic": [],
            "auto": ["<tool_call>", "[TOOL_CALLS]", "<|python_tag|>"]}


def new_call_id() -> str:
    return "call_" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


@dataclass
class ToolCall:
    name: str
    arguments: str  # a JSON object, as text
    id: str

    def to_openai(self, index: int) -> dict[str, Any]:
        return {"id": self.id, "index": index, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


class ToolCallParser:
    """Parses one response's text; `fmt` None means auto-detection."""

    def __init__(self, fmt: str | None, tool_names: list[str]) -> None:
        fmt = fmt or "auto"
        if fmt not in FORMATS:
            raise ValueError(f"--tool-call-parser: unknown format {fmt!r}; choose from {', '.join(FORMATS)}.")
        self.fmt = fmt
        self.names = set(tool_names)
        self.markers = _MARKERS[fmt]

    # ---- whole text --------------------------------------------------------------------------

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """(content without the calls, calls); no calls found -> (text, [])."""
        table: dict[str, list[Callable[[str], tuple[str, list[ToolCall]] | None]]] = {
            "hermes": [self._tagged], "qwen25": [self._tagged], "qwen": [self._tagged],
            "mistral": [self._mistral], "llama3": [self._python_tag, self._bare_json],
            "pythonic": [self._pythonic],
            "auto": [self._tagged, self._mistral, self._python_tag, self._bare_json, self._pythonic],
        }
        for extract in table[self.fmt]:
            found = extract(text)
            if found is not None and found[1]:
                return found
        return text, []

    def _call(self, obj: Any) -> ToolCall | None:
        if not isinstance(obj, dict) or obj.get("name") not in self.names:
            return None
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False), new_call_id())

    def _calls(self, value: Any) -> list[ToolCall] | None:
        items = value if isinstance(value, list) else [value]
        calls = [self._call(v) for v in items]
        return None if not calls or any(c is None for c in calls) else calls  # type: ignore[return-value]

    def _tagged(self, text: str) -> tuple[str, list[ToolCall]] | None:
        calls: list[ToolCall] = []
        content = text
        for m in re.finditer(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", text, re.S):
            try:
                parsed = self._calls(json.loads(m.group(1)))
            except json.JSONDecodeError:
                parsed = None
            if parsed:
                calls += parsed
                content = content.replace(m.group(0), "", 1)
        return content, calls

    def _after_marker(self, text: str, marker: str) -> tuple[str, list[ToolCall]] | None:
        pos = text.find(marker)
        if pos < 0:
            return None
        rest = text[pos + len(marker):]
        calls: list[ToolCall] = []
        decoder = json.JSONDecoder()
        i = 0
        while i < len(rest):
            while i < len(rest) and rest[i] in " \t\r\n;,":
                i += 1
            if i >= len(rest):
                break
            try:
                value, i = decoder.raw_decode(rest, i)
            except json.JSONDecodeError:
                return None
            parsed = self._calls(value)
            if parsed is None:
                return None
            calls += parsed
        return text[:pos], calls

    def _mistral(self, text: str) -> tuple[str, list[ToolCall]] | None:
        return self._after_marker(text, "[TOOL_CALLS]")

    def _python_tag(self, text: str) -> tuple[str, list[ToolCall]] | None:
        return self._after_marker(text, "<|python_tag|>")

    def _bare_json(self, text: str) -> tuple[str, list[ToolCall]] | None:
        stripped = text.strip()
        if not stripped.startswith(("{", "[")):
            return None
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return None
        calls = self._calls(value)
        return ("", calls) if calls else None

    def _pythonic(self, text: str) -> tuple[str, list[ToolCall]] | None:
        stripped = text.strip()
        if not (stripped.startswith("[") and stripped.endswith("]")):
            return None
        try:
            tree = ast.parse(stripped, mode="eval")
        except SyntaxError:
            return None
        if not isinstance(tree.body, ast.List):
            return None
        calls = []
        for node in tree.body.elts:
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args \
                    or node.func.id not in self.names:
                return None
            try:
                args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
            except ValueError:
                return None
            calls.append(ToolCall(node.func.id, json.dumps(args, ensure_ascii=False), new_call_id()))
        return "", calls

    # ---- streaming ---------------------------------------------------------------------------

    def safe_content_len(self, text: str) -> int:
        """How many leading characters are certainly plain content (no call can start in them)."""
        if self.fmt in ("auto", "llama3", "pythonic") and text.lstrip().startswith(("{", "[")):
            return 0  # the whole answer may be one bare call
        cut = len(text)
        for marker in self.markers:
            pos = text.find(marker)
            if pos >= 0:
                cut = min(cut, pos)
            else:  # hold back a partial marker at the end
                for k in range(min(len(marker) - 1, len(text)), 0, -1):
                    if text.endswith(marker[:k]):
                        cut = min(cut, len(text) - k)
                        break
        return cut
