"""The program IR: expression nodes that `s += ...` submits, and the sampling parameters of a gen.

Expressions compose with `+` into flat `SglExprList`s. Names follow SGLang's (`SglGen`, `SglSelect`,
...) so programs and tools written against SGLang's IR keep working.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .choices import ChoicesSamplingMethod

REGEX_INT = r"[-+]?[0-9]+[ \n]*"
REGEX_FLOAT = r"[-+]?[0-9]*\.?[0-9]+[ \n]*"
REGEX_BOOL = r"(True|False)"
REGEX_STR = r"\"[\w\d\s]*\""  # a double-quoted string of word characters and spaces

_node_ids = itertools.count()


@dataclass(kw_only=True)
class SglSamplingParams:
    """Per-gen sampling parameters; `None` in a gen means "inherit the run-level default"."""

    max_new_tokens: int | None = 128
    min_new_tokens: int | None = 0
    n: int | None = 1
    stop: str | list[str] | tuple[str, ...] | None = ()
    stop_token_ids: list[int] | tuple[int, ...] | None = ()
    stop_regex: str | list[str] | tuple[str, ...] | None = ()
    temperature: float | None = 1.0
    top_p: float | None = 1.0
    top_k: int | None = -1
    min_p: float | None = 0.0
    frequency_penalty: float | None = 0.0
    presence_penalty: float | None = 0.0
    ignore_eos: bool | None = False
    return_logprob: bool | None = None
    logprob_start_len: int | None = None
    top_logprobs_num: int | None = None
    return_text_in_logprobs: bool | None = None
    json_schema: str | None = None
    dtype: Any = None
    regex: str | None = None

    def clone(self) -> SglSamplingParams:
        return dataclasses.replace(self, stop=_copy_list(self.stop), stop_token_ids=_copy_list(self.stop_token_ids),
                                   stop_regex=_copy_list(self.stop_regex))

    def override(self, other: SglSamplingParams) -> SglSamplingParams:
        """A new params object: `other`'s non-None fields replace ours (lists are copied, never shared)."""
        out = self.clone()
        for f in dataclasses.fields(other):
            value = getattr(other, f.name)
            if value is not None:
                setattr(out, f.name, _copy_list(value))
        return out

    def to_srt_kwargs(self) -> dict[str, Any]:
        """The `sampling_params` body for the native /generate API (every key present, SGLang's order)."""
        return {
            "max_new_tokens": self.max_new_tokens, "min_new_tokens": self.min_new_tokens, "n": self.n,
            "stop": self.stop if isinstance(self.stop, str) else list(self.stop or []),
            "stop_token_ids": list(self.stop_token_ids or []),
            "stop_regex": self.stop_regex if isinstance(self.stop_regex, str) else list(self.stop_regex or []),
            "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "min_p": self.min_p,
            "frequency_penalty": self.frequency_penalty, "presence_penalty": self.presence_penalty,
            "ignore_eos": self.ignore_eos, "regex": self.regex, "json_schema": self.json_schema,
        }

    def logprob_kwargs(self) -> dict[str, Any]:
        """Top-level logprob fields of a /generate body, only those that are set."""
        names = ("return_logprob", "logprob_start_len", "top_logprobs_num", "return_text_in_logprobs")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


def _copy_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


class SglExpr:
    """Base of every expression; `a + b` concatenates into an `SglExprList`."""

    def __init__(self) -> None:
        self.node_id = next(_node_ids)
        self.prev_node: SglExpr | None = None
        self.pid: int | None = None

    def __add__(self, other: Any) -> SglExprList:
        return SglExprList(_as_list(self) + _as_list(_to_expr(other)))

    def __radd__(self, other: Any) -> SglExprList:
        return SglExprList(_as_list(_to_expr(other)) + _as_list(self))

    def print_graph_dfs(self) -> str:
        """One line per node reachable backwards through `prev_node` (for tracing output)."""
        lines, node = [], self
        while node is not None:
            prev = node.prev_node
            lines.append(f"%{node.node_id} = " + (f"%{prev.node_id} + " if prev else "") + repr(node))
            node = prev  # type: ignore[assignment]
        text = "\n".join(reversed(lines))
        print(text)
        return text


def _to_expr(value: Any) -> SglExpr:
    if isinstance(value, SglExpr):
        return value
    if isinstance(value, str):
        return SglConstantText(value)
    raise TypeError(f"Cannot add a {type(value).__name__} to a program expression; use str or sgl expressions.")


def _as_list(expr: SglExpr) -> list[SglExpr]:
    return list(expr.expr_list) if isinstance(expr, SglExprList) else [expr]


class SglExprList(SglExpr):
    def __init__(self, expr_list: list[SglExpr]) -> None:
        super().__init__()
        self.expr_list = expr_list

    def __repr__(self) -> str:
        return f"ExprList({self.expr_list})"


