"""`/start_profile` and `/stop_profile` on the shared server: a torch-profiler trace of the
scheduler's forward steps lands in the requested folder; misuse gets a 400 that says why."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest


def _gen(http: httpx.Client, n: int = 4) -> None:
    r = http.post("/generate", json={"text": "Count: one, two,", "sampling_params": {"max_new_tokens": n,
                                                                                     "temperature": 0}})
    assert r.status_code == 200, r.text


def test_profile_start_generate_stop_writes_a_trace(http: httpx.Client, tmp_path: Path) -> None:
    r = http.post("/start_profile", json={"output_dir": str(tmp_path), "activities": ["CPU"]})
    assert r.status_code == 200 and r.text.startswith("Start profiling."), r.text
    again = http.post("/start_profile", json={"output_dir": str(tmp_path)})
    assert again.status_code == 400 and "already in progress" in again.text
    _gen(http)
    r = http.post("/stop_profile")
    assert r.status_code == 200 and r.text.startswith("Stop profiling."), r.text
    traces = list(tmp_path.glob("*-TP-0.trace.json.gz"))
    assert len(traces) == 1
    events = json.loads(gzip.decompress(traces[0].read_bytes()))["traceEvents"]
    assert any("linear" in str(e.get("name", "")) or "mm" in str(e.get("name", "")) for e in events)
    summary = next(tmp_path.glob("*-TP-0.summary.txt")).read_text()
    assert "Self CPU" in summary
    stop_again = http.get("/stop_profile")
    assert stop_again.status_code == 400 and "not in progress" in stop_again.text


def test_profile_num_steps_stops_by_itself(http: httpx.Client, tmp_path: Path) -> None:
    r = http.get("/start_profile")  # GET with no body: defaults (SGLANG_TORCH_PROFILER_DIR or the cache)
    assert r.status_code == 200
    stopped = http.post("/stop_profile")
    assert stopped.status_code == 200
    trace = Path(stopped.text.split("Trace: ")[1].strip())
    assert trace.exists()
    trace.unlink()
    Path(str(trace).replace(".trace.json.gz", ".summary.txt")).unlink()
    r = http.post("/start_profile", json={"output_dir": str(tmp_path), "num_steps": 2, "start_step": 1})
    assert r.status_code == 200, r.text
    _gen(http, 8)  # more than start_step + num_steps forward steps
    assert len(list(tmp_path.glob("*.trace.json.gz"))) == 1
    assert http.post("/stop_profile").status_code == 400  # it already stopped


@pytest.mark.parametrize("body, field", [
    ({"num_steps": 0}, "num_steps"),
    ({"num_steps": "x"}, "num_steps"),
    ({"start_step": -1}, "start_step"),
    ({"activities": ["CPU", "TPU"]}, "activities"),
    ({"activities": "CPU"}, "activities"),
    ({"output_dir": 5}, "output_dir"),
    ({"with_stack": "yes"}, "with_stack"),
])
def test_profile_bad_input(http: httpx.Client, body: dict, field: str) -> None:
    r = http.post("/start_profile", json=body)
    assert r.status_code == 400 and field in r.text, r.text
    assert http.post("/stop_profile").status_code == 400  # nothing was started


def test_profile_unwritable_dir(http: httpx.Client, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = http.post("/start_profile", json={"output_dir": str(blocker / "sub")})
    assert r.status_code == 400 and "output_dir" in r.text
