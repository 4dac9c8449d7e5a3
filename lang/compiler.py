"""The request-tree compiler: plan which shared prompt prefixes to prefill once before a batch runs.

Each batch row is traced with its real arguments; the constant text before its first model call is
the prompt of its first request. Those prompts form a `RequestTree`; every node that at least two
rows pass through (and that adds enough text over the nearest planned ancestor) is prefilled with
a `max_new_tokens=0` request, parents before children, so the rows then hit the radix cache.
With a known tokenizer the prefill sends exactly the tokens the rows share (their token-level
longest common prefix), so no boundary token is computed twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backend.base import Prompt
from .tracer import trace_program
from .tree import RequestLog, RequestTree, TreeNode

if TYPE_CHECKING:
    from .backend.base import BaseBackend

MIN_SHARED_CHARS = 64  # shorter shared prefixes are not worth a request (SGLang's rule, too)


@dataclass
class RowPlan:
    """What tracing one row found: its first prompt and whether its body reads generated values."""

    arguments: dict[str, Any]
    prefix: str
    static: bool


def plan_rows(func: Callable[..., Any], arg_names: list[str], rows: list[dict[str, Any]],
              backend: BaseBackend) -> list[RowPlan]:
    plans = []
    for arguments in rows:
        try:
            traced = trace_program(func, arguments, arg_names, backend=backend, substitute_arguments=True)
            plans.append(RowPlan(arguments, traced.prefix_text(), static=not traced.reads_variables))
        except Exception:  # noqa: BLE001 - an untraceable body just runs without a plan
            plans.append(RowPlan(arguments, "", static=False))
    return plans


def compile_tree(plans: list[RowPlan], min_chars: int = MIN_SHARED_CHARS) -> RequestTree:
    """The planned tree: one path per row, shared nodes marked `planned_prefill`."""
    tree = RequestTree()
    for i, plan in enumerate(plans):
        if plan.prefix:
            tree.add_path(plan.prefix, f"row {i}")
    shared = set(tree.shared_nodes(min_chars))

    def mark(node: TreeNode, planned_end: int) -> None:
        if node in shared and node.end - planned_end >= min_chars:
            node.planned_prefill = True
            planned_end = node.end
        for child in node.children:
            mark(child, planned_end)

    mark(tree.root, 0)
    return tree


async def run_prefills(tree: RequestTree, backend: BaseBackend, log: RequestLog) -> None:
    """Prefill the planned nodes, one depth level at a time (a child's prefill then hits its parent)."""
    levels: dict[int, list[TreeNode]] = {}

    def collect(node: TreeNode, depth: int) -> None:
        if node.planned_prefill:
            levels.setdefault(depth, []).append(node)
            depth += 1
        for child in node.children:
            collect(child, depth)

    collect(tree.root, 0)
    for depth in sorted(levels):
        await asyncio.gather(*(_prefill_node(node, backend, log) for node in levels[depth]))


async def _prefill_node(node: TreeNode, backend: BaseBackend, log: RequestLog) -> None:
    text = node.prefix
    paths = [n.prefix for n in node.walk() if n.labels]
    token_lists = [backend.tokenize(p) for p in paths]
    if token_lists and all(t is not None for t in token_lists):
        shared = _common_prefix([t for t in token_lists if t is not None])
        if shared:
            await backend.prefill(Prompt(text), log, input_ids=shared)
        return
    await backend.prefill(Prompt(_safe_cut(text)), log)


def _common_prefix(lists: list[list[int]]) -> list[int]:
    first = lists[0]
    n = len(first)
    for other in lists[1:]:
        n = min(n, len(other))
        for i in range(n):
            if first[i] != other[i]:
                n = i
                break
    return first[:n]


def _safe_cut(text: str) -> str:
    """Cut where tokenizers do not merge across the boundary: after a newline, else before a space."""
    newline = text.rfind("\n")
    if newline >= len(text) // 2:
        return text[: newline + 1]
    space = text.rfind(" ")
    if space > 0:
        return text[:space]
    return text