class SglConstantText(SglExpr):
    def __init__(self, value: str) -> None:
        super().__init__()
        self.value = value

    def __repr__(self) -> str:
        return f"Constant({self.value!r})"


class SglArgument(SglExpr):
    """A program argument during tracing; behaves like its value except inside f-strings."""

    def __init__(self, name: str, value: Any) -> None:
        super().__init__()
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"Argument(name={self.name}, value={self.value!r})"

    def __len__(self) -> int:
        return len(self.value)

    def __getitem__(self, i: Any) -> Any:
        return self.value[i]

    def __int__(self) -> int:
        return int(self.value)

    def __bool__(self) -> bool:
        return bool(self.value)

    def __format__(self, spec: str) -> str:
        raise TypeError("Cannot put argument inside a f-string. This is not compatible with the tracer; "
                        "use `s += 'text' + arg` instead.")


class SglGen(SglExpr):
    def __init__(self, name: str | None, sampling_params: SglSamplingParams) -> None:
        super().__init__()
        self.name = name
        self.sampling_params = sampling_params

    def __repr__(self) -> str:
        return f"Gen({self.name!r})"


class SglSelect(SglExpr):
    def __init__(self, name: str | None, choices: list[str], temperature: float,
                 choices_method: ChoicesSamplingMethod) -> None:
        super().__init__()
        self.name = name
        self.choices = choices
        self.temperature = temperature
        self.choices_method = choices_method

    def __repr__(self) -> str:
        return f"Select({self.name!r}, choices={self.choices})"


class SglRoleBegin(SglExpr):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def __repr__(self) -> str:
        return f"RoleBegin({self.role})"


class SglRoleEnd(SglExpr):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def __repr__(self) -> str:
        return f"RoleEnd({self.role})"


class SglImage(SglExpr):
    def __init__(self, path: Any) -> None:
        super().__init__()
        self.path = path

    def __repr__(self) -> str:
        return "Image(...)" if not isinstance(self.path, str) else f"Image({self.path!r})"


class SglVideo(SglExpr):
    def __init__(self, path: str, num_frames: int) -> None:
        super().__init__()
        self.path = path
        self.num_frames = num_frames

    def __repr__(self) -> str:
        return f"Video({self.path!r}, num_frames={self.num_frames})"


class SglFork(SglExpr):
    def __init__(self, number: int, position_ids_offset: Any = None) -> None:
        super().__init__()
        self.number = number
        self.position_ids_offset = position_ids_offset

    def __repr__(self) -> str:
        return f"Fork(%{self.prev_node.node_id if self.prev_node else '-'}, number={self.number})"


class SglGetForkItem(SglExpr):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def __repr__(self) -> str:
        return f"GetForkItem(index={self.index})"


class SglVariable(SglExpr):
    """A reference to another stream's variable (during tracing)."""

    def __init__(self, name: str, source: SglExpr | None) -> None:
        super().__init__()
        self.name = name
        self.source = source

    def __repr__(self) -> str:
        return f"Variable('{self.name}', source=%{self.source.node_id if self.source else '-'})"


class SglVarScopeBegin(SglExpr):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __repr__(self) -> str:
        return f"VarScopeBegin('{self.name}')"


class SglVarScopeEnd(SglExpr):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __repr__(self) -> str:
        return f"VarScopeEnd('{self.name}')"


class SglConcateAndAppend(SglExpr):
    def __init__(self, states: list[Any]) -> None:
        super().__init__()
        self.states = states

    def __repr__(self) -> str:
        return f"ConcatenateAndAppend({len(self.states)} states)"


class SglCommitLazy(SglExpr):
    def __repr__(self) -> str:
        return "CommitLazy()"


class SglSeparateReasoning(SglExpr):
    """Split the reasoning part out of the preceding gen's value (see lang/reasoning.py)."""

    def __init__(self, model_type: str | None, expr: SglExpr | None) -> None:
        super().__init__()
        self.model_type = model_type
        self.expr = expr
        self.name = self._target_name(expr)

    @staticmethod
    def _target_name(expr: SglExpr | None) -> str:
        if isinstance(expr, (SglGen, SglSelect)) and expr.name:
            return f"{expr.name}_reasoning_content"
        if isinstance(expr, SglExprList):
            for child in reversed(expr.expr_list):
                if isinstance(child, (SglGen, SglSelect)) and child.name:
                    return f"{child.name}_reasoning_content"
        raise ValueError("name must be provided")

    @property
    def source_name(self) -> str:
        return self.name.removesuffix("_reasoning_content")

    def __repr__(self) -> str:
        return f"SeparateReasoning(model_type={self.model_type!r}, name={self.name!r})"


def flatten(expr: SglExpr) -> list[SglExpr]:
    """Leaves of an expression in submission order."""
    if isinstance(expr, SglExprList):
        out: list[SglExpr] = []
        for child in expr.expr_list:
            out.extend(flatten(child))
        return out
    return [expr]
