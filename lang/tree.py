"""Request trees: the requests a program (or a batch of programs) sends, arranged by shared prompt prefix.

A `RequestTree` is a compressed trie over prompt text. Each node owns a span of text; the path from
the root to a node is a prompt prefix. Requests attach to the node where their prompt ends, so a
node shared by many requests is a prefix the radix cache can serve to all of them. Planned trees
(from `SglFunction.compile` / `run_batch`) mark the shared nodes that are prefilled once
(`max_new_tokens=0`) before the branches run; after execution every request carries its
`prompt_tokens` and `cached_tokens` as the runtime reported them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class RequestRecord:
    """One request sent to the runtime."""

    kind: str  # "gen" | "stream" | "select" | "prefill" | "score" | "unconditional"
    prompt: str
    rid: str | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rid": self.rid, "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens, "completion_tokens": self.completion_tokens,
                "output": self.output}


class RequestLog:
    """Thread-safe list of the requests of one program run (shared by its fork children) or batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[RequestRecord] = []

    def add(self, kind: str, prompt: str, meta: dict[str, Any] | None, output: str = "") -> RequestRecord:
        meta = meta or {}
        record = RequestRecord(kind=kind, prompt=prompt, rid=meta.get("id"), prompt_tokens=meta.get("prompt_tokens"),
                               cached_tokens=meta.get("cached_tokens"),
                               completion_tokens=meta.get("completion_tokens"), output=output)
        with self._lock:
            self.records.append(record)
        return record

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.records)


@dataclass(eq=False)
class TreeNode:
    """A span of prompt text; `start`/`end` are character offsets of the span within any prompt below it."""

    text: str
    start: int
    parent: TreeNode | None = None
    children: list[TreeNode] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # planned paths ending here ("row 3", ...)
    planned_prefill: bool = False

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def prefix(self) -> str:
        """The whole prompt text from the root down to the end of this node."""
        parts: list[str] = []
        node: TreeNode | None = self
        while node is not None:
            parts.append(node.text)
            node = node.parent
        return "".join(reversed(parts))

    @property
    def rids(self) -> list[str]:
        return [r.rid for r in self.requests if r.rid is not None]

    @property
    def prompt_tokens(self) -> int | None:
        values = [r.prompt_tokens for r in self.requests if r.prompt_tokens is not None]
        return max(values) if values else None

    @property
    def cached_tokens(self) -> int | None:
        """The smallest cache hit among the requests ending here (None before execution)."""
        values = [r.cached_tokens for r in self.requests if r.cached_tokens is not None]
        return min(values) if values else None

    def walk(self) -> Iterator[TreeNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    def num_paths(self) -> int:
        """How many planned paths and requests end at or below this node."""
        return sum(len(n.labels) + len(n.requests) for n in self.walk())

    def to_dict(self, preview: int = 80) -> dict[str, Any]:
        return {"text": self.text if len(self.text) <= preview else self.text[:preview] + "…",
                "start": self.start, "end": self.end, "planned_prefill": self.planned_prefill,
                "labels": list(self.labels), "rids": self.rids, "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens, "requests": [r.to_dict() for r in self.requests],
                "children": [c.to_dict(preview) for c in self.children]}


class RequestTree:
    """A compressed trie of prompts with the requests that used them."""

    def __init__(self) -> None:
        self.root = TreeNode(text="", start=0)

    # ---- building ----------------------------------------------------------------------------

    def _insert(self, text: str) -> TreeNode:
        """The node whose prefix is exactly `text`, splitting spans as needed."""
        node, pos = self.root, 0
        while pos < len(text):
            child = next((c for c in node.children if c.text[:1] == text[pos:pos + 1]), None)
            if child is None:
                leaf = TreeNode(text=text[pos:], start=pos, parent=node)
                node.children.append(leaf)
                return leaf
            common = _common_prefix_len(child.text, text, pos)
            if common < len(child.text):
                self._split(child, common)
            node, pos = child, pos + common
        return node

    @staticmethod
    def _split(node: TreeNode, at: int) -> None:
        """Keep the first `at` characters in `node`; move the rest (and its children) to a new child."""
        tail = TreeNode(text=node.text[at:], start=node.start + at, parent=node, children=node.children,
                        requests=node.requests, labels=node.labels, planned_prefill=node.planned_prefill)
        for c in tail.children:
            c.parent = tail
        node.text, node.children, node.requests, node.labels = node.text[:at], [tail], [], []
        node.planned_prefill = False

    def add_path(self, text: str, label: str) -> TreeNode:
        node = self._insert(text)
        node.labels.append(label)
        return node

    def add_request(self, record: RequestRecord) -> TreeNode:
        node = self._insert(record.prompt)
        node.requests.append(record)
        return node

    @classmethod
    def from_records(cls, records: list[RequestRecord]) -> RequestTree:
        tree = cls()
        for record in records:
            tree.add_request(record)
        return tree

    # ---- reading -----------------------------------------------------------------------------

    def nodes(self) -> list[TreeNode]:
        return [n for n in self.root.walk() if n is not self.root]

    def requests(self) -> list[RequestRecord]:
        return [r for n in self.root.walk() for r in n.requests]

    def shared_nodes(self, min_chars: int) -> list[TreeNode]:
        """Maximal-depth-first list of nodes that ≥ 2 paths pass through, at least `min_chars` long."""
        out = []
        for node in self.root.walk():
            if node is self.root or node.end < min_chars:
                continue
            branching = len(node.children) + (1 if node.labels or node.requests else 0)
            if branching >= 2 and node.num_paths() >= 2:
                out.append(node)
        return out

    @property
    def cache_hit_ratio(self) -> float:
        """cached / prompt tokens over every executed request (prefills included)."""
        reqs = [r for r in self.requests() if r.prompt_tokens]
        total = sum(r.prompt_tokens or 0 for r in reqs)
        return sum(r.cached_tokens or 0 for r in reqs) / total if total else 0.0

    def to_dict(self, preview: int = 80) -> dict[str, Any]:
        return {"cache_hit_ratio": self.cache_hit_ratio, "root": self.root.to_dict(preview)}

    def pretty(self, preview: int = 40) -> str:
        lines: list[str] = []

        def visit(node: TreeNode, depth: int) -> None:
            text = node.text.replace("\n", "\\n")
            text = text if len(text) <= preview else text[:preview] + "…"
            info = []
            if node.planned_prefill:
                info.append("prefill")
            if node.labels:
                info.append(",".join(node.labels[:4]) + ("…" if len(node.labels) > 4 else ""))
            for r in node.requests:
                info.append(f"{r.kind} prompt={r.prompt_tokens} cached={r.cached_tokens}")
            lines.append("  " * depth + f"[{node.start}:{node.end}] {text!r}" + (f"  ({'; '.join(info)})" if info else ""))
            for child in node.children:
                visit(child, depth + 1)

        for child in self.root.children:
            visit(child, 0)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"RequestTree({len(self.nodes())} nodes, {len(self.requests())} requests)\n{self.pretty()}"


def _common_prefix_len(span: str, text: str, pos: int) -> int:
    n = min(len(span), len(text) - pos)
    i = 0
    while i < n and span[i] == text[pos + i]:
        i += 1
    return i
