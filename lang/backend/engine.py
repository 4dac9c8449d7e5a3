"""The in-process backend: programs call an `Engine` directly (no HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sglang_nb.runtime.managers.io_struct import GenerateReqInput

from .native import NativeBackend


class EngineBackend(NativeBackend):
    """Run programs on an `sglang_nb.Engine` (created from `engine_kwargs` when none is given)."""

    def __init__(self, engine: Any = None, *, chat_template_name: str | None = None, **engine_kwargs: Any) -> None:
        if engine is None:
            from sglang_nb.runtime.engine import Engine

            engine = Engine(**engine_kwargs)
            self._owns_engine = True
        else:
            self._owns_engine = False
        self.engine = engine
        static = engine.server_info_static()
        info = {**engine.get_model_info(), "architectures": static.get("architectures")}
        super().__init__(info, chat_template_name, engine.get_tokenizer())

    async def _post(self, body: dict[str, Any]) -> Any:
        async for out in self.engine.generate_raw(GenerateReqInput(**body)):
            return out
        raise RuntimeError("The engine returned no output.")

    async def _post_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async for out in self.engine.generate_raw(GenerateReqInput(**body)):
            yield out

    def flush_cache(self) -> Any:
        return self.engine.flush_cache()

    def get_server_info(self) -> dict[str, Any]:
        return dict(self.engine.get_server_info())

    def shutdown(self) -> None:
        if self._owns_engine:
            self.engine.shutdown()
