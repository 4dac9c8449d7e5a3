"""`python -m sglang_nb [PROMPT]`: answer one chat prompt with the engine, streaming to stdout.

Without --model-path this runs the embedded SmolLM2-135M-Instruct on the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from sglang_nb.runtime.engine import Engine
    from sglang_nb.runtime.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="python -m sglang_nb", description=__doc__)
    parser.add_argument("prompt", nargs="?", default="What is the capital of France?")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    ServerArgs.add_cli_args(parser)
    args = parser.parse_args(argv)
    server_args = ServerArgs.from_cli_args(args)
    if "--log-level" not in (argv or sys.argv):
        server_args.log_level = "warning"
    t0 = time.perf_counter()
    with Engine(server_args=server_args) as engine:
        load_s = time.perf_counter() - t0
        prompt = args.prompt
        tok = engine.get_tokenizer()
        if not args.raw and tok is not None and tok.chat_template:
            prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             tokenize=False)
        params = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}
        t1 = time.perf_counter()
        tokens = 0
        for chunk in engine.generate(prompt, params, stream=True):
            sys.stdout.write(chunk["text"])
            sys.stdout.flush()
            tokens = chunk["meta_info"]["completion_tokens"]
        dt = time.perf_counter() - t1
        print(f"\n[{engine.get_model_info()['model_path']}: loaded in {load_s:.1f} s, "
              f"{tokens} tokens in {dt:.2f} s ({tokens / dt:.1f} tok/s)]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
