"""`python -m sglang_nb.bench_serving` against the shared server: SGLang's report and JSONL record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from http_helpers import ServerProcess

LABELS = ["Backend:", "Traffic request rate:", "Max request concurrency:", "Successful requests:",
          "Benchmark duration (s):", "Total input tokens:", "Total generated tokens:",
          "Total generated tokens (retokenized):", "Request throughput (req/s):", "Input token throughput (tok/s):",
          "Output token throughput (tok/s):", "Total token throughput (tok/s):", "Concurrency:",
          "Mean E2E Latency (ms):", "Median E2E Latency (ms):", "P99 E2E Latency (ms):", "Mean TTFT (ms):",
          "Median TTFT (ms):", "P99 TTFT (ms):", "Mean TPOT (ms):", "Median TPOT (ms):", "P99 TPOT (ms):",
          "Mean ITL (ms):", "Median ITL (ms):", "P95 ITL (ms):", "P99 ITL (ms):", "Max ITL (ms):"]


def _bench(server: ServerProcess, out: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "sglang_nb.bench_serving", "--base-url", server.url, "--num-prompts", "4",
           "--disable-tqdm", "--output-file", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_random_dataset_native_backend(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    text = _bench(server, out, "--backend", "sglang", "--dataset-name", "random", "--random-input-len", "16",
                  "--random-output-len", "4", "--random-range-ratio", "1.0", "--request-rate", "8", "--max-concurrency", "2")
    assert " Serving Benchmark Result " in text
    for label in LABELS:
        assert label in text, label
    record = json.loads(out.read_text().splitlines()[-1])
    assert record["completed"] == 4 and record["max_concurrency"] == 2
    assert record["total_output_tokens"] == 16  # ignore_eos: exactly the requested lengths
    assert record["mean_ttft_ms"] > 0 and record["mean_itl_ms"] > 0 and record["mean_tpot_ms"] > 0


@pytest.mark.parametrize("backend", ["sglang-oai", "sglang-oai-chat"])
def test_sharegpt_file_openai_backends(server: ServerProcess, tmp_path: Path, backend: str) -> None:
    data = [{"conversations": [{"from": "human", "value": f"Tell me about the number {i} in a few words."},
                               {"from": "gpt", "value": f"The number {i} is a number."}]} for i in range(6)]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "bench.jsonl"
    text = _bench(server, out, "--backend", backend, "--dataset-name", "sharegpt", "--dataset-path", str(path),
                  "--sharegpt-output-len", "3")
    assert "Successful requests:                     4" in text
    record = json.loads(out.read_text())
    assert record["completed"] == 4 and record["backend"] == backend


def test_missing_dataset_file_is_a_clear_error(server: ServerProcess, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sglang_nb.bench_serving", "--base-url", server.url,
                           "--dataset-name", "sharegpt", "--num-prompts", "2"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 1 and "--dataset-path" in proc.stderr


def test_profile_flag_profiles_the_server(server: ServerProcess, tmp_path: Path) -> None:
    text = _bench(server, tmp_path / "bench.jsonl", "--backend", "sglang", "--dataset-name", "random",
                  "--random-input-len", "8", "--random-output-len", "2", "--random-range-ratio", "1.0", "--profile")
    assert "Start profiling." in text and "Stop profiling." in text
    trace = Path(text.split("Trace: ")[1].split()[0])
    assert trace.exists() and trace.name.endswith("-TP-0.trace.json.gz")
    trace.unlink()
    trace.with_name(trace.name.replace(".trace.json.gz", ".summary.txt")).unlink()
