"""Time from `%sgl start` (embedded model, CPU) to the first streamed token of a `%%sgl` cell.

    python benchmarks/bench_notebook_start.py [--cold]

`--cold` points SGLANG_NB_CACHE at an empty directory first, so the GGUF conversion is included
(the first-ever start); otherwise the converted model in the cache is reused (a warm start).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", action="store_true", help="start with an empty model cache")
    args = parser.parse_args()
    if args.cold:
        os.environ["SGLANG_NB_CACHE"] = tempfile.mkdtemp(prefix="sglang_nb_cold_")
    os.environ["SGLANG_NB_REGISTRY_DIR"] = tempfile.mkdtemp(prefix="sglang_nb_bench_")
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from sglang_nb._runtime import current_runtime

    config = Config()
    config.HistoryAccessor.enabled = False
    ip = InteractiveShell.instance(config=config)
    assert ip.extension_manager is not None  # InteractiveShell.__init__ creates it
    ip.extension_manager.load_extension("sglang_nb")
    first: list[float] = []
    real_write = sys.stdout.write

    def spy(text: str) -> int:
        if text and not first and not text.startswith("\r"):
            first.append(time.perf_counter())
        return real_write(text)

    t0 = time.perf_counter()
    ip.run_line_magic("sgl", "start")
    t_ready = time.perf_counter()
    sys.stdout.write = spy  # type: ignore[method-assign]
    try:
        ip.run_cell_magic("sgl", "--max-tokens 8", "What is the capital of France?")
    finally:
        sys.stdout.write = real_write  # type: ignore[method-assign]
    print(f"\n{'cold' if args.cold else 'warm'} start: ready in {t_ready - t0:.1f} s, first streamed token at "
          f"{first[0] - t0:.1f} s after %sgl start")
    rt = current_runtime()
    if rt is not None:
        rt.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
