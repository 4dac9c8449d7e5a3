"""ProgramView: a program run streaming live, one pane per fork branch.

`ProgramView(state)` for a state from `prog.run(..., stream=True)`: the main stream on top, each fork
branch in its own pane below, updated from a background thread through widget traits (routed by
widget id, never by the running cell), and a footer with the run's cache use when it is done.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets
import traitlets

from sglang_nb._display import branch_texts, program_bundle, tree_footer

_REFRESH_S = 0.1


class ProgramView(widgets.VBox):
    """Live view of a ProgramState; `branches` holds (label, text) per stream, `done` flips at the end."""

    branches: traitlets.List[list[str]] = traitlets.List(help="[label, text] for the main stream and each fork branch.")
    footer = traitlets.Unicode("", help="Cache use of the run, once it is done.")
    done = traitlets.Bool(False)

    def __init__(self, state: Any, *, model: str = "", watch: bool = True) -> None:
        self.state = state
        self.model = model
        self.main = widgets.HTML()
        self.panes = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap", gap="6px"))
        self.foot = widgets.HTML()
        super().__init__([self.main, self.panes, self.foot])
        self._stop = threading.Event()
        self.refresh()
        if watch and not self.done:
            threading.Thread(target=self._watch, name="sglang_nb-program-view", daemon=True).start()

    def refresh(self) -> None:
        """Read the program's streams now and update the panes (and the footer when finished)."""
        ex = self.state.stream_executor
        self.branches = [list(b) for b in branch_texts(ex)]
        finished = bool(ex.done.done()) and all(f.done() for f in ex.ctx.done_futures())
        if finished and not self.done:
            self.footer, _ = tree_footer(ex.ctx.log.snapshot(), self.model or "")
            self.done = True

    @traitlets.observe("branches", "footer")
    def _render(self, _change: dict[str, Any]) -> None:
        branches = [(label, text) for label, text in self.branches] or [("main", "")]
        self.main.value = program_bundle(branches[:1], None)["text/html"]
        while len(self.panes.children) < len(branches) - 1:
            self.panes.children = (*self.panes.children, widgets.HTML(layout=widgets.Layout(min_width="12em")))
        for pane, branch in zip(self.panes.children, branches[1:]):
            pane.value = program_bundle([("", ""), branch], None)["text/html"]
        self.foot.value = f"<small>{self.footer}</small>" if self.footer else ""

    def _watch(self) -> None:
        while not self._stop.wait(_REFRESH_S):
            self.refresh()
            if self.done:
                return

    def close(self) -> None:
        self._stop.set()
        super().close()


__all__ = ["ProgramView"]
