"""torch.profiler inside the scheduler process, driven by `/start_profile` and `/stop_profile`.

The scheduler owns the model, so this is where kernels and host work can be seen. A profile runs
from `start` to `stop`, or for `num_steps` forward steps (optionally after `start_step` steps).
Stopping writes a Chrome trace (`{output_dir}/{time}-TP-{rank}.trace.json.gz`, viewable in
Perfetto) and a `.summary.txt` with the top operators by device time (CPU time on CPU).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch

from ..managers.io_struct import ProfileOutput, ProfileReq

logger = logging.getLogger(__name__)

def default_output_dir() -> str:
    return os.environ.get("SGLANG_TORCH_PROFILER_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                         "sglang_nb", "profiles")


class StepProfiler:
    """One profile at a time; `on_step()` is called by the event loop after each launched batch."""

    def __init__(self, device: str, tp_rank: int) -> None:
        self.device = device
        self.tp_rank = tp_rank
        self.req: ProfileReq | None = None
        self.prof: Any = None
        self.steps_to_start = 0
        self.steps_left: int | None = None
        self.began_at = 0.0
        self.steps_profiled = 0

    def handle(self, req: ProfileReq) -> ProfileOutput:
        return self.start(req) if req.action == "start" else self.stop()

    def start(self, req: ProfileReq) -> ProfileOutput:
        if self.req is not None:
            return ProfileOutput(False, "Profiling is already in progress. Call /stop_profile first.")
        out_dir = req.output_dir or default_output_dir()
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as e:
            return ProfileOutput(False, f"output_dir {out_dir!r} cannot be created: {e}")
        if not os.access(out_dir, os.W_OK):
            return ProfileOutput(False, f"output_dir {out_dir!r} is not writable.")
        req.output_dir = out_dir
        self.req = req
        self.steps_to_start = req.start_step or 0
        self.steps_left = req.num_steps
        if self.steps_to_start == 0:
            self._begin()
        return ProfileOutput(True, "Start profiling.\n")

    def stop(self) -> ProfileOutput:
        if self.req is None:
            return ProfileOutput(False, "Profiling is not in progress. Call /start_profile first.")
        return self._finish()

    def on_step(self) -> None:
        """Count a forward step: begin after `start_step` steps, stop after `num_steps`."""
        if self.req is None:
            return
        if self.prof is None:
            self.steps_to_start -= 1
            if self.steps_to_start <= 0:
                self._begin()
            return
        self.steps_profiled += 1
        if self.steps_left is not None:
            self.steps_left -= 1
            if self.steps_left <= 0:
                self._finish()

    # ---- internals ---------------------------------------------------------------------------

    def _begin(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        req = self.req
        assert req is not None
        names = set(req.activities or ["CPU", "GPU"])
        acts = [ProfilerActivity.CPU] if "CPU" in names else []
        if names & {"GPU", "CUDA"} and self.device != "cpu" and torch.cuda.is_available():
            acts.append(ProfilerActivity.CUDA)
        self.prof = profile(activities=acts or [ProfilerActivity.CPU], record_shapes=req.record_shapes,
                            with_stack=req.with_stack, profile_memory="MEM" in names)
        self.prof.start()
        self.began_at, self.steps_profiled = time.perf_counter(), 0
        logger.info("Profiling started (%s)", ", ".join(sorted(names)))

    def _finish(self) -> ProfileOutput:
        req, prof = self.req, self.prof
        self.req, self.prof = None, None
        assert req is not None and req.output_dir is not None
        if prof is None:  # stopped before start_step was reached
            return ProfileOutput(True, "Stop profiling. No step was profiled.\n")
        if self.device != "cpu" and torch.cuda.is_available():
            torch.cuda.synchronize()
        wall = time.perf_counter() - self.began_at
        prof.stop()
        stem = os.path.join(req.output_dir, f"{time.strftime('%Y%m%d-%H%M%S')}-TP-{self.tp_rank}")
        prof.export_chrome_trace(stem + ".trace.json.gz")
        on_gpu = self.device != "cpu" and torch.cuda.is_available()
        table = prof.key_averages().table(sort_by="self_cuda_time_total" if on_gpu else "self_cpu_time_total",
                                          row_limit=40)
        with open(stem + ".summary.txt", "w") as f:
            f.write(f"{self.steps_profiled} forward steps in {wall:.3f} s of wall time\n{table}")
        logger.info("Profile written to %s.trace.json.gz", stem)
        return ProfileOutput(True, f"Stop profiling. This will take some time.\nTrace: {stem}.trace.json.gz\n",
                             trace_path=stem + ".trace.json.gz")
