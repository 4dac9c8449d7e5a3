"""The cache inspector: watch the radix cache serve shared prefixes.

`CacheInspector(runtime)` (or `%sgl cache`) shows the hit rate (cumulative and recent), KV-pool
usage, evictable vs locked tokens, running/queued requests, throughput, the radix tree (the most
recently used nodes, collapsible, with token previews, lock counts and recency), and the request
tree of the last `%%sgl` cell or program with cached tokens per node; buttons flush the cache and
abort every request. It refreshes from a background thread, so the kernel is never blocked.

The view is an anywidget (its ES module ships next to this file); where anywidget is not installed
the same content is drawn with stock ipywidgets.
"""

from __future__ import annotations

import functools
import time
import weakref
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import traitlets

from . import _stats
from ._poller import Poller

_LAST: dict[str, Any] = {"tree": None}
_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()


def set_last_request_tree(tree: Any) -> None:
    """Record the request tree of the last cell/program (a `RequestTree`); live inspectors show it."""
    _LAST["tree"] = tree.to_dict(preview=60) if tree is not None else None
    for inspector in list(_LIVE):
        inspector.request_tree = _LAST["tree"] or {}


def last_request_tree() -> dict[str, Any] | None:
    return _LAST["tree"]


class _InspectorLogic:
    """What both views share: polling the runtime, turning snapshots into traits, the controls."""

    kpis: dict[str, Any]
    tree: list[Any]
    status: str
    truncated: bool
    request_tree: dict[str, Any]

    def _setup(self, runtime: Any, max_nodes: int, interval: float) -> None:
        if runtime is None:
            from sglang_nb._runtime import current_runtime

            runtime = current_runtime()
            if runtime is None:
                raise ValueError("No runtime to inspect: start one with `%sgl start` or pass CacheInspector(rt).")
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be at least 1, got {max_nodes}.")
        self.runtime = runtime
        self.max_nodes = max_nodes
        self._prev: tuple[dict[str, Any], float] | None = None
        self.request_tree = _LAST["tree"] or {}
        _LIVE.add(self)
        self.poller = Poller(lambda: runtime.cache_state(tree=True, max_nodes=self.max_nodes), self.apply,
                             self._on_error, interval)
        self.poller.poll_once()
        self.poller.start()

    def apply(self, state: dict[str, Any], now: float | None = None) -> None:
        """Show one `/cache_state` snapshot (rates are computed against the previous one)."""
        now = time.monotonic() if now is None else now
        prev, t_prev = self._prev if self._prev is not None else (None, now)
        self.kpis = _stats.kpis(state, prev, now - t_prev)
        snapshot = state.get("tree") or {}
        self.truncated = bool(snapshot.get("truncated"))
        self.tree = _stats.nest(snapshot)
        self.status = f"updated {time.strftime('%H:%M:%S')} · {snapshot.get('total_nodes', 0)} nodes" + (
            f" (showing {len(snapshot.get('nodes', []))})" if self.truncated else "")
        self._prev = (state, now)

    def _on_error(self, message: str) -> None:
        self.status = f"cannot reach the runtime: {message}"

    # ---- controls ------------------------------------------------------------------------------

    def flush(self) -> str:
        """Empty the radix cache (the runtime refuses while requests run); returns what happened."""
        try:
            self.runtime.flush_cache()
            self.status = "cache flushed"
        except (ValueError, OSError) as e:
            self.status = f"not flushed: {e}"
        self.poller.poke()
        return self.status

    def abort_all(self) -> str:
        try:
            self.runtime.abort(None)
            self.status = "aborted every request"
        except (ValueError, OSError) as e:
            self.status = f"abort failed: {e}"
        self.poller.poke()
        return self.status

    def refresh(self) -> None:
        self.poller.poll_once()

    def set_paused(self, paused: bool) -> None:
        if paused:
            self.poller.stop()
        else:
            self.poller.start()

    def show_program(self, state: Any) -> None:
        """Overlay the request tree of a program run (a ProgramState or a run_batch result)."""
        self.request_tree = state.request_tree().to_dict(preview=60)

    def stop(self) -> None:
        """Stop refreshing (also done by `close()`)."""
        self.poller.stop()


_ESM = Path(__file__).with_name("cache_inspector.js")


