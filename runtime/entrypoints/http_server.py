"""The HTTP server: the route table (`make_handlers`, mountable under any prefix, e.g. by the
Jupyter server extension under `{base_url}sglang_nb/`), the tornado Application, and
`launch_server`, which runs an Engine and the API on one loop until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from . import files_batches as fb
from . import native_api as na
from . import openai_api as oa
from .context import ServerContext
from .handler_base import closing, first_item

if TYPE_CHECKING:
    from ..engine import Engine
    from ..server_args import ServerArgs

logger = logging.getLogger(__name__)

ROUTES: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    ("/generate", na.GenerateHandler),
    ("/encode", na.EncodeHandler),
    ("/classify", na.EncodeHandler),
    ("/health", na.HealthHandler),
    ("/health_generate", na.HealthGenerateHandler),
    ("/get_model_info", na.ModelInfoHandler),
    ("/model_info", na.ModelInfoHandler),
    ("/get_server_info", na.ServerInfoHandler),
    ("/server_info", na.ServerInfoHandler),
    ("/get_server_args", na.ServerArgsHandler),
    ("/flush_cache", na.FlushCacheHandler),
    ("/start_profile", na.StartProfileHandler),
    ("/stop_profile", na.StopProfileHandler),
    ("/abort_request", na.AbortHandler),
    ("/tokenize", na.TokenizeHandler),
    ("/v1/tokenize", na.TokenizeHandler),
    ("/detokenize", na.DetokenizeHandler),
    ("/v1/detokenize", na.DetokenizeHandler),
    ("/get_load", na.LoadHandler),
    ("/metrics", na.MetricsHandler),
    ("/cache_state", na.CacheStateHandler),
    ("/v1/models", oa.ModelsHandler),
    ("/v1/models/(.+)", oa.ModelsHandler),
    ("/v1/completions", oa.CompletionsHandler),
    ("/v1/chat/completions", oa.ChatCompletionsHandler),
    ("/v1/embeddings", oa.EmbeddingsHandler),
    ("/v1/files", fb.FilesHandler),
    ("/v1/files/([^/]+)", fb.FileHandler),
    ("/v1/files/([^/]+)/content", fb.FileContentHandler),
    ("/v1/batches", fb.BatchesHandler),
    ("/v1/batches/([^/]+)", fb.BatchHandler),
    ("/v1/batches/([^/]+)/cancel", fb.BatchCancelHandler),
]
_METHODS = ("get", "post", "put", "delete")


def make_handlers(engine: Engine | ServerContext, prefix: str = "", *,
                  bases: Sequence[type] = (), decorators: Sequence[Callable[[Any], Any]] = (),
                  cors: bool = True, init_kwargs: dict[str, Any] | None = None,
                  ) -> list[tuple[str, type, dict[str, Any]]]:
    """Tornado rules for every route under `prefix` (no trailing slash, e.g. "/user/x/sglang_nb").

    A host application puts the same handlers behind its own authentication: `bases` (e.g.
    Jupyter's `APIHandler`) come after our handler classes in the MRO, so their `prepare`
    (login, XSRF) runs from ours and our JSON error envelopes stay; `decorators` wrap each HTTP
    method (e.g. `tornado.web.authenticated`, `authorized`); `init_kwargs` go to the bases'
    `initialize`. The engine may run its TokenizerManager on the host's loop or on its own loop.
    """
    ctx = engine if isinstance(engine, ServerContext) else ServerContext(engine, cors=cors)
    prefix = prefix.rstrip("/")
    rules = []
    for path, cls in ROUTES:
        handler = _derive(cls, bases, decorators) if bases or decorators else cls
        rules.append((re.escape(prefix) + path, handler, {"ctx": ctx, "prefix": prefix, **(init_kwargs or {})}))
    return rules


def _derive(cls: type, bases: Sequence[type], decorators: Sequence[Callable[[Any], Any]]) -> type:
    attrs: dict[str, Any] = {}
    for name in _METHODS:
        method = getattr(cls, name, None)
        if method is None or method is getattr(tornado.web.RequestHandler, name):
            continue
        for deco in reversed(decorators):
            method = deco(method)
        attrs[name] = method
    return type(cls.__name__, (cls, *bases), attrs)


def make_app(ctx: ServerContext, prefix: str = "") -> tornado.web.Application:
    """The standalone Application: all routes, and a JSON 404 for anything else."""
    return tornado.web.Application(make_handlers(ctx, prefix), default_handler_class=na.NotFoundHandler,
                                   default_handler_args={"ctx": ctx, "prefix": prefix})


def server_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def launch_server(server_args: ServerArgs, *, stdin_lifeline: bool = False,
                  on_ready: Callable[[str], None] | None = None) -> None:
    """Start the engine and serve HTTP until SIGINT/SIGTERM (or stdin EOF with `stdin_lifeline`).

    Blocking. Model classes registered in `ModelRegistry` before this call reach the scheduler
    process. On exit the scheduler processes are stopped too.
    """
    from ..engine import Engine

    check_http_args(server_args)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # Loading takes a while; a signal now ends this process and the scheduler follows (stdin lifeline).
    engine = Engine(server_args, loop=loop)
    try:
        loop.run_until_complete(_serve(engine, server_args, stdin_lifeline, on_ready))
    finally:
        engine.shutdown()
        _cancel_pending(loop)
        loop.close()


def check_http_args(server_args: ServerArgs) -> None:
    """Reject HTTP-layer flags that cannot work before any model is loaded (ValueError naming the flag)."""
    from .chat_templates import BUILTIN_TEMPLATES
    from .reasoning_parser import KINDS as REASONING_KINDS
    from .tool_parser import FORMATS

    template = server_args.chat_template
    if template is not None and template not in BUILTIN_TEMPLATES and not os.path.isfile(template):
        raise ValueError(f"--chat-template: {template!r} is neither a built-in template "
                         f"({', '.join(sorted(BUILTIN_TEMPLATES))}) nor an existing .jinja/.json file.")
    if server_args.tool_call_parser is not None and server_args.tool_call_parser not in FORMATS:
        raise ValueError(f"--tool-call-parser: unknown format {server_args.tool_call_parser!r}; "
                         f"choose from {', '.join(FORMATS)}.")
    if server_args.reasoning_parser is not None and server_args.reasoning_parser not in REASONING_KINDS:
        raise ValueError(f"--reasoning-parser: unknown parser {server_args.reasoning_parser!r}; "
                         f"choose from {', '.join(REASONING_KINDS)}.")
    if server_args.max_request_body_bytes < 1024:
        raise ValueError(f"--max-request-body-bytes: must be at least 1024, got {server_args.max_request_body_bytes}.")


async def _serve(engine: Engine, server_args: ServerArgs, stdin_lifeline: bool,
                 on_ready: Callable[[str], None] | None) -> None:
    loop = asyncio.get_running_loop()
    await engine.start_on_current_loop()
    access = logging.getLogger("tornado.access")
    access.setLevel((server_args.log_level_http or ("info" if server_args.log_requests else "warning")).upper())
    ctx = ServerContext(engine, server_args)
    ctx.ready = False
    # Our handlers refuse oversized bodies with a JSON 413; tornado's own cap sits far above that.
    server = HTTPServer(make_app(ctx), max_body_size=max(ctx.max_body_bytes, 1) * 16, xheaders=False)
    try:
        sockets = bind_sockets(server_args.port, server_args.host)
    except OSError as e:
        raise SystemExit(f"Cannot listen on {server_args.host}:{server_args.port}: {e}") from None
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]  # the real port, also when --port 0 let the OS choose
    stop = asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    if stdin_lifeline:
        threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True, name="stdin-lifeline").start()
    if not server_args.skip_server_warmup:
        await _warmup(ctx)
    ctx.ready = True
    url = server_url(server_args.host, port)
    logger.info("The server is fired up and ready to roll!")
    print(f"sglang_nb server ready at {url} (model: {ctx.model_name})", flush=True)
    if on_ready is not None:
        on_ready(url)
    await stop.wait()
    logger.info("Shutting down")
    server.stop()
    ctx.abort("")
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
    except asyncio.TimeoutError:
        pass
    await engine.tokenizer_manager.stop()


async def _warmup(ctx: ServerContext) -> None:
    """One short greedy generation (SGLang's warm-up prompt), so the first user request is not slow."""
    from ..managers.io_struct import GenerateReqInput

    params = {"temperature": 0.0, "max_new_tokens": 8}
    obj = GenerateReqInput(input_ids=[10, 11, 12], sampling_params=params) if ctx.tokenizer is None \
        else GenerateReqInput(text="The capital city of France is", sampling_params=params)
    gen = ctx.generate(obj)
    async with closing(gen):
        await first_item(gen)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    try:
        # os.read, not sys.stdin.buffer: a daemon thread blocked inside the buffered reader makes the
        # interpreter abort at exit ("could not acquire lock for <stdin>") after a SIGTERM.
        while os.read(0, 1 << 16):
            pass
    except (OSError, ValueError):
        pass
    loop.call_soon_threadsafe(stop.set)


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


__all__ = ["ROUTES", "launch_server", "make_app", "make_handlers", "server_url"]
