"""Run the GPU benchmarks of docs/gpu.md in one go and write a table with ratios from the same run.

    python benchmarks/gpu_report.py --out DIR [--stages roofline,one_batch,hf,engine_bs1,offline]
                                    [--num-prompts 500]

Model: the Llama-3.1-8B shape (benchmarks/configs/llama-3.1-8b) with dummy bf16 weights. Each
stage runs in its own process (GPU memory is returned between stages) and leaves a JSON file in
DIR; the table (DIR/report.md) is rebuilt from whatever JSON files exist.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sglang_nb.runtime.bench.bench_one_batch import StaticBatchRunner

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "configs", "llama-3.1-8b")
LAYERS, HIDDEN, FFN, VOCAB, KV_HEADS, HEAD_DIM, HEADS = 32, 4096, 14336, 128256, 8, 128, 32
PARAMS_LAYER = HIDDEN * (HEADS + 2 * KV_HEADS) * HEAD_DIM + HEADS * HEAD_DIM * HIDDEN + 3 * HIDDEN * FFN + 2 * HIDDEN
STREAMED_BYTES = 2 * (LAYERS * PARAMS_LAYER + VOCAB * HIDDEN + HIDDEN)  # all but the embedding table
KV_BYTES_PER_TOKEN = LAYERS * 2 * KV_HEADS * HEAD_DIM * 2
MATMUL_FLOPS_PER_TOKEN = 2 * LAYERS * (PARAMS_LAYER - 2 * HIDDEN)  # prefill: no lm_head
CEILING_75 = {"H100": 5500.0, "H200": 7900.0}  # runtime_internals.md §7.5, random 2048/1024 avg, measured BW


def stage_one_batch(out: str, attention_backend: str | None = None, tag: str = "") -> None:
    import torch

    from sglang_nb.runtime.bench.bench_one_batch import StaticBatchRunner, latency_test_run_once
    from sglang_nb.runtime.server_args import ServerArgs

    t0 = time.time()
    r = StaticBatchRunner(ServerArgs(model_path=MODEL, load_format="dummy", skip_tokenizer_init=True,
                                     dtype="bfloat16", device="cuda", attention_backend=attention_backend))
    res: dict[str, Any] = {"startup_s": time.time() - t0, "max_total_num_tokens": r.max_total_num_tokens,
                 "attention_backend": r.runner.attention_backend_name,
                 "decode_gemv": os.environ.get("SGLANG_NB_DECODE_GEMV", "1") != "0",
                 "graph_capture_s": getattr(r.runner.cuda_graph_runner, "capture_time", None)}
    latency_test_run_once(r, "warmup", 1, 128, 16, 0)
    res["bs1"] = latency_test_run_once(r, "bs1", 1, 128, 256, 0)
    res["bs64"] = latency_test_run_once(r, "bs64", 64, 1024, 64, 0)
    res["prefill_8x2048"] = latency_test_run_once(r, "prefill", 8, 2048, 2, 0)
    res["prefill_8x2048_b"] = latency_test_run_once(r, "prefill", 8, 2048, 2, 0)
    res["graph_replay_ms"] = _graph_only(r, torch)
    res["host_bs1"] = _host_breakdown(r, torch)
    if not tag:
        res["profile_bs1"] = _profile_decode(r, 1, 128)
        res["profile_bs64"] = _profile_decode(r, 64, 1024)
        res["profile_prefill"] = _profile_prefill(r)
    with open(os.path.join(out, f"one_batch{tag}.json"), "w") as f:
        json.dump(res, f, indent=1)


def _graph_only(r: StaticBatchRunner, torch: ModuleType) -> dict[str, float]:
    """Device time of one replayed decode graph (no host work between replays)."""
    g = r.runner.cuda_graph_runner
    if g is None:
        return {}
    out: dict[str, float] = {}
    for bs in (1, 64):
        pbs = g.padded_size(bs)
        length = 1024 if bs == 64 else 256
        g.seq_lens[:pbs].fill_(length)
        padded = g._batch(pbs)
        padded.seq_lens_cpu = [length] * pbs
        r.runner.attn_backend.init_forward_metadata_replay_cuda_graph(padded)  # plans for this length
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(3):
            g.graphs[pbs].replay()
        s.record()
        for _ in range(50):
            g.graphs[pbs].replay()
        e.record()
        torch.cuda.synchronize()
        out[str(bs)] = s.elapsed_time(e) / 50
        g.seq_lens[:pbs].fill_(1)
    return out


def _host_breakdown(r: StaticBatchRunner, torch: ModuleType, steps: int = 50) -> dict[str, float]:
    """Mean host milliseconds per bs1 decode step: batch preparation, forward launch (graph replay and
    backend planning), sampling launch, and the wait for the device."""
    reqs = r.new_reqs([[5] * 128], steps + 8)
    ids, _, batch = r.extend(reqs)
    parts = {"prepare": 0.0, "forward": 0.0, "sample": 0.0, "wait": 0.0}
    for i in range(steps + 3):
        t0 = time.perf_counter()
        fb = batch.prepare_for_decode()
        fb.input_ids = ids
        t1 = time.perf_counter()
        out = r.runner.forward(fb)
        t2 = time.perf_counter()
        ids = r.runner.sample(out, fb)
        t3 = time.perf_counter()
        torch.cuda.synchronize()
        t4 = time.perf_counter()
        if i >= 3:
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key] += dt * 1e3 / steps
    r.release(batch)
    return parts


def _profile_decode(r: StaticBatchRunner, bs: int, ctx: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    from sglang_nb.runtime.bench.bench_one_batch import StaticBatchRunner  # noqa: F401

    reqs = r.new_reqs([[5] * ctx for _ in range(bs)], 40)
    ids, _, batch = r.extend(reqs)
    for _ in range(5):
        ids, _ = r.decode(ids, batch)
    r.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            ids, _ = r.decode(ids, batch)
        r.synchronize()
    r.release(batch)
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=20)


def _profile_prefill(r: StaticBatchRunner) -> str:
    from torch.profiler import ProfilerActivity, profile

    reqs = r.new_reqs([[7] * 2048 for _ in range(8)], 2)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        _, _, batch = r.extend(reqs)
        r.synchronize()
    r.release(batch)
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=15)


def stage_offline(out: str, num_prompts: int, attention_backend: str | None) -> None:
    from sglang_nb.runtime.bench.bench_offline_throughput import BenchArgs, throughput_test
    from sglang_nb.runtime.server_args import ServerArgs

    args = ServerArgs(model_path=MODEL, load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16",
                      attention_backend=attention_backend, log_level="warning")
    res = throughput_test(args, BenchArgs(num_prompts=num_prompts, random_input_len=4096, random_output_len=2048,
                                          random_range_ratio=0.0, seed=1))
    res["num_prompts"] = num_prompts
    with open(os.path.join(out, "offline.json"), "w") as f:
        json.dump(res, f, indent=1)


def stage_engine_bs1(out: str, attention_backend: str | None) -> None:
    """Batch-1 decode through the Engine as a user sees it: scheduler process, overlap loop, streaming.

    Time per token = time between the first and the last streamed chunk over the tokens in between
    (prefill excluded), median of three requests (input 128, output 256, like bench_one_batch's bs1)."""
    import random
    import statistics

    from sglang_nb.runtime.engine import Engine

    engine = Engine(model_path=MODEL, load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16",
                    attention_backend=attention_backend, log_level="warning")
    rng = random.Random(0)
    per_token = []
    try:
        for i in range(4):
            ids = [rng.randrange(1000, 100000) for _ in range(128)]
            marks: list[tuple[float, int]] = []
            for chunk in engine.generate(input_ids=ids, stream=True, sampling_params={
                    "max_new_tokens": 256, "temperature": 0, "ignore_eos": True}):
                marks.append((time.perf_counter(), int(chunk["meta_info"]["completion_tokens"])))
            (t0, n0), (t1, n1) = marks[0], marks[-1]
            if i > 0:  # the first request warms up
                per_token.append((t1 - t0) / (n1 - n0))
    finally:
        engine.shutdown()
    with open(os.path.join(out, "engine_bs1.json"), "w") as f:
        json.dump({"s_per_token": statistics.median(per_token), "runs": per_token}, f, indent=1)


def report(out: str) -> str:
    def load(name: str) -> dict:
        p = os.path.join(out, name)
        return json.load(open(p)) if os.path.exists(p) else {}

    roof, ob, hf, off = load("roofline.json"), load("one_batch.json"), load("hf.json"), load("offline.json")
    eng = load("engine_bs1.json")
    bw, mm = roof.get("copy_bandwidth_Bps"), roof.get("bf16_matmul_flops")
    dev = roof.get("device", "?")
    lines = [f"Device: {dev}; measured copy bandwidth {bw / 1e12:.2f} TB/s, bf16 matmul {mm / 1e12:.0f} TFLOP/s"
             if bw and mm else f"Device: {dev}", "",
             "| benchmark | measured | roofline / reference | ratio | target |", "|---|---|---|---|---|"]
    bs1 = ob.get("bs1") or {}
    if bs1 and bw:
        itl = bs1["median_decode_latency"]
        floor = (STREAMED_BYTES + 256 * KV_BYTES_PER_TOKEN) / bw
        lines.append(f"| bs1 decode (in 128, out 256) | {itl * 1e3:.2f} ms/token | {floor * 1e3:.2f} ms "
                     f"| {floor / itl:.1%} | >= 92% |")
        if hf:
            lines.append(f"| bs1 decode vs HF generate | {1 / itl:.1f} tok/s | HF {1 / hf['decode_s_per_token']:.1f} "
                         f"tok/s | {hf['decode_s_per_token'] / itl:.1f}x | >= 15x |")
        if eng:
            e = eng["s_per_token"]
            lines.append(f"| bs1 decode through the Engine (overlap, streamed) | {e * 1e3:.2f} ms/token | "
                         f"{floor * 1e3:.2f} ms | {floor / e:.1%} | >= 92% |")
            if hf:
                lines.append(f"| Engine bs1 vs HF generate | {1 / e:.1f} tok/s | HF "
                             f"{1 / hf['decode_s_per_token']:.1f} tok/s | {hf['decode_s_per_token'] / e:.1f}x | >= 15x |")
    bs64 = ob.get("bs64") or {}
    if bs64 and bw:
        itl = bs64["median_decode_latency"]
        floor = (STREAMED_BYTES + 64 * (1024 + 32) * KV_BYTES_PER_TOKEN) / bw
        lines.append(f"| bs64 decode (ctx 1k) | {itl * 1e3:.2f} ms/step | {floor * 1e3:.2f} ms | {floor / itl:.1%} "
                     f"| >= 85% |")
    pf = [ob[k] for k in ("prefill_8x2048", "prefill_8x2048_b") if ob.get(k)]
    if pf and mm:
        lat = min(p["prefill_latency"] for p in pf)
        flops = 8 * 2048 * (MATMUL_FLOPS_PER_TOKEN + 2 * 2048 * HIDDEN * LAYERS)
        lines.append(f"| prefill 8x2048 | {lat * 1e3:.1f} ms, {flops / lat / 1e12:.0f} TFLOP/s | "
                     f"{mm / 1e12:.0f} TFLOP/s | {flops / lat / mm:.1%} | >= 75% |")
    if off:
        kind = "H200" if "H200" in dev else "H100"
        ceil = CEILING_75[kind]
        lines.append(f"| offline random [1,4096]/[1,2048], {off['num_prompts']} prompts | "
                     f"{off['output_throughput']:.0f} out tok/s | {ceil:.0f} (§7.5, {kind} measured) | "
                     f"{off['output_throughput'] / ceil:.1%} | >= 80% |")
    g = ob.get("graph_replay_ms") or {}
    if g:
        lines += ["", f"Graph replay only (device time, no host work): bs1 {g.get('1', 0):.2f} ms, "
                      f"bs64 {g.get('64', 0):.2f} ms; start-up {ob.get('startup_s', 0):.0f} s "
                      f"(graphs {ob.get('graph_capture_s') or 0:.0f} s), KV pool {ob.get('max_total_num_tokens')} tokens"]
    lines += _variant_lines(out, bw, mm)
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
        for key in ("profile_bs1", "profile_prefill"):
            if ob.get(key):
                f.write(f"\n## {key}\n\n```\n{ob[key]}\n```\n")
    return text


def _variant_lines(out: str, bw: float | None, mm: float | None) -> list[str]:
    """One row per one_batch*.json: the decode/prefill numbers of each backend/GEMV variant."""
    import glob

    rows = ["", "| variant | bs1 ms/token (% floor) | bs64 ms/step (% floor) | graph replay bs1 / bs64 ms "
                "| host bs1 ms: prepare / forward / sample / wait | prefill 8x2048 ms |", "|---|---|---|---|---|---|"]
    for path in sorted(glob.glob(os.path.join(out, "one_batch*.json"))):
        ob = json.load(open(path))
        name = f"{ob.get('attention_backend', '?')}{'' if ob.get('decode_gemv', True) else ', cuBLAS GEMV'}"
        b1, b64 = (ob.get("bs1") or {}).get("median_decode_latency"), (ob.get("bs64") or {}).get("median_decode_latency")
        f1 = (STREAMED_BYTES + 256 * KV_BYTES_PER_TOKEN) / bw if bw else 0
        f64 = (STREAMED_BYTES + 64 * (1024 + 32) * KV_BYTES_PER_TOKEN) / bw if bw else 0
        g = ob.get("graph_replay_ms") or {}
        h = ob.get("host_bs1") or {}
        pf = [ob[k]["prefill_latency"] for k in ("prefill_8x2048", "prefill_8x2048_b") if ob.get(k)]
        rows.append(f"| {name} ({os.path.basename(path)}) | "
                    f"{b1 * 1e3:.2f} ({f1 / b1:.1%}) | {b64 * 1e3:.2f} ({f64 / b64:.1%}) | "
                    f"{g.get('1', 0):.2f} / {g.get('64', 0):.2f} | "
                    f"{h.get('prepare', 0):.3f} / {h.get('forward', 0):.3f} / {h.get('sample', 0):.3f} / "
                    f"{h.get('wait', 0):.3f} | {min(pf) * 1e3 if pf else 0:.1f} |" if b1 and b64 else f"| {name} | failed |")
    return rows if len(rows) > 3 else []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--stages", default="roofline,one_batch,hf")
    p.add_argument("--stage", default="", help=argparse.SUPPRESS)
    p.add_argument("--num-prompts", type=int, default=500)
    p.add_argument("--attention-backend", default=None)
    p.add_argument("--tag", default="", help="suffix of the one_batch JSON file (variants)")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.stage == "one_batch":
        return stage_one_batch(args.out, args.attention_backend, args.tag)
    if args.stage == "engine_bs1":
        return stage_engine_bs1(args.out, args.attention_backend)
    if args.stage == "offline":
        return stage_offline(args.out, args.num_prompts, args.attention_backend)
    py = sys.executable
    for stage in filter(None, args.stages.split(",")):
        t = time.time()
        if stage == "roofline":
            cmd = [py, os.path.join(HERE, "gpu_roofline.py"), "--json", os.path.join(args.out, "roofline.json")]
        elif stage == "hf":
            cmd = [py, os.path.join(HERE, "hf_baseline_gpu.py"), "--model-path", MODEL, "--load-format", "dummy",
                   "--json", os.path.join(args.out, "hf.json")]
        else:
            cmd = [py, __file__, "--out", args.out, "--stage", stage, "--num-prompts", str(args.num_prompts)]
            if args.attention_backend:
                cmd += ["--attention-backend", args.attention_backend]
        code = subprocess.call(cmd)
        print(f"[stage {stage}] exit {code} in {time.time() - t:.0f} s", flush=True)
    print(report(args.out), flush=True)


if __name__ == "__main__":
    main()