@functools.cache
def _anywidget_class() -> type | None:
    try:
        import anywidget
    except ImportError:
        return None

    class CacheInspectorWidget(_InspectorLogic, anywidget.AnyWidget):
        """The anywidget view of the cache inspector."""

        _esm = _ESM
        kpis = traitlets.Dict().tag(sync=True)
        tree: traitlets.List[Any] = traitlets.List().tag(sync=True)
        request_tree = traitlets.Dict().tag(sync=True)
        status = traitlets.Unicode("").tag(sync=True)
        truncated = traitlets.Bool(False).tag(sync=True)
        paused = traitlets.Bool(False).tag(sync=True)

        def __init__(self, runtime: Any = None, *, max_nodes: int = 200, interval: float = 1.0) -> None:
            super().__init__()
            self._setup(runtime, max_nodes, interval)
            self.paused = interval <= 0
            self.on_msg(self._on_front_msg)

        @traitlets.observe("paused")
        def _paused_changed(self, change: dict[str, Any]) -> None:
            if hasattr(self, "poller"):
                self.set_paused(bool(change["new"]))

        def _on_front_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
            actions = {"flush": self.flush, "abort_all": self.abort_all, "refresh": self.refresh}
            action = actions.get(content.get("type", "")) if isinstance(content, dict) else None
            if action is not None:
                action()

        def close(self) -> None:
            self.stop()
            super().close()

        def __repr__(self) -> str:  # ipywidgets' repr serialises every trait; keep it cheap
            return f"CacheInspector({getattr(self.runtime, 'url', '')})"

    return CacheInspectorWidget


class CacheInspectorFallback(_InspectorLogic, widgets.VBox):
    """The cache inspector drawn with stock ipywidgets (no custom JavaScript)."""

    kpis = traitlets.Dict()
    tree: traitlets.List[Any] = traitlets.List()
    request_tree = traitlets.Dict()
    status = traitlets.Unicode("")
    truncated = traitlets.Bool(False)

    def __init__(self, runtime: Any = None, *, max_nodes: int = 200, interval: float = 1.0) -> None:
        self.kpi_view = widgets.HTML()
        self.tree_view = widgets.HTML()
        self.request_view = widgets.HTML()
        self.status_view = widgets.HTML()
        self.pause_button = widgets.ToggleButton(value=interval <= 0, description="Pause", icon="pause")
        flush = widgets.Button(description="Flush cache", icon="trash")
        abort = widgets.Button(description="Abort all", icon="stop", button_style="warning")
        flush.on_click(lambda _b: self.flush())
        abort.on_click(lambda _b: self.abort_all())
        self.pause_button.observe(lambda c: self.set_paused(bool(c["new"])), names="value")
        controls = widgets.HBox([self.pause_button, flush, abort])
        super().__init__([widgets.HTML("<b>sglang_nb cache inspector</b>"), self.kpi_view, controls,
                          widgets.HTML("<b>radix tree</b>"), self.tree_view,
                          widgets.HTML("<b>last request tree</b>"), self.request_view, self.status_view])
        self._setup(runtime, max_nodes, interval)

    @traitlets.observe("kpis")
    def _render_kpis(self, change: dict[str, Any]) -> None:
        self.kpi_view.value = _stats.kpi_html(change["new"])

    @traitlets.observe("tree")
    def _render_tree(self, change: dict[str, Any]) -> None:
        self.tree_view.value = _stats.tree_html(change["new"])

    @traitlets.observe("request_tree")
    def _render_request_tree(self, change: dict[str, Any]) -> None:
        self.request_view.value = _stats.request_tree_html(change["new"])

    @traitlets.observe("status")
    def _render_status(self, change: dict[str, Any]) -> None:
        self.status_view.value = f"<small>{change['new']}</small>"

    def close(self) -> None:
        self.stop()
        super().close()


def CacheInspector(runtime: Any = None, *, max_nodes: int = 200, interval: float = 1.0,  # noqa: N802
                   fallback: bool = False) -> Any:
    """The cache inspector for `runtime` (default: this kernel's); `fallback=True` forces stock widgets."""
    cls = None if fallback else _anywidget_class()
    if cls is None:
        return CacheInspectorFallback(runtime, max_nodes=max_nodes, interval=interval)
    return cls(runtime, max_nodes=max_nodes, interval=interval)


__all__ = ["CacheInspector", "CacheInspectorFallback", "last_request_tree", "set_last_request_tree"]
