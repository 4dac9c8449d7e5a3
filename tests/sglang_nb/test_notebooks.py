"""Every notebook under notebooks/ runs top to bottom in a real kernel (nbclient), on CPU with the
embedded model. The kernels attach to the test session's shared runtime through the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


def _outputs(nb: Any, kind: str = "text/plain") -> str:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") if out["output_type"] == "stream" else out.get("data", {}).get(kind, ""))
    return "\n".join(str(t) for t in texts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, shared_rt: Any) -> None:
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    text = _outputs(nb)
    if path.stem == "quickstart":
        assert "prompt tokens served from cache" in text
        assert "application/vnd.jupyter.widget-view+json" in str(nb.cells[-2].outputs)
    if path.stem == "images":
        assert "downscaled" in text and "has no vision encoder" in text
    if path.stem == "programs":
        assert "fork 0" in text and "RequestTree" in text
    if path.stem == "cache_inspector":
        assert "hit rate" in text
