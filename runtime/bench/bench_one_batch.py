"""Static-batch latency without a server (SGLang's `bench_one_batch`).

    python -m sglang_nb.bench_one_batch --model-path M --batch-size 1 8 --input-len 512 --output-len 64
    python -m sglang_nb.bench_one_batch --correct --output-len 16          # the embedded model, any device

Latency mode: for every (batch, input, output) combination, one prefill of the whole batch and
`output_len - 1` greedy decode steps, each timed with a device synchronisation; prints SGLang's
lines (prefill latency/throughput, per-step decode lines, median decode latency/throughput, total)
and appends a JSON line to `--result-filename`. Correctness mode prefills the first `--cut-len`
tokens of three prompts, extends with the rest (a cache hit on the first part), prints both logits
and the greedy continuations.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import time
from typing import Any

import torch

from ..mem_cache.radix_cache import ChunkCache
from ..model_executor.model_runner import ModelRunner
from ..model_loader.model_config import ModelConfig
from ..model_loader.resolve import resolve_model_dir
from ..sampling.sampling_params import SamplingParams
from ..scheduler.batch import ScheduleBatch
from ..scheduler.req import Req
from ..server_args import ServerArgs

logger = logging.getLogger(__name__)

CORRECT_PROMPTS = ["The capital of France is", "The capital of the United Kindom is", "Today is a sunny day and I like"]


@dataclasses.dataclass
class BenchArgs:
    run_name: str = "default"
    batch_size: tuple[int, ...] = (1,)
    input_len: tuple[int, ...] = (1024,)
    output_len: tuple[int, ...] = (16,)
    result_filename: str = "result.jsonl"
    correctness_test: bool = False
    cut_len: int = 4
    log_decode_step: int = 0
    profile: bool = False
    profile_filename_prefix: str = "profile"

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--run-name", type=str, default=BenchArgs.run_name)
        parser.add_argument("--batch-size", type=int, nargs="+", default=BenchArgs.batch_size)
        parser.add_argument("--input-len", type=int, nargs="+", default=BenchArgs.input_len)
        parser.add_argument("--output-len", type=int, nargs="+", default=BenchArgs.output_len)
        parser.add_argument("--result-filename", type=str, default=BenchArgs.result_filename)
        parser.add_argument("--correctness-test", "--correct", dest="correctness_test", action="store_true")
        parser.add_argument("--cut-len", type=int, default=BenchArgs.cut_len)
        parser.add_argument("--log-decode-step", type=int, default=BenchArgs.log_decode_step,
                            help="also log every N-th decode step (0: only the first five)")
        parser.add_argument("--profile", action="store_true", help="write a torch.profiler trace per run")
        parser.add_argument("--profile-filename-prefix", type=str, default=BenchArgs.profile_filename_prefix)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> BenchArgs:
        values: dict[str, Any] = {f.name: (tuple(getattr(args, f.name)) if isinstance(getattr(args, f.name), list)
                                           else getattr(args, f.name)) for f in dataclasses.fields(cls)}
        return cls(**values)


class StaticBatchRunner:
    """A model runner plus the pieces a static batch needs (no scheduler, no radix tree)."""

    def __init__(self, server_args: ServerArgs) -> None:
        server_args.check()
        self.server_args = server_args
        self.device = server_args.resolved_device()
        model_dir = resolve_model_dir(server_args.model_path, server_args.load_format, server_args.revision,
                                      server_args.download_dir)
        self.model_config = ModelConfig.from_dir(
            model_dir, dtype=server_args.dtype, device=self.device, context_length=server_args.context_length,
            trust_remote_code=server_args.trust_remote_code, overrides=server_args.model_override_args())
        if server_args.random_seed is None:
            server_args.random_seed = 42
        self.runner = ModelRunner(server_args, self.model_config, self.device)
        self.tree_cache = ChunkCache(self.runner.req_to_token_pool, self.runner.allocator)
        self.tokenizer: Any = None
        if not server_args.skip_tokenizer_init:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(server_args.tokenizer_path or model_dir,
                                                           trust_remote_code=server_args.trust_remote_code)

    @property
    def max_total_num_tokens(self) -> int:
        return self.runner.sizes.max_total_num_tokens

    def new_reqs(self, input_ids: list[list[int]], output_len: int) -> list[Req]:
        reqs = []
        for i, ids in enumerate(input_ids):
            params = SamplingParams(temperature=0.0, max_new_tokens=output_len)
            params.normalize(self.tokenizer)
            req = Req(f"bench-{i}", None, list(ids), params)
            req.fill_ids = list(ids)
            req.extend_input_len = len(ids)
            reqs.append(req)
        return reqs

    def extend(self, reqs: list[Req]) -> tuple[torch.Tensor, torch.Tensor, ScheduleBatch]:
        """Prefill (or extend, when reqs carry prefix_indices); returns (next ids, logits, batch).

        Requests are prefilled in groups of at most --max-prefill-tokens new tokens (as the scheduler
        would), so that large static batches fit in the activation headroom."""
        groups: list[list[Req]] = [[]]
        budget = self.server_args.max_prefill_tokens
        for req in reqs:
            if groups[-1] and sum(r.extend_input_len for r in groups[-1]) + req.extend_input_len > budget:
                groups.append([])
            groups[-1].append(req)
        ids, logits = [], []
        for group in groups:
            part = self._new_batch(group)
            fb = part.prepare_for_extend()
            out = self.runner.forward(fb)
            ids.append(self.runner.sample(out, fb))
            logits.append(out.next_token_logits)
        return torch.cat(ids), torch.cat(logits), self._new_batch(reqs)

    def _new_batch(self, reqs: list[Req]) -> ScheduleBatch:
        return ScheduleBatch(reqs, self.runner.req_to_token_pool, self.runner.allocator, self.runner.kv_pool,
                             self.tree_cache, self.model_config.vocab_size, self.device)

    def decode(self, next_ids: torch.Tensor, batch: ScheduleBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """One decode step fed by the previous step's ids, which stay on the device."""
        fb = batch.prepare_for_decode()
        fb.input_ids = next_ids
        logits = self.runner.forward(fb)
        return self.runner.sample(logits, fb), logits.next_token_logits

    def release(self, batch: ScheduleBatch) -> None:
        for req in batch.reqs:
            self.tree_cache.cache_finished_req(req)

    def synchronize(self) -> None:
        if self.device != "cpu":
            torch.cuda.synchronize()


