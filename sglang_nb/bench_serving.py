"""`python -m sglang_nb.bench_serving` (see sglang_nb.runtime.bench.bench_serving)."""

from __future__ import annotations

import sys

from sglang_nb.runtime.bench.bench_serving import main

if __name__ == "__main__":
    sys.exit(main())
