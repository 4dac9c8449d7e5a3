"""`python -m sglang_nb.launch_server [--model-path M] [--host H] [--port P] [...]`: serve the native
and OpenAI-compatible HTTP APIs.

Every ServerArgs flag is accepted (SGLang spellings and the older aliases). Without --model-path the
embedded SmolLM2-135M-Instruct is served. `--stdin-lifeline` makes the server exit when its stdin
closes (for launchers that must never leave a server behind). Without --api-key the environment
variable SGLANG_NB_API_KEY, when set, is the key. `--ready-file PATH` writes
`{"url", "port", "pid"}` there once the server answers (with `--port 0` the OS picks the port, so a
launcher learns it from this file). SIGINT/SIGTERM shut it down cleanly, scheduler processes included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import urlsplit

from sglang_nb.runtime.entrypoints.http_server import launch_server
from sglang_nb.runtime.server_args import ServerArgs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sglang_nb.launch_server",
                                     description="Serve a model over HTTP (native /generate and OpenAI /v1).")
    ServerArgs.add_cli_args(parser)
    parser.add_argument("--stdin-lifeline", action="store_true",
                        help="Exit when standard input reaches end-of-file (the parent closed it or died).")
    parser.add_argument("--ready-file", default=None,
                        help='Write {"url", "port", "pid"} as JSON to this path once the server is ready.')
    args = parser.parse_args(argv)
    server_args = ServerArgs.from_cli_args(args)
    if server_args.api_key is None and os.environ.get("SGLANG_NB_API_KEY"):
        server_args.api_key = os.environ["SGLANG_NB_API_KEY"]  # keeps the key out of the process list
    try:
        on_ready = (lambda url: _write_ready_file(args.ready_file, url)) if args.ready_file else None
        launch_server(server_args, stdin_lifeline=args.stdin_lifeline, on_ready=on_ready)
    except KeyboardInterrupt:
        return 130
    except ValueError as e:  # a bad flag value, named by ServerArgs.check()
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _write_ready_file(path: str, url: str) -> None:
    """Atomically publish where the server listens (the reader never sees a half-written file)."""
    info = {"url": url, "port": urlsplit(url).port, "pid": os.getpid()}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


__all__ = ["launch_server", "main"]

if __name__ == "__main__":
    sys.exit(main())
