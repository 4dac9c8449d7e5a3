"""The jupyter_server extension `sglang_nb` (enabled by the config file the package installs).

Routes under `{base_url}sglang_nb/`: `status`, `cache`, `events` (websocket), and, when this server
runs a runtime of its own (`c.SglangNbApp.start_runtime = True`), the runtime's native and OpenAI
routes (`generate`, `v1/chat/completions`, `health`, `metrics`, ...) through the same handlers as
the standalone server, behind Jupyter's authentication and authorizer.

The runtime is an in-process Engine (its scheduler is a child process with a lifeline), started in
the background once the server's loop runs. With `share_with_kernels` it is also served on a loopback
port with a random API key and recorded in the registry, so `%sgl start` in any kernel of this
server attaches to it instead of loading a second model.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.extension.application import ExtensionApp
from tornado import web
from tornado.ioloop import IOLoop
from traitlets import Bool, Dict, Int, Unicode

from ._ext_handlers import CacheHandler, EventsHandler, JupyterAuth, StatusHandler
from ._registry import RuntimeRecord, process_create_time


class SglangNbApp(ExtensionApp):
    """sglang_nb in the Jupyter server: status, cache and events routes, and optionally a shared runtime."""

    name = "sglang_nb"
    load_other_extensions = True

    start_runtime = Bool(False, config=True, help=(
        "Start a model runtime inside this Jupyter server at start-up. Its native and OpenAI routes are "
        "served under {base_url}sglang_nb/ and, with share_with_kernels, every kernel of this server uses it."))
    model_path = Unicode(None, allow_none=True, config=True, help=(
        "Model the server's runtime serves (a path or a Hugging Face id); empty: the embedded "
        "SmolLM2-135M-Instruct."))
    server_args = Dict(config=True, help=(
        "Further runtime options, as ServerArgs keyword arguments, e.g. {'context_length': 4096, "
        "'max_running_requests': 16}."))
    share_with_kernels = Bool(True, config=True, help=(
        "Also serve the runtime on 127.0.0.1 (a free port, a random API key) and record it in the registry "
        "(jupyter_runtime_dir()/sglang_nb), so `%sgl start` in this server's kernels attaches to it."))
    poll_interval_ms = Int(1000, config=True, help="Milliseconds between two stats messages on the events websocket.")
    max_tree_nodes = Int(200, config=True, help="Default number of radix-tree nodes in a `cache` snapshot.")

    # ---- set-up ----------------------------------------------------------------------------------

    def initialize_settings(self) -> None:
        from sglang_nb.runtime.entrypoints.context import ServerContext

        # Handlers are mounted now and bound to this context, which is initialised once the engine runs
        # (until then the runtime routes answer 503/404 and say why).
        self.ctx: Any = ServerContext.__new__(ServerContext)
        self.ctx.cors = False  # read by the handlers' default headers even before initialisation
        self.runtime_state = "starting" if self.start_runtime else "off"
        self.runtime_error = ""
        self.engine: Any = None
        self._loopback: Any = None
        self._record: RuntimeRecord | None = None
        self._started_at = 0.0
        self.settings["sglang_nb_app"] = self
        self._start_task: asyncio.Future[None] | None = None
        if self.start_runtime:
            # Scheduled now, run once the server's loop runs (embedding hosts that never call the
            # extension start hook, like pytest-jupyter, get the runtime too).
            IOLoop.current().add_callback(self._begin_runtime)

    def initialize_handlers(self) -> None:
        from sglang_nb.runtime.entrypoints.http_server import make_handlers

        self.handlers.extend([
            ("sglang_nb/status", StatusHandler),
            ("sglang_nb/cache", CacheHandler),
            ("sglang_nb/events", EventsHandler),
        ])
        # Relative patterns: ExtensionApp joins them onto the server's base_url.
        self.handlers.extend(make_handlers(self.ctx, "sglang_nb", bases=(JupyterAuth,),
                                           decorators=(web.authenticated, authorized), cors=False))

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        self._begin_runtime()

    def _begin_runtime(self) -> None:
        if self.start_runtime and self._start_task is None:
            self._start_task = asyncio.ensure_future(self._start_runtime())

    # ---- the shared runtime ------------------------------------------------------------------------

    async def _start_runtime(self) -> None:
        from sglang_nb.runtime.engine import Engine
        from sglang_nb.runtime.server_args import ServerArgs

        t0 = time.monotonic()
        try:
            args = ServerArgs.from_kwargs(**{"log_level": "warning", **self.server_args,
                                             **({"model_path": self.model_path} if self.model_path else {})})
            # The engine loads in a worker thread and then runs on its own loop: Jupyter's loop never blocks.
            self.engine = await asyncio.get_running_loop().run_in_executor(None, lambda: Engine(args))
            self.ctx.__init__(self.engine, api_key="", cors=False)
            if self.share_with_kernels:
                self._share()
        except Exception as e:  # noqa: BLE001 - reported by `status` and the routes, the server keeps running
            self.runtime_state, self.runtime_error = "failed", f"{type(e).__name__}: {e}"
            self.log.error("sglang_nb: the runtime failed to start: %s", self.runtime_error)
            return
        self._started_at = time.time()
        self.runtime_state = "ready"
        self.log.info("sglang_nb: runtime ready (%s) in %.1f s", self.ctx.model_name, time.monotonic() - t0)

    def _share(self) -> None:
        """Serve the same engine on 127.0.0.1:<free port> with a random key and register it for kernels."""
        from tornado.httpserver import HTTPServer
        from tornado.netutil import bind_sockets

        from sglang_nb.runtime.entrypoints.context import ServerContext
        from sglang_nb.runtime.entrypoints.http_server import make_app, server_url

        key = secrets.token_urlsafe(24)
        sockets = bind_sockets(0, "127.0.0.1")
        self._loopback = HTTPServer(make_app(ServerContext(self.engine, api_key=key)))
        self._loopback.add_sockets(sockets)
        pid = os.getpid()
        scheduler_pid = self.engine.scheduler.proc.pid
        self._record = RuntimeRecord(
            id=f"server-{uuid.uuid4().hex[:8]}", url=server_url("127.0.0.1", sockets[0].getsockname()[1]),
            api_key=key, pid=pid, pgid=os.getpgrp(), create_time=process_create_time(pid) or 0.0,
            model=self.ctx.model_name, log_path="", owner_kind="server", owner_pid=pid,
            owner_create_time=process_create_time(pid) or 0.0, child_pgids=[scheduler_pid])
        self._record.save()

    def ctx_ready(self) -> bool:
        return self.runtime_state == "ready"

    def runtime_unavailable_reason(self) -> str:
        if self.runtime_state == "failed":
            return f"The sglang_nb runtime of this Jupyter server failed to start: {self.runtime_error}"
        return ("This Jupyter server runs no sglang_nb runtime: set c.SglangNbApp.start_runtime = True "
                "(or use `%sgl start` in a kernel).")

    async def runtime_status(self) -> dict[str, Any] | None:
        """This server's runtime for `status`: state, model, loopback URL and live counters."""
        if self.runtime_state == "off":
            return None
        info: dict[str, Any] = {"state": self.runtime_state}
        if self.runtime_state == "failed":
            info["error"] = self.runtime_error
        if self.ctx_ready():
            state = await self.ctx.internal_state()
            info.update(model=self.ctx.model_name, uptime_s=round(time.time() - self._started_at, 1),
                        shared_url=self._record.url if self._record else None, running=state["num_running_reqs"],
                        queued=state["num_waiting_reqs"], cache_hit_rate=state["cache_hit_rate"])
        return info

    async def stop_extension(self) -> None:
        """Stop the runtime at server shutdown: loopback server, registry record, engine."""
        task = self._start_task
        if task is not None and not task.done():
            task.cancel()
        if self._loopback is not None:
            self._loopback.stop()
            self._loopback = None
        if self._record is not None:
            self._record.remove()
            self._record = None
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await asyncio.get_running_loop().run_in_executor(None, engine.shutdown)
        self.runtime_state = "off" if not self.start_runtime else "stopped"


__all__ = ["SglangNbApp"]
