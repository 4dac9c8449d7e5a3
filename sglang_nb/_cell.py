"""What a `%%sgl` cell turns into: the interpolated prompt, the sampling parameters and, in
program mode, an `@function` compiled from the cell body.

The chat prompt itself is rendered by the runtime (`/tokenize` with messages). Pure functions (no
display, no HTTP) so they are tested directly.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from typing import Any

_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Characters with a meaning in the regex dialect of the grammar backend.
_REGEX_SPECIAL = set(r"\.^$*+?()[]{}|/-")


class CellError(ValueError):
    """A mistake in the cell or its options; the message says how to fix it."""


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace `{name}` with `str(namespace[name])` for names defined there; leave other braces alone.

    JSON and code in prompts keep their braces; only a bare identifier in braces that names a
    variable is substituted (use `--no-interpolate` to keep even those).
    """
    return _NAME.sub(lambda m: str(namespace[m.group(1)]) if m.group(1) in namespace else m.group(0), text)


def choices_regex(choices: list[str]) -> str:
    """A regex that matches exactly one of `choices` (each escaped literally)."""
    if not choices or any(not c for c in choices):
        raise CellError("--choices needs a comma-separated list of non-empty options, e.g. --choices yes,no")
    escaped = ["".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in c) for c in choices]
    return "(" + "|".join(escaped) + ")"


def json_schema_arg(value: str, namespace: Mapping[str, Any]) -> str:
    """`--json-schema` names a variable (dict, pydantic model class or JSON text) or is inline JSON."""
    if value in namespace:
        obj = namespace[value]
        if hasattr(obj, "model_json_schema"):
            obj = obj.model_json_schema()
        if isinstance(obj, str):
            value = obj
        else:
            try:
                return json.dumps(obj)
            except TypeError as e:
                raise CellError(f"--json-schema {value}: the variable is not JSON-serialisable ({e}).") from None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        raise CellError(f"--json-schema {value!r}: neither a variable name nor valid JSON; pass a dict "
                        "variable, e.g. --json-schema schema") from None
    if not isinstance(parsed, dict):
        raise CellError("--json-schema must be a JSON object (a schema), e.g. '{\"type\": \"object\"}'.")
    return json.dumps(parsed)


def sampling_params(*, max_tokens: int, temperature: float, top_p: float | None, stop: list[str] | None,
                    regex: str | None, json_schema: str | None, choices: list[str] | None, ignore_eos: bool,
                    seed: int | None) -> dict[str, Any]:
    """The `sampling_params` of a cell's request; one constraint at most."""
    if max_tokens < 1:
        raise CellError(f"--max-tokens must be at least 1, got {max_tokens}.")
    if temperature < 0:
        raise CellError(f"--temperature must be >= 0, got {temperature}.")
    constraints = [name for name, v in (("--regex", regex), ("--json-schema", json_schema),
                                        ("--choices", choices)) if v]
    if len(constraints) > 1:
        raise CellError(f"Use one constraint at a time, got {' and '.join(constraints)}.")
    params: dict[str, Any] = {"max_new_tokens": max_tokens, "temperature": temperature}
    if top_p is not None:
        params["top_p"] = top_p
    if stop:
        params["stop"] = list(stop)
    if regex:
        params["regex"] = regex
    if json_schema:
        params["json_schema"] = json_schema
    if choices:
        params["regex"] = choices_regex(choices)
    if ignore_eos:
        params["ignore_eos"] = True
    if seed is not None:
        params["sampling_seed"] = seed
    return params


def compile_program(body: str, namespace: Mapping[str, Any], name: str = "sgl_cell") -> Any:
    """An `@function` whose body is the cell: `s` is the program state, the notebook's names are visible.

    `sgl` is available even when the notebook did not import it.
    """
    import sglang_nb
    from sglang_nb.lang import function

    source = f"def {name}(s):\n" + textwrap.indent(body if body.strip() else "pass", "    ")
    try:
        code = compile(source, "<%%sgl --program>", "exec")
    except SyntaxError as e:
        line = (e.lineno or 2) - 1
        raise CellError(f"The program body does not compile (line {line}): {e.msg}") from None
    scope: dict[str, Any] = {"sgl": sglang_nb, **namespace}
    exec(code, scope)  # noqa: S102 - the user's own cell, run like any other cell
    return function(scope[name])


__all__ = ["CellError", "choices_regex", "compile_program", "interpolate", "json_schema_arg",
           "sampling_params"]
