"""`python -m sglang_nb.bench_one_batch`: static-batch latency (see sglang_nb.runtime.bench.bench_one_batch)."""

from __future__ import annotations

from sglang_nb.runtime.bench.bench_one_batch import main

if __name__ == "__main__":
    main()
