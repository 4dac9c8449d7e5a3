"""Notebook widgets: `ImageInput` (upload -> preview -> `sgl.image`), `ProgramView` (a program run,
one pane per fork branch) and `CacheInspector` (the radix cache, live)."""

from __future__ import annotations

from .cache_inspector import CacheInspector, CacheInspectorFallback
from .image_input import ImageInput
from .program_view import ProgramView

__all__ = ["CacheInspector", "CacheInspectorFallback", "ImageInput", "ProgramView"]
