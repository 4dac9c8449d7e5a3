"""BaseHandler: request body limits, JSON parsing, API-key auth, CORS, error envelopes, SSE, and
abort-on-disconnect, shared by the native and the OpenAI-compatible handlers.

Bodies are streamed (`stream_request_body`) so that an oversized upload is refused with a JSON 413
as soon as its headers arrive, instead of tornado's bare 400.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, RequestHandler, stream_request_body

from ..managers.tokenizer_manager import RequestError
from .context import ServerContext
from .protocol import ApiError

logger = logging.getLogger(__name__)


def dumps(obj: Any, nan_as: Any = None) -> str:
    """Compact JSON; non-finite floats (e.g. a -inf logprob) become `nan_as` so the JSON stays valid."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj, nan_as), ensure_ascii=False, separators=(",", ":"))


def _finite(obj: Any, nan_as: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return nan_as
    if isinstance(obj, dict):
        return {k: _finite(v, nan_as) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, nan_as) for v in obj]
    return obj


@stream_request_body
class BaseHandler(RequestHandler):
    """Common behaviour; subclasses set `openai_errors` to choose the error envelope."""

    openai_errors = False
    #: Value written for non-finite floats in responses (OpenAI clients expect numbers).
    nan_as: Any = None
    #: Paths under the mount prefix that need no API key.
    open_paths = ("health",)

    def initialize(self, ctx: ServerContext, prefix: str = "", **host_kwargs: Any) -> None:  # type: ignore[override]
        self.ctx = ctx
        self.prefix = prefix
        super().initialize(**host_kwargs)  # a mixed-in host base may take its own arguments
        self._body = bytearray()
        self._work: asyncio.Future[Any] | None = None
        self._client_gone = False

    # ---- request intake ----------------------------------------------------------------------

    def set_default_headers(self) -> None:
        super().set_default_headers()
        if getattr(self, "ctx", None) is not None and self.ctx.cors:
            self.set_header("Access-Control-Allow-Origin", "*")
            self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
            self.set_header("Access-Control-Allow-Headers", "*")

    async def prepare(self) -> None:
        parent = super().prepare()
        if parent is not None:  # a mixed-in base (e.g. Jupyter's) may do its own async checks
            await parent
        if self._finished:
            return
        if self.request.method != "OPTIONS" and not self._authorized():
            self.set_status(401)
            self.set_header("Content-Type", "application/json")
            self.finish(dumps({"error": "Unauthorized"}))
            return
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.ctx.max_body_bytes:
            self._refuse_large_body()

    def _authorized(self) -> bool:
        key = self.ctx.api_key
        if not key:
            return True
        path = self.request.path
        # The prefix may be relative (a host joins it onto its base URL): look for it anywhere.
        at = path.find(self.prefix) if self.prefix else -1
        rel = (path[at + len(self.prefix):] if at >= 0 else path).lstrip("/")
        if rel.startswith(self.open_paths):
            return True
        return hmac.compare_digest(self.request.headers.get("Authorization", "").encode(), f"Bearer {key}".encode())

    def _refuse_large_body(self) -> None:
        self.send_error_json(413, f"Request body too large: the limit is {self.ctx.max_body_bytes} bytes "
                                  "(--max-request-body-bytes).", param="body")

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return  # already answered (413/401); tornado discards the rest and closes
        self._body.extend(chunk)
        if len(self._body) > self.ctx.max_body_bytes:
            self._refuse_large_body()

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def body_json(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 that says what is wrong with it."""
        raw = self.body
        if not raw.strip():
            raise ApiError("The request body is empty; expected a JSON object.", param="body")
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(f"Invalid JSON in request body: {e}", param="body") from None
        if not isinstance(value, dict):
            raise ApiError(f"The request body must be a JSON object, got {type(value).__name__}.", param="body")
        return value

    def options(self, *args: Any) -> None:
        self.set_status(204)
        self.finish()

    # ---- responses ---------------------------------------------------------------------------

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(obj, self.nan_as))

    def send_error_json(self, status: int, message: str, param: str | None = None,
                        err_type: str | None = None) -> None:
        """Answer with this route's error envelope (no-op if the response already started)."""
        if self._finished or self._headers_written:
            return
        self.write_json(self.error_body(status, message, param, err_type), status)

    def error_body(self, status: int, message: str, param: str | None = None,
                   err_type: str | None = None) -> dict[str, Any]:
        if not self.openai_errors:
            return {"error": {"message": message}}
        kind = err_type or _ERROR_TYPES.get(status, "BadRequestError" if status < 500 else "InternalServerError")
        err = {"message": message, "type": kind, "param": param, "code": status}
        # OpenAI's nested form plus SGLang's flat one, so clients of either find the fields.
        return {"object": "error", **err, "error": err}

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, message, param = _describe(exc, status_code, self._reason)
        if self._headers_written:
            return
        self.set_header("Content-Type", "application/json")
        self.set_status(status)
        self.finish(dumps(self.error_body(status, message, param)))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, (ApiError, ValueError, HTTPError)):
            logger.info("%s %s -> %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)

    # ---- disconnects and streaming -----------------------------------------------------------

    def on_connection_close(self) -> None:
        # The client went away: cancelling the work closes its generation stream, which aborts
        # the request in the scheduler and frees its KV slots.
        self._client_gone = True
        if self._work is not None and not self._work.done():
            self._work.cancel()

    async def run_cancellable(self, coro: Awaitable[Any]) -> None:
        """Run a handler body so that a client disconnect cancels it (and aborts its requests)."""
        self._work = asyncio.ensure_future(coro)
        try:
            await self._work
        except asyncio.CancelledError:
            if not self._client_gone:
                raise
        except StreamClosedError:
            self._client_gone = True

    def start_sse(self) -> None:
        self.set_status(200)
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def send_event(self, obj: Any) -> None:
        """One SSE event `data: <json>`; raises StreamClosedError when the client is gone."""
        data = obj if isinstance(obj, str) else dumps(obj, self.nan_as)
        self.write(f"data: {data}\n\n")
        await self.flush()

    async def finish_sse(self) -> None:
        await self.send_event("[DONE]")
        self.finish()

    async def stream_error(self, exc: BaseException) -> None:
        """An error after the stream started: one error event, then [DONE] (status is already 200)."""
        status, message, param = _describe(exc, 500, None)
        body = self.error_body(status, message, param)
        await self.send_event({"error": body.get("error", body)} if self.openai_errors else body)
        await self.finish_sse()


async def first_item(gen: AsyncIterator[Any]) -> Any:
    """Await a stream's first item: validation errors surface here, before any header is sent."""
    async for item in gen:
        return item
    raise RuntimeError("The engine returned no output.")


def closing(gen: AsyncIterator[Any]) -> aclosing[Any]:
    """`async with closing(gen)`: a generation stream left early is closed at once (aborting it)."""
    return aclosing(gen)  # type: ignore[type-var]


_ERROR_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError",
                405: "MethodNotAllowed", 413: "RequestTooLarge", 503: "ServiceUnavailable"}


def _describe(exc: BaseException | None, status: int, reason: str | None) -> tuple[int, str, str | None]:
    """(status, message, param) for an exception raised while handling a request."""
    if isinstance(exc, ApiError):
        return exc.status, exc.message, exc.param
    if isinstance(exc, RequestError):
        return exc.status_code, str(exc), None
    if isinstance(exc, ValueError):
        return 400, str(exc), None
    if isinstance(exc, HTTPError):
        return exc.status_code, exc.log_message or reason or "HTTP error", None
    if exc is None:
        return status, reason or "Error", None
    logger.error("Unhandled error: %r", exc)
    return 500, f"Internal server error: {type(exc).__name__}: {exc}", None
