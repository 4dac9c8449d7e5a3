"""The serving engine: scheduler, memory, models, HTTP entrypoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .engine import Engine
    from .server_args import ServerArgs


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not import torch.
    if name == "Engine":
        from .engine import Engine

        return Engine
    if name == "ServerArgs":
        from .server_args import ServerArgs

        return ServerArgs
    raise AttributeError(name)


__all__ = ["Engine", "ServerArgs", "__version__"]