def _log(msg: str) -> None:
    print(msg, flush=True)


def latency_test_run_once(r: StaticBatchRunner, run_name: str, batch_size: int, input_len: int, output_len: int,
                          log_decode_step: int, profile: bool = False, profile_prefix: str = "profile"
                          ) -> dict[str, Any] | None:
    max_batch = r.max_total_num_tokens // (input_len + output_len)
    if batch_size > max_batch:
        _log(f"skipping ({batch_size}, {input_len}, {output_len}) due to max batch size limit")
        return None
    gen = torch.Generator().manual_seed(42)
    vocab = min(10000, r.model_config.vocab_size)
    ids = torch.randint(0, vocab, (batch_size, input_len), generator=gen).tolist()
    reqs = r.new_reqs(ids, output_len)
    result: dict[str, Any] = {"run_name": run_name, "batch_size": batch_size, "input_len": input_len,
                              "output_len": output_len}
    prof = _start_profile(r.device) if profile else None
    r.synchronize()
    tic = time.perf_counter()
    next_ids, _, batch = r.extend(reqs)
    r.synchronize()
    prefill = time.perf_counter() - tic
    total = prefill
    result["prefill_latency"] = prefill
    result["prefill_throughput"] = input_len * batch_size / prefill
    _log(f"Prefill. latency: {prefill:6.5f} s, throughput: {result['prefill_throughput']:9.2f} token/s")
    decode_latencies = []
    for i in range(output_len - 1):
        r.synchronize()
        tic = time.perf_counter()
        next_ids, _ = r.decode(next_ids, batch)
        r.synchronize()
        lat = time.perf_counter() - tic
        total += lat
        decode_latencies.append(lat)
        if i < 5 or (log_decode_step > 0 and i % log_decode_step == 0):
            _log(f"Decode {i}. Batch size: {batch_size}, latency: {lat:6.5f} s, "
                 f"throughput: {batch_size / lat:9.2f} token/s")
    if prof is not None:
        _stop_profile(prof, f"{profile_prefix}_bs{batch_size}_in{input_len}_out{output_len}")
    r.release(batch)
    if decode_latencies:
        med = sorted(decode_latencies)[len(decode_latencies) // 2]
        result["median_decode_latency"] = med
        result["median_decode_throughput"] = batch_size / med
        _log(f"Decode.  median latency: {med:6.5f} s, median throughput: {batch_size / med:9.2f} token/s")
    result["total_latency"] = total
    result["overall_throughput"] = (input_len + output_len) * batch_size / total
    _log(f"Total. latency: {total:6.3f} s, throughput: {result['overall_throughput']:9.2f} token/s")
    return result


def latency_test(server_args: ServerArgs, bench_args: BenchArgs) -> list[dict[str, Any]]:
    r = StaticBatchRunner(server_args)
    _log(f"max_total_num_tokens={r.max_total_num_tokens}")
    combos = list(itertools.product(bench_args.batch_size, bench_args.input_len, bench_args.output_len))
    if combos:  # warm-up: kernels, allocator and graphs
        bs, il, ol = combos[0]
        latency_test_run_once(r, bench_args.run_name, bs, il, min(32, ol), 0)
        _log("Benchmark ...")
    results = []
    for bs, il, ol in combos:
        res = latency_test_run_once(r, bench_args.run_name, bs, il, ol, bench_args.log_decode_step,
                                    bench_args.profile, bench_args.profile_filename_prefix)
        if res is not None:
            results.append(res)
    if bench_args.result_filename:
        with open(bench_args.result_filename, "a") as f:
            for res in results:
                f.write(json.dumps(res) + "\n")
    return results


def correctness_test(server_args: ServerArgs, bench_args: BenchArgs) -> list[str]:
    """Prefill a cut of each prompt, extend with the rest (prefix reuse), then decode greedily."""
    r = StaticBatchRunner(server_args)
    if r.tokenizer is None:
        raise ValueError("--correct needs a tokenizer (drop --skip-tokenizer-init).")
    input_ids = [r.tokenizer.encode(p) for p in CORRECT_PROMPTS]
    _log(f"input_ids={input_ids}")
    cut = bench_args.cut_len
    if min(len(ids) for ids in input_ids) <= cut:
        raise ValueError(f"--cut-len {cut} must be shorter than every prompt.")
    out_len = bench_args.output_len[0]
    reqs = r.new_reqs([ids[:cut] for ids in input_ids], out_len)
    _, logits, batch = r.extend(reqs)
    _log(f"prefill logits (first half): {logits} \n")
    # Second half: the first `cut` tokens are now the cached prefix of each request.
    for req, ids in zip(reqs, input_ids):
        req.prefix_indices = r.runner.req_to_token_pool.req_to_token[req.req_pool_idx, :cut].to(torch.int64)
        req.origin_input_ids = list(ids)
        req.fill_ids = list(ids)
        req.extend_input_len = len(ids) - cut
    batch = r._new_batch(reqs)
    fb = batch.prepare_for_extend()
    out = r.runner.forward(fb)
    next_ids = r.runner.sample(out, fb)
    _log(f"prefill logits (final): {out.next_token_logits} \n")
    outputs = [list(ids) + [tok] for ids, tok in zip(input_ids, next_ids.tolist())]
    for _ in range(out_len - 1):
        next_ids, _ = r.decode(next_ids, batch)
        for seq, tok in zip(outputs, next_ids.tolist()):
            seq.append(tok)
    texts = []
    for i, seq in enumerate(outputs):
        _log(f"========== Prompt {i} ==========")
        text = r.tokenizer.decode(seq)
        _log(f"{text} \n")
        texts.append(text)
    r.release(batch)
    return texts


def _start_profile(device: str) -> Any:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device != "cpu" else [])
    prof = profile(activities=acts)
    prof.start()
    return prof


def _stop_profile(prof: Any, name: str) -> None:
    prof.stop()
    prof.export_chrome_trace(f"{name}.trace.json")
    sort = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    _log(prof.key_averages().table(sort_by=sort, row_limit=25))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sglang_nb.bench_one_batch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    ServerArgs.add_cli_args(parser)
    BenchArgs.add_cli_args(parser)
    args = parser.parse_args(argv)
    server_args = ServerArgs.from_cli_args(args)
    bench_args = BenchArgs.from_cli_args(args)
    logging.basicConfig(level=getattr(logging, server_args.log_level.upper()),
                        format="[%(asctime)s] %(message)s")
    if bench_args.correctness_test:
        correctness_test(server_args, bench_args)
    else:
        latency_test(server_args, bench_args)


if __name__ == "__main__":
    main()
