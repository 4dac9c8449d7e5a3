"""ServerContext: what every HTTP handler needs, built once per mounted set of handlers.

It wraps an `Engine` so that handlers work the same whether the engine's TokenizerManager runs on
the handlers' own loop (the standalone server) or on the engine's background loop (an engine that
the Jupyter server extension owns): generation streams and control calls are bridged only when
the loops differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..managers.io_struct import FlushCacheOutput, GenerateReqInput, ProfileOutput, ProfileReq
from ..model_loader.resolve import DEFAULT_MODEL_NAME

if TYPE_CHECKING:
    from ..engine import Engine
    from ..server_args import ServerArgs
    from .chat_templates import ChatTemplate
    from .files_batches import BatchManager, FileStore
    from .metrics import ServerMetrics


class ServerContext:
    """Shared state of one set of handlers: the engine, its metrics, templates, files and batches."""

    def __init__(self, engine: Engine, server_args: ServerArgs | None = None, *, cors: bool = True,
                 api_key: str | None = None) -> None:
        from .chat_templates import ChatTemplate
        from .files_batches import BatchManager, FileStore
        from .metrics import ServerMetrics

        self.engine = engine
        self.server_args = server_args or engine.server_args
        args = self.server_args
        self.cors = cors
        self.ready = True  # the standalone server clears this until its warm-up request is done
        self.api_key = api_key if api_key is not None else args.api_key
        self.max_body_bytes = int(args.max_request_body_bytes)
        self.model_name: str = args.served_model_name or args.model_path or DEFAULT_MODEL_NAME
        self.created = int(time.time())
        self.tokenizer: Any = engine.get_tokenizer()
        info = engine.scheduler.info
        self.context_len: int = int(info["context_len"])
        self.vocab_size: int = int(info["vocab_size"])
        self.is_generation: bool = bool(info.get("is_generation", True))
        self.is_multimodal: bool = bool(info.get("is_multimodal", False))
        self.chat_template: ChatTemplate | None = (
            ChatTemplate.resolve(self.tokenizer, args.chat_template) if self.tokenizer is not None else None)
        self.metrics: ServerMetrics = ServerMetrics(self.model_name)
        engine.tokenizer_manager.metrics_hooks.append(self.metrics.on_request_update)
        self.files: FileStore = FileStore(args.file_storage_pth)
        self.batches: BatchManager = BatchManager(self)

    # ---- engine access (bridged when the engine runs on another loop) ------------------------

    def _on_engine_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.engine.loop
        except RuntimeError:
            return False

    def generate(self, obj: GenerateReqInput) -> AsyncIterator[Any]:
        """The TokenizerManager's output stream for `obj` (cumulative chunks); close it to abort."""
        if self._on_engine_loop():
            return self.engine.tokenizer_manager.generate_request(obj)
        return self.engine.generate_raw(obj)

    def abort(self, rid: str = "") -> None:
        """Abort one request, or every request when `rid` is empty."""
        self.engine.abort_request(rid)

    async def flush_cache(self) -> FlushCacheOutput:
        return await self.engine.async_flush_cache()

    async def profile(self, req: ProfileReq) -> ProfileOutput:
        return await self.engine.async_profile(req)

    async def internal_state(self, with_tree: bool = False, max_nodes: int = 64) -> dict[str, Any]:
        return await self.engine.async_get_internal_state(with_tree, max_nodes)

    def num_active(self) -> int:
        return int(self.engine.tokenizer_manager.num_active())

    def dead_message(self) -> str | None:
        """Why the engine cannot serve (the scheduler died), or None when it is healthy."""
        tm = self.engine.tokenizer_manager
        if tm.dead_message is not None:
            return str(tm.dead_message)
        if not self.engine.scheduler.is_alive():
            return "The scheduler process died; restart the server."
        return None

    def server_info(self, state: dict[str, Any]) -> dict[str, Any]:
        """`/get_server_info`: server args, scheduler facts and the live internal state."""
        info = self.engine.server_info_static()
        info.pop("api_key", None)  # never echo the secret
        internal = {**state, "last_gen_throughput": round(self.metrics.gen_throughput(), 3)}
        return {**info, **state, "status": "ready", "max_req_input_len": self.context_len - 1,
                "served_model_name": self.model_name, "internal_states": [internal]}
