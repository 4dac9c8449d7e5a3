"""Handlers of the Jupyter server extension, all under `{base_url}sglang_nb/`.

- The runtime's own routes (`generate`, `v1/...`, `health`, `metrics`, `flush_cache`, ...): the very
  handlers of the standalone server (`make_handlers`), with `JupyterAuth` mixed in front so that
  Jupyter's login (token, cookie + XSRF) and authorizer guard them.
- `status`: the runtimes this server knows (its own and those in the registry).
- `cache`: a radix-cache snapshot of one of them.
- `events`: a websocket pushing live stats; it takes `flush` and `abort` commands.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import TYPE_CHECKING, Any, cast

import httpx
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ._registry import RuntimeRecord, load_records
from .widgets._stats import kpis

if TYPE_CHECKING:
    from .server_extension import SglangNbApp

AUTH_RESOURCE = "sglang_nb"


class JupyterAuth(JupyterHandler):
    """The host base of the runtime's handlers (after them in the MRO; their `prepare` calls this one).

    Jupyter authenticates (token, or cookie + XSRF); unauthenticated API calls get a 403 (no login
    redirect); while the extension's runtime is not running the routes answer 503 (starting) or 404
    (this server runs none) with the reason. Errors keep the runtime's JSON envelope.
    """

    auth_resource = AUTH_RESOURCE
    ctx: Any  # the runtime's ServerContext, set by the initialize() of the runtime handler in front

    def get_login_url(self) -> str:
        raise web.HTTPError(403)

    def set_default_headers(self) -> None:
        JupyterHandler.set_default_headers(self)

    async def prepare(self) -> None:  # type: ignore[override]
        rest: Any = await JupyterHandler.prepare(self)  # login, XSRF
        if self._finished:
            _discard(rest)
            return
        if self.current_user is None:  # no details about the runtime for anonymous callers
            _discard(rest)
            raise web.HTTPError(403)
        if getattr(self.ctx, "engine", None) is None:  # the shared ServerContext is not initialised yet
            _discard(rest)
            app = self.settings.get("sglang_nb_app")
            starting = app is not None and app.runtime_state == "starting"
            self.set_status(503 if starting else 404)
            self.set_header("Content-Type", "application/json")
            message = ("The sglang_nb runtime of this Jupyter server is starting; retry in a few seconds."
                       if starting else app.runtime_unavailable_reason() if app is not None else "No runtime.")
            self.finish(json.dumps({"error": {"message": message}}))
            return
        while inspect.isawaitable(rest):
            rest = await rest


def _discard(awaitable: Any) -> None:
    if inspect.iscoroutine(awaitable):
        awaitable.close()


# ---- where cache state comes from: the extension's engine or a registered runtime ----------------


class _Source:
    async def state(self, tree: bool, max_nodes: int) -> dict[str, Any]:
        raise NotImplementedError

    async def flush(self) -> tuple[bool, str]:
        raise NotImplementedError

    async def abort(self, rid: str) -> None:
        raise NotImplementedError


class _EngineSource(_Source):
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    async def state(self, tree: bool, max_nodes: int) -> dict[str, Any]:
        return dict(await self.ctx.internal_state(tree, max_nodes))

    async def flush(self) -> tuple[bool, str]:
        if self.ctx.num_active() > 0:
            return False, "requests are running or waiting"
        out = await self.ctx.flush_cache()
        return bool(out.success), "flushed" if out.success else "refused by the runtime"

    async def abort(self, rid: str) -> None:
        self.ctx.abort(rid)


class _HttpSource(_Source):
    def __init__(self, record: RuntimeRecord) -> None:
        self.record = record
        self.headers = {"Authorization": f"Bearer {record.api_key}"}

    async def _call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0), headers=self.headers) as client:
            return await client.request(method, self.record.url + path, json=body)

    async def state(self, tree: bool, max_nodes: int) -> dict[str, Any]:
        response = await self._call("GET", f"/cache_state?tree={int(tree)}&max_nodes={max_nodes}")
        if response.status_code != 200:
            raise web.HTTPError(502, f"runtime {self.record.id} answered {response.status_code}")
        return dict(response.json())

    async def flush(self) -> tuple[bool, str]:
        response = await self._call("POST", "/flush_cache")
        return response.status_code == 200, "flushed" if response.status_code == 200 else "requests are running"

    async def abort(self, rid: str) -> None:
        await self._call("POST", "/abort_request", {"abort_all": True} if not rid else {"rid": rid})


def pick_source(app: Any, runtime_id: str | None) -> _Source:
    """The extension's own runtime by default, else the registered runtime `runtime_id` (or the only one)."""
    if runtime_id in (None, "", "server") and app.ctx_ready():
        return _EngineSource(app.ctx)
    live = [r for r in load_records() if r.runtime_alive() and (not runtime_id or r.id == runtime_id)]
    if runtime_id and not live:
        raise web.HTTPError(404, f"No runtime {runtime_id!r}; GET sglang_nb/status lists them.")
    if not live:
        raise web.HTTPError(404, "No runtime is running: start one in a kernel (`%sgl start`) or set "
                                 "c.SglangNbApp.start_runtime = True.")
    return _HttpSource(live[0])


