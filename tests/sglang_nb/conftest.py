"""Fixtures for the Jupyter surfaces: an isolated runtime registry, one runtime shared by the tests
(registered as shared, so kernels started by the tests attach to it instead of loading the model
again), and a guard that no runtime process outlives the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Runtimes of the tests are recorded in a private registry (kernels inherit the variable)."""
    path = tmp_path_factory.mktemp("sglang_nb_registry")
    old = os.environ.get("SGLANG_NB_REGISTRY_DIR")
    os.environ["SGLANG_NB_REGISTRY_DIR"] = str(path)
    yield path
    from sglang_nb._registry import kill_groups, load_records

    leftovers = [r for r in load_records() if r.runtime_alive() and r.owner_kind != "server"]
    for record in leftovers:  # never leave a process behind, even when a test failed half-way
        kill_groups([record.pgid, *record.child_pgids], timeout=5.0)
    if old is None:
        os.environ.pop("SGLANG_NB_REGISTRY_DIR", None)
    else:
        os.environ["SGLANG_NB_REGISTRY_DIR"] = old


@pytest.fixture(scope="session")
def shared_rt(isolated_registry: Path) -> Iterator[Any]:
    """The embedded model, started once, recorded as shared: `%sgl start` anywhere attaches to it."""
    from sglang_nb._runtime import Runtime, set_current_runtime

    rt = Runtime(owner_kind="server", max_total_tokens=16384)
    set_current_runtime(None)
    yield rt
    rt.stop()


@pytest.fixture
def ip(shared_rt: Any) -> Iterator[Any]:
    """A bare IPython shell with `%load_ext sglang_nb` (no kernel)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from sglang_nb._runtime import set_current_runtime

    config = Config()
    config.HistoryAccessor.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.extension_manager.load_extension("sglang_nb")
    yield shell
    shell.extension_manager.unload_extension("sglang_nb")
    set_current_runtime(None)
    InteractiveShell.clear_instance()
