"""Tracing: run a program function against a recording state to get its IR without calling a model.

`trace()` gives the node list (role markup rendered through the chat template, like at run time).
The request-tree compiler traces each batch row with its real arguments to find the constant
prompt prefix the rows share, and whether a program reads generated values (then its body cannot
run ahead of the model and needs a worker thread in `run_batch`).
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .chat_template import ChatTemplate, get_chat_template
from .ir import (
    SglArgument,
    SglConstantText,
    SglExpr,
    SglFork,
    SglGen,
    SglGetForkItem,
    SglRoleBegin,
    SglRoleEnd,
    SglSelect,
    SglVariable,
    SglVarScopeBegin,
    SglVarScopeEnd,
    flatten,
)

if TYPE_CHECKING:
    from .backend.base import BaseBackend


class StopTracing(Exception):
    """Raised inside a prefix-only trace at the first node that is not constant text."""


_SCOPES: contextvars.ContextVar[tuple[TracerProgramState, ...]] = contextvars.ContextVar("sgl_tracing", default=())


def current_tracer() -> TracerProgramState | None:
    scopes = _SCOPES.get()
    return scopes[-1] if scopes else None


@contextmanager
def tracing_scope(state: TracerProgramState) -> Iterator[None]:
    token = _SCOPES.set(_SCOPES.get() + (state,))
    try:
        yield
    finally:
        _SCOPES.reset(token)


class TracerProgramState:
    """Records what a program appends; reading a generated value yields an `SglVariable`."""

    def __init__(self, chat_template: ChatTemplate, arguments: dict[str, Any], *, only_trace_prefix: bool = False,
                 substitute_arguments: bool = False, backend: BaseBackend | None = None) -> None:
        self.chat_template = chat_template
        self.backend = backend
        self.arguments = arguments
        self.only_trace_prefix = only_trace_prefix
        self.substitute_arguments = substitute_arguments
        self.nodes: list[SglExpr] = []
        self.last_node: SglExpr | None = None
        self.variables: dict[Any, SglVariable] = {}
        self.messages_: list[dict[str, Any]] = []
        self.cur_role: str | None = None
        self.child_states: list[TracerProgramState] = []
        self.reads_variables = False
        self.ret_value: Any = None

    # ---- appending ---------------------------------------------------------------------------

    def __iadd__(self, other: Any) -> TracerProgramState:
        expr = other if isinstance(other, SglExpr) else SglConstantText(other) if isinstance(other, str) else None
        if expr is None:
            raise TypeError(f"Cannot append a {type(other).__name__} to a program state.")
        for node in flatten(expr):
            self._append(node)
        return self

    def _append(self, node: SglExpr) -> None:
        if isinstance(node, SglArgument) and self.substitute_arguments:
            node = SglConstantText(str(node.value))
        if isinstance(node, SglRoleBegin):
            self._role_begin(node.role)
            return
        if isinstance(node, SglRoleEnd):
            self._role_end(node.role)
            return
        if self.only_trace_prefix and not isinstance(node, SglConstantText):
            raise StopTracing()
        self._record(node)
        if isinstance(node, (SglGen, SglSelect)):
            prefix = "gen" if isinstance(node, SglGen) else "select"
            name = node.name if node.name is not None else f"{prefix}_{len(self.variables)}"
            self.variables[name] = SglVariable(name, source=node)
        elif isinstance(node, SglVarScopeEnd):
            self.variables[node.name] = SglVariable(node.name, source=self.last_node)

    def _record(self, node: SglExpr) -> None:
        node.prev_node = self.last_node
        self.nodes.append(node)
        self.last_node = node

    def _role_begin(self, role: str) -> None:
        template = self.chat_template
        if not self.messages_ and role != "system" and template.default_system_prompt:
            prefix, suffix = template.get_prefix_and_suffix("system", self.messages_)
            for text in (prefix, template.default_system_prompt, suffix):
                self._append(SglConstantText(text))
            self.messages_.append({"role": "system", "content": template.default_system_prompt})
        prefix, _ = template.get_prefix_and_suffix(role, self.messages_)
        self.cur_role = role
        self._append(SglConstantText(prefix))

    def _role_end(self, role: str) -> None:
        _, suffix = self.chat_template.get_prefix_and_suffix(role, self.messages_)
        self.cur_role = None
        self._append(SglConstantText(suffix))
        self.messages_.append({"role": role, "content": None})

    def _role_common(self, name: str, expr: Any = None) -> Any:
        if expr is not None:
            self += SglRoleBegin(name) + expr + SglRoleEnd(name)
            return None

        @contextmanager
        def role_scope() -> Iterator[None]:
            self._append(SglRoleBegin(name))
            yield
            self._append(SglRoleEnd(name))
        return role_scope()

    def system(self, expr: Any = None) -> Any:
        return self._role_common("system", expr)

    def user(self, expr: Any = None) -> Any:
        return self._role_common("user", expr)

    def assistant(self, expr: Any = None) -> Any:
        return self._role_common("assistant", expr)

    @contextmanager
    def var_scope(self, name: str) -> Iterator[None]:
        self._append(SglVarScopeBegin(name))
        yield
        self._append(SglVarScopeEnd(name))

    def fork(self, size: int = 1, position_ids_offset: Any = None) -> list[TracerProgramState]:
        if self.only_trace_prefix:
            raise StopTracing()
        fork_node = SglFork(size, position_ids_offset)
        self._record(fork_node)
        children = []
        for i in range(size):
            child = TracerProgramState(self.chat_template, self.arguments, backend=self.backend,
                                       substitute_arguments=self.substitute_arguments)
            item = SglGetForkItem(i)
            item.prev_node = fork_node
            child.last_node = item
            child.variables = dict(self.variables)
            child.messages_ = list(self.messages_)
            child.cur_role = self.cur_role
            children.append(child)
        self.child_states.extend(children)
        return _TracerGroup(children, self)

    # ---- reading -----------------------------------------------------------------------------

    def __getitem__(self, name: Any) -> Any:
        if name in self.arguments:
            return self.arguments[name]
        self.reads_variables = True
        return self.variables.get(name) or SglVariable(name, source=None)

    get_var = __getitem__

    def set_var(self, name: Any, value: Any) -> None:
        self.variables[name] = value

    __setitem__ = set_var

    def text(self) -> str:
        self.reads_variables = True
        return "".join(n.value for n in self.nodes if isinstance(n, SglConstantText))

    def prefix_text(self) -> str:
        """The constant text before the first node that needs the model (or an unknown argument)."""
        parts = []
        for node in self.nodes:
            if not isinstance(node, SglConstantText):
                break
            parts.append(node.value)
        return "".join(parts)

    def flatten_nodes(self) -> list[SglExpr]:
        return list(self.nodes)


class _TracerGroup(list):  # type: ignore[type-arg]
    """What `fork` returns while tracing: the child tracers (join just records nothing)."""

    def __init__(self, children: list[TracerProgramState], parent: TracerProgramState) -> None:
        super().__init__(children)
        self.parent = parent

    def __iadd__(self, other: Any) -> _TracerGroup:  # type: ignore[override, misc]
        for i, child in enumerate(self):
            child += other(i) if callable(other) and not isinstance(other, SglExpr) else \
                other[i] if isinstance(other, (list, tuple)) else other
        return self

    def join(self, mode: str = "gather_variable") -> None:
        for child in self:
            for name, var in child.variables.items():
                self.parent.variables.setdefault(name, var)


def bind_arguments(func: Callable[..., Any], arg_names: list[str], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> dict[str, Any]:
    """Positional program arguments (after `s`) mapped to their names, merged with keyword ones."""
    if len(args) > len(arg_names):
        raise TypeError(f"{func.__name__}() takes {len(arg_names)} program arguments but {len(args)} were given.")
    out = dict(zip(arg_names, args))
    for key in out:
        if key in kwargs:
            raise TypeError(f"{func.__name__}() got multiple values for argument {key!r}.")
    out.update(kwargs)
    return out


def trace_program(func: Callable[..., Any], arguments: dict[str, Any], arg_names: list[str],
                  chat_template: ChatTemplate | None = None, *, backend: BaseBackend | None = None,
                  only_trace_prefix: bool = False, substitute_arguments: bool = False) -> TracerProgramState:
    """Run `func` on a tracer. Program arguments become `SglArgument` placeholders (unspecified ones hold
    None), or with `substitute_arguments` are passed as their real values (so they read as constants)."""
    template = chat_template or (backend.get_chat_template() if backend is not None else get_chat_template("default"))
    params = inspect.signature(func).parameters
    given = {k: v for k, v in arguments.items() if k in params}
    if substitute_arguments:
        call_kwargs = given
    else:
        call_kwargs = {**given, **{name: SglArgument(name, arguments.get(name)) for name in arg_names}}
    state = TracerProgramState(template, call_kwargs, only_trace_prefix=only_trace_prefix,
                               substitute_arguments=substitute_arguments, backend=backend)
    with tracing_scope(state):
        try:
            state.ret_value = func(state, **call_kwargs)
        except StopTracing:
            pass
    return state