# ---- the extension's own routes --------------------------------------------------------------------


class _ExtAPIHandler(ExtensionHandlerMixin, APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def app(self) -> Any:
        return self.extensionapp


class StatusHandler(_ExtAPIHandler):
    """`GET status`: this server's runtime (if any) and every runtime in the registry."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        runtimes = [r.public() for r in load_records()]
        self.finish(json.dumps({"server_runtime": await self.app.runtime_status(), "runtimes": runtimes}))


class CacheHandler(_ExtAPIHandler):
    """`GET cache?runtime=ID&max_nodes=N`: counters, KPIs and a bounded radix-tree snapshot."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        raw = self.get_query_argument("max_nodes", str(self.app.max_tree_nodes))
        if not raw.isdigit() or not 1 <= int(raw) <= 10000:
            raise web.HTTPError(400, f"max_nodes must be an integer in [1, 10000], got {raw!r}.")
        source = pick_source(self.app, self.get_query_argument("runtime", None))
        state = await source.state(True, int(raw))
        self.finish(json.dumps({**state, "kpis": kpis(state, None, 0.0)}))


class EventsHandler(ExtensionHandlerMixin, JupyterHandler, WebSocketHandler):
    """`WS events?runtime=ID`: `{"type": "stats", ...}` every poll interval; send `{"type": "flush"}`
    or `{"type": "abort", "rid": "..."}` (empty rid: all) and get `{"type": "result", ...}` back."""

    auth_resource = AUTH_RESOURCE

    @ws_authenticated
    @authorized
    async def get(self, *args: Any, **kwargs: Any) -> None:
        self.source = pick_source(self.extensionapp, self.get_query_argument("runtime", None))
        await WebSocketHandler.get(self, *args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self._task = asyncio.ensure_future(self._push())

    async def _push(self) -> None:
        prev: tuple[dict[str, Any], float] | None = None
        loop = asyncio.get_running_loop()
        app = cast("SglangNbApp", self.extensionapp)
        while True:
            try:
                state = await self.source.state(False, 1)
            except Exception as e:  # noqa: BLE001 - reported to the client, the socket stays open
                await self._send({"type": "error", "message": str(e)})
            else:
                now = loop.time()
                stats = kpis(state, prev[0] if prev else None, now - prev[1] if prev else 0.0)
                prev = (state, now)
                if not await self._send({"type": "stats", **stats}):
                    return
            await asyncio.sleep(app.poll_interval_ms / 1000)

    async def _send(self, message: dict[str, Any]) -> bool:
        try:
            await self.write_message(json.dumps(message))
            return True
        except WebSocketClosedError:
            return False

    async def on_message(self, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
            kind = msg.get("type")
        except (ValueError, AttributeError):
            await self._send({"type": "error", "message": "send JSON: {\"type\": \"flush\"} or {\"type\": \"abort\"}"})
            return
        if kind == "flush":
            ok, detail = await self.source.flush()
            await self._send({"type": "result", "command": "flush", "success": ok, "message": detail})
        elif kind == "abort":
            await self.source.abort(str(msg.get("rid") or ""))
            await self._send({"type": "result", "command": "abort", "success": True, "message": "aborted"})
        else:
            await self._send({"type": "error", "message": f"unknown command {kind!r}; use flush or abort"})

    def on_close(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()


__all__ = ["CacheHandler", "EventsHandler", "JupyterAuth", "StatusHandler", "pick_source"]
