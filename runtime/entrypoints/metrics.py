"""Prometheus metrics for `GET /metrics`, with SGLang's series names (`sglang:*`).

Per-request latencies (TTFT, inter-token latency, TPOT, end-to-end) come from the
TokenizerManager's update hook; pool and queue gauges are refreshed from the scheduler's internal
state at scrape time. Each server has its own registry, so several servers (or a server and the
Jupyter extension) can live in one process.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0)
_ITL_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0)
_E2E_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)
THROUGHPUT_WINDOW_S = 10.0
LIVE_LIMIT = 4096  # tracked in-flight requests before stale ones are dropped
STALE_AFTER_S = 600.0
CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass
class _Live:
    tokens: int
    last: float


class ServerMetrics:
    """Counters, gauges and histograms of one served model."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        self.labels = {"model_name": model_name}
        names = ["model_name"]
        reg = self.registry

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, names, registry=reg).labels(**self.labels)

        def gauge(name: str, doc: str) -> Any:
            return Gauge(name, doc, names, registry=reg).labels(**self.labels)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Any:
            return Histogram(name, doc, names, buckets=buckets, registry=reg).labels(**self.labels)

        self.prompt_tokens = counter("sglang:prompt_tokens", "Prompt tokens of finished requests.")
        self.generation_tokens = counter("sglang:generation_tokens", "Generated tokens.")
        self.cached_tokens = counter("sglang:cached_tokens", "Prompt tokens served from the prefix cache.")
        self.num_requests = counter("sglang:num_requests", "Finished requests.")
        self.num_aborted = counter("sglang:num_aborted_requests", "Aborted requests.")
        self.num_running = gauge("sglang:num_running_reqs", "Requests in the running batch.")
        self.num_queue = gauge("sglang:num_queue_reqs", "Requests waiting to be scheduled.")
        self.num_used_tokens = gauge("sglang:num_used_tokens", "KV slots held by running requests.")
        self.token_usage = gauge("sglang:token_usage", "Fraction of the KV pool held by running requests.")
        self.max_total_tokens = gauge("sglang:max_total_num_tokens", "KV pool size in tokens.")
        self.evictable_tokens = gauge("sglang:evictable_tokens", "KV slots held only by the prefix cache.")
        self.cache_hit_rate = gauge("sglang:cache_hit_rate", "Prompt tokens served from the prefix cache / all.")
        self.gen_throughput_gauge = gauge("sglang:gen_throughput", "Generated tokens per second (recent).")
        self.ttft = histogram("sglang:time_to_first_token_seconds", "Time to first token.", _TTFT_BUCKETS)
        self.itl = histogram("sglang:inter_token_latency_seconds", "Time between output tokens.", _ITL_BUCKETS)
        self.tpot = histogram("sglang:time_per_output_token_seconds", "Decode time per output token.", _ITL_BUCKETS)
        self.e2e = histogram("sglang:e2e_request_latency_seconds", "Request latency.", _E2E_BUCKETS)
        self._lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._recent: deque[tuple[float, int]] = deque()
        self._started = time.perf_counter()

    def on_request_update(self, st: Any, finished: bool) -> None:
        """TokenizerManager hook: one call per output update of a request (any thread)."""
        if st.index < 0:
            return  # internal prefix-caching request of n > 1 sampling
        now = st.last_token_time or time.perf_counter()
        with self._lock:
            if st.rid not in self._live and len(self._live) >= LIVE_LIMIT:
                self._forget_stale(now)
            rec = self._live.setdefault(st.rid, _Live(0, st.created))
            new = st.completion_tokens - rec.tokens
            if new > 0:
                if rec.tokens == 0 and st.first_token_time is not None:
                    self.ttft.observe(st.first_token_time - st.created)
                else:
                    gap = (now - rec.last) / new
                    for _ in range(new):
                        self.itl.observe(gap)
                rec.tokens, rec.last = st.completion_tokens, now
                self.generation_tokens.inc(new)
                self._recent.append((now, new))
            if not finished:
                return
            del self._live[st.rid]
        self.num_requests.inc()
        self.prompt_tokens.inc(st.prompt_tokens)
        self.cached_tokens.inc(st.cached_tokens)
        self.e2e.observe(time.perf_counter() - st.created)
        if st.completion_tokens > 1 and st.first_token_time is not None and st.last_token_time is not None:
            self.tpot.observe((st.last_token_time - st.first_token_time) / (st.completion_tokens - 1))
        if (st.finish_reason or {}).get("type") == "abort":
            self.num_aborted.inc()

    def _forget_stale(self, now: float) -> None:
        """Drop requests not heard of for a while (aborted ones whose last update never came)."""
        for rid in [rid for rid, rec in self._live.items() if now - rec.last > STALE_AFTER_S]:
            del self._live[rid]

    def gen_throughput(self) -> float:
        """Generated tokens per second over the last THROUGHPUT_WINDOW_S seconds."""
        now = time.perf_counter()
        with self._lock:
            while self._recent and self._recent[0][0] < now - THROUGHPUT_WINDOW_S:
                self._recent.popleft()
            tokens = sum(n for _, n in self._recent)
        span = min(THROUGHPUT_WINDOW_S, max(now - self._started, 1e-3))
        return tokens / span

    def render(self, state: dict[str, Any]) -> bytes:
        """Prometheus text exposition, with gauges refreshed from the scheduler `state`."""
        self.num_running.set(state.get("num_running_reqs", 0))
        self.num_queue.set(state.get("num_waiting_reqs", 0))
        self.num_used_tokens.set(state.get("used_kv_tokens", 0))
        self.token_usage.set(state.get("token_usage", 0.0))
        self.max_total_tokens.set(state.get("max_total_num_tokens", 0))
        self.evictable_tokens.set(state.get("evictable_kv_tokens", 0))
        self.cache_hit_rate.set(state.get("cache_hit_rate", 0.0))
        self.gen_throughput_gauge.set(self.gen_throughput())
        return bytes(generate_latest(self.registry))
