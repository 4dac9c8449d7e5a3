"""ModelRegistry: architecture name -> model class.

Every module of this package that defines `EntryClass` (one class or a list) is registered under
each class's `__name__`. Users add their own before starting an engine or server:

    from sglang_nb.runtime.models.registry import ModelRegistry
    ModelRegistry.models["MyForCausalLM"] = MyForCausalLM

Registrations made in the parent process are shipped to the scheduler processes (classes are
pickled by reference), and `SGLANG_EXTERNAL_MODEL_PACKAGE` names a package scanned like this one.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_BUILTIN_PACKAGE = __name__.rsplit(".", 1)[0]


@dataclass
class _ModelRegistry:
    models: dict[str, type] = field(default_factory=dict)
    builtin: dict[str, type] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def get_supported_archs(self) -> list[str]:
        return sorted(self.models)

    def resolve_model_cls(self, architectures: list[str] | str | None) -> tuple[type, str]:
        if isinstance(architectures, str):
            architectures = [architectures]
        architectures = list(architectures or [])
        for arch in architectures:
            if arch in self.models:
                return self.models[arch], arch
        if any(arch in self.failed for arch in architectures):
            raise ValueError(f"Model architectures {architectures} failed to be inspected. "
                             "Please check the logs for more details.")
        raise ValueError(f"Model architectures {architectures} are not supported for now. "
                         f"Supported architectures: {self.get_supported_archs()}")

    def external_models(self) -> dict[str, type]:
        """Registrations that are not the built-in ones (shipped to scheduler processes)."""
        return {name: cls for name, cls in self.models.items() if self.builtin.get(name) is not cls}

    def scan_package(self, package: str, allow_override: bool) -> None:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name == "registry":
                continue
            name = f"{package}.{info.name}"
            try:
                module = importlib.import_module(name)
            except Exception as e:  # a broken optional model must not take the others down
                logger.warning("Ignoring model module %s: %s", name, e)
                self.failed[info.name] = str(e)
                continue
            entry = getattr(module, "EntryClass", None)
            if entry is None:
                continue
            for cls in entry if isinstance(entry, list) else [entry]:
                if cls.__name__ in self.models and not allow_override and self.models[cls.__name__] is not cls:
                    raise ValueError(f"Duplicated model implementation for {cls.__name__}")
                self.models[cls.__name__] = cls


def _build() -> _ModelRegistry:
    reg = _ModelRegistry()
    reg.scan_package(_BUILTIN_PACKAGE, allow_override=False)
    reg.builtin = dict(reg.models)
    extra = os.environ.get("SGLANG_EXTERNAL_MODEL_PACKAGE")
    if extra:
        reg.scan_package(extra, allow_override=True)
    return reg


ModelRegistry = _build()


def register_external_models(models: dict[str, Any]) -> None:
    """Apply registrations shipped from a parent process (side effect: mutates ModelRegistry)."""
    ModelRegistry.models.update(models)
