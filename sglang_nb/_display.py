"""Rendering of generations in a notebook: throttled streaming into one display handle, the final
output with provenance metadata, and the "N of M prompt tokens served from cache" footer.

In a kernel the output is one display handle updated in place (every frontend supports it: no widget
needed) and the cell returns None, so the final text is never shown twice. In a terminal IPython
the text is printed as it arrives.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Sequence
from typing import Any

MIN_UPDATE_INTERVAL_S = 0.1


def in_kernel() -> bool:
    """True inside a Jupyter kernel (display handles work), False in a terminal or plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def footer_line(meta: dict[str, Any]) -> str:
    """`N of M prompt tokens served from cache · K tokens in T s · model` from provenance metadata."""
    parts = [f"{meta.get('cached_tokens', 0)} of {meta.get('prompt_tokens', 0)} prompt tokens served from cache"]
    if meta.get("completion_tokens") is not None:
        latency = meta.get("latency_ms")
        took = f" in {latency / 1000:.2f} s" if latency is not None else ""
        parts.append(f"{meta['completion_tokens']} tokens{took}")
    if meta.get("model"):
        parts.append(str(meta["model"]))
    return " · ".join(parts)


def provenance(model: str, out: dict[str, Any], latency_s: float, sampling_params: dict[str, Any]) -> dict[str, Any]:
    """The metadata saved with an output: which model, which request, what it cost, how it was sampled."""
    meta = out.get("meta_info", {})
    finish = meta.get("finish_reason")
    return {"model": model, "rid": meta.get("id"), "prompt_tokens": meta.get("prompt_tokens", 0),
            "completion_tokens": meta.get("completion_tokens", 0), "cached_tokens": meta.get("cached_tokens", 0),
            "latency_ms": round(latency_s * 1000, 1), "finish_reason": finish.get("type") if isinstance(finish, dict)
            else finish, "sampling_params": sampling_params}


def _text_html(text: str) -> str:
    return f'<pre style="white-space:pre-wrap;margin:0;font-family:inherit">{html.escape(text)}</pre>'


def _footer_html(line: str) -> str:
    return f'<div class="sglang-nb-footer" style="color:#777;font-size:0.85em;margin-top:4px">{html.escape(line)}</div>'


class StreamView:
    """One output area that a generation streams into (updated at most every `interval` seconds)."""

    def __init__(self, *, interval: float = MIN_UPDATE_INTERVAL_S, kernel: bool | None = None) -> None:
        self.interval = interval
        self.kernel = in_kernel() if kernel is None else kernel
        self._last_update = 0.0
        self._printed = 0
        self._handle: Any = None
        if self.kernel:
            from IPython.display import display

            self._handle = display(self._bundle("", "…"), raw=True, display_id=True)

    @staticmethod
    def _bundle(text: str, footer: str | None) -> dict[str, str]:
        plain = text + (f"\n\n{footer}" if footer else "")
        body = _text_html(text) + (_footer_html(footer) if footer else "")
        return {"text/plain": plain, "text/html": f'<div class="sglang-nb-output">{body}</div>'}

    def update(self, text: str) -> None:
        """Show `text` (the whole output so far); throttled in a kernel, printed as deltas elsewhere."""
        if not self.kernel:
            sys.stdout.write(text[self._printed:])
            sys.stdout.flush()
            self._printed = len(text)
            return
        self.update_bundle(self._bundle(text, "…"))

    def update_bundle(self, bundle: dict[str, str]) -> None:
        """Replace the output with `bundle` unless the last update is too recent (kernel only)."""
        now = time.monotonic()
        if self.kernel and now - self._last_update >= self.interval:
            self._last_update = now
            self._handle.update(bundle, raw=True)

    def finish(self, text: str, footer: str | None, metadata: dict[str, Any] | None = None) -> None:
        """The final state: full text, footer and metadata, replacing every earlier update."""
        if not self.kernel:
            sys.stdout.write(text[self._printed:] + (f"\n\n{footer}\n" if footer else "\n"))
            sys.stdout.flush()
            self._printed = len(text)
            return
        self.finish_bundle(self._bundle(text, footer), metadata)

    def finish_bundle(self, bundle: dict[str, str], metadata: dict[str, Any] | None = None) -> None:
        """Show `bundle` now (unthrottled) with `metadata`; in a terminal, print its text."""
        if not self.kernel:
            print(bundle["text/plain"])
            return
        self._handle.update(bundle, raw=True, metadata=metadata or {})


# ---- program runs: one pane per fork branch ---------------------------------------------------------


def branch_texts(executor: Any) -> list[tuple[str, str]]:
    """(label, text) for a program stream and, depth first, each fork branch (text after its fork point)."""
    out = [("main", str(executor.text_))]

    def visit(ex: Any, label: str) -> None:
        for i, child in enumerate(list(ex.children)):
            name = f"{label}.{i}" if label else f"fork {i}"
            out.append((name, str(child.text_)[child.fork_start_text_pos:]))
            visit(child, name)

    visit(executor, "")
    return out


def program_bundle(branches: Sequence[tuple[str, str]], footer: str | None) -> dict[str, str]:
    """Text and HTML for a program run: the main stream on top, fork branches side by side below."""
    plain = [branches[0][1]] + [f"--- {label} ---\n{text}" for label, text in branches[1:]]
    main = _text_html(branches[0][1])
    panes = "".join(
        f'<div class="sglang-nb-branch" style="flex:1;min-width:12em;border:1px solid #ccc;border-radius:4px;'
        f'padding:4px"><div style="font-weight:bold;font-size:0.85em">{html.escape(label)}</div>'
        f"{_text_html(text)}</div>" for label, text in branches[1:])
    row = f'<div style="display:flex;gap:6px;flex-wrap:wrap;margin-top:6px">{panes}</div>' if panes else ""
    foot = _footer_html(footer) if footer else ""
    return {"text/plain": "\n".join(plain) + (f"\n\n{footer}" if footer else ""),
            "text/html": f'<div class="sglang-nb-program">{main}{row}{foot}</div>'}


def tree_footer(records: Sequence[Any], model: str) -> tuple[str, dict[str, Any]]:
    """Footer and metadata for a program run from its request records (prefills, gens, selects)."""
    prompt = sum(r.prompt_tokens or 0 for r in records)
    cached = sum(r.cached_tokens or 0 for r in records)
    completion = sum(r.completion_tokens or 0 for r in records)
    meta = {"model": model, "rids": [r.rid for r in records if r.rid], "num_requests": len(records),
            "prompt_tokens": prompt, "cached_tokens": cached, "completion_tokens": completion}
    line = (f"{cached} of {prompt} prompt tokens served from cache · {len(records)} requests · "
            f"{completion} tokens · {model}")
    return line, meta


__all__ = ["StreamView", "branch_texts", "footer_line", "in_kernel", "program_bundle", "provenance", "tree_footer"]
