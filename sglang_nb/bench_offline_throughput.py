"""`python -m sglang_nb.bench_offline_throughput` (see sglang_nb.runtime.bench.bench_offline_throughput)."""

from __future__ import annotations

from sglang_nb.runtime.bench.bench_offline_throughput import main

if __name__ == "__main__":
    main()
