"""`python -m sglang_nb.launch_server [--model-path M] [--host H] [--port P] [...]`: serve the native
and OpenAI-compatible HTTP APIs.

Every ServerArgs flag is accepted (SGLang spellings and the older aliases). Without --model-path the
embedded SmolLM2-135M-Instruct is served. `--stdin-lifeline` makes the server exit when its stdin
closes (for launchers that must never leave a server behind). SIGINT/SIGTERM shut it down cleanly,
scheduler processes included.
"""

from __future__ import annotations

import argparse
import sys

from sglang_nb.runtime.entrypoints.http_server import launch_server
from sglang_nb.runtime.server_args import ServerArgs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sglang_nb.launch_server",
                                     description="Serve a model over HTTP (native /generate and OpenAI /v1).")
    ServerArgs.add_cli_args(parser)
    parser.add_argument("--stdin-lifeline", action="store_true",
                        help="Exit when standard input reaches end-of-file (the parent closed it or died).")
    args = parser.parse_args(argv)
    server_args = ServerArgs.from_cli_args(args)
    try:
        launch_server(server_args, stdin_lifeline=args.stdin_lifeline)
    except KeyboardInterrupt:
        return 130
    except ValueError as e:  # a bad flag value, named by ServerArgs.check()
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["launch_server", "main"]

if __name__ == "__main__":
    sys.exit(main())
