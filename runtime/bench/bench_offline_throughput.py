"""Offline throughput through the Engine (SGLang's `bench_offline_throughput`).

    python -m sglang_nb.bench_offline_throughput --model-path M --load-format dummy \
        --dataset-name random --random-input-len 4096 --random-output-len 2048 --num-prompts 500

All prompts go in one `Engine.generate` call (greedy, `ignore_eos` unless --disable-ignore-eos); the
wall time around it gives request/input/output/total throughput, printed in SGLang's block.
Datasets: `random` (token ids, lengths uniform in [max(I*r, 1), I] and [max(O*r, 1), O]) and
`sharegpt` (a local ShareGPT-format JSON file: conversations with at least two turns; turn 0 is the
prompt, turn 1's token count the output length unless --sharegpt-output-len).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from typing import Any

from ..server_args import ServerArgs


@dataclasses.dataclass
class DatasetRow:
    prompt: str | None
    input_ids: list[int] | None
    prompt_len: int
    output_len: int


@dataclasses.dataclass
class BenchArgs:
    backend: str = "engine"
    result_filename: str = ""
    dataset_name: str = "random"
    dataset_path: str = ""
    num_prompts: int = 1000
    sharegpt_output_len: int | None = None
    random_input_len: int = 1024
    random_output_len: int = 1024
    random_range_ratio: float = 0.0
    disable_ignore_eos: bool = False
    extra_request_body: str | None = None
    seed: int = 1
    skip_warmup: bool = False
    profile: bool = False
    profile_start_step: int | None = None
    profile_num_steps: int | None = None

    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--backend", choices=["engine"], default="engine")
        parser.add_argument("--result-filename", default="")
        parser.add_argument("--dataset-name", choices=["random", "sharegpt"], default="random")
        parser.add_argument("--dataset-path", default="")
        parser.add_argument("--num-prompts", type=int, default=1000)
        parser.add_argument("--sharegpt-output-len", type=int, default=None)
        parser.add_argument("--random-input-len", type=int, default=1024)
        parser.add_argument("--random-output-len", type=int, default=1024)
        parser.add_argument("--random-range-ratio", type=float, default=0.0)
        parser.add_argument("--disable-ignore-eos", action="store_true")
        parser.add_argument("--extra-request-body", default=None, help="JSON merged into every sampling_params")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--skip-warmup", action="store_true")
        parser.add_argument("--profile", action="store_true",
                            help="torch-profile the scheduler during the run (trace in $SGLANG_TORCH_PROFILER_DIR)")
        parser.add_argument("--profile-start-step", type=int, default=None,
                            help="with --profile: skip this many forward steps first")
        parser.add_argument("--profile-num-steps", type=int, default=None,
                            help="with --profile: stop after this many forward steps")

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> BenchArgs:
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def sample_random_requests(num: int, input_len: int, output_len: int, range_ratio: float, vocab_size: int,
                           seed: int) -> list[DatasetRow]:
    if input_len < 1 or output_len < 1 or not 0.0 <= range_ratio <= 1.0:
        raise ValueError("random dataset: lengths must be >= 1 and --random-range-ratio in [0, 1].")
    rng = random.Random(seed)
    rows = []
    for i in range(num):
        n_in = rng.randint(max(int(input_len * range_ratio), 1), input_len)
        n_out = rng.randint(max(int(output_len * range_ratio), 1), output_len)
        ids = [(i + j * 7 + rng.randrange(vocab_size)) % vocab_size for j in range(n_in)]
        rows.append(DatasetRow(None, ids, n_in, n_out))
    return rows


def sample_sharegpt_requests(path: str, num: int, tokenizer: Any, output_len: int | None, seed: int,
                             context_len: int = 4096) -> list[DatasetRow]:
    if not path:
        raise ValueError("--dataset-path: the sharegpt dataset is read from a local JSON file.")
    if tokenizer is None:
        raise ValueError("the sharegpt dataset needs a tokenizer (drop --skip-tokenizer-init).")
    with open(path) as f:
        data = json.load(f)
    convs = [d["conversations"] for d in data if len(d.get("conversations", [])) >= 2]
    random.Random(seed).shuffle(convs)
    rows: list[DatasetRow] = []
    for conv in convs:
        if len(rows) == num:
            break
        prompt, completion = conv[0]["value"], conv[1]["value"]
        n_in = len(tokenizer.encode(prompt))
        n_out = output_len or len(tokenizer.encode(completion))
        if n_in < 2 or n_out < 2 or n_in + n_out > context_len:
            continue
        rows.append(DatasetRow(prompt, None, n_in, n_out))
    return rows


def throughput_test(server_args: ServerArgs, bench_args: BenchArgs) -> dict[str, Any]:
    from ..engine import Engine

    extra = json.loads(bench_args.extra_request_body) if bench_args.extra_request_body else {}
    with Engine(server_args=server_args) as engine:
        vocab = int(engine.server_info_static()["vocab_size"])
        if bench_args.dataset_name == "random":
            rows = sample_random_requests(bench_args.num_prompts, bench_args.random_input_len,
                                          bench_args.random_output_len, bench_args.random_range_ratio,
                                          min(vocab, 32000), bench_args.seed)
        else:
            rows = sample_sharegpt_requests(bench_args.dataset_path, bench_args.num_prompts, engine.get_tokenizer(),
                                            bench_args.sharegpt_output_len, bench_args.seed)
        if not bench_args.skip_warmup:
            warm = sample_random_requests(min(16, len(rows)), 256, 16, 1.0, min(vocab, 32000), bench_args.seed + 1)
            _generate(engine, warm, bench_args, extra)
        if bench_args.profile:
            engine.start_profile(start_step=bench_args.profile_start_step, num_steps=bench_args.profile_num_steps)
        tic = time.perf_counter()
        outputs = _generate(engine, rows, bench_args, extra)
        latency = time.perf_counter() - tic
        if bench_args.profile and bench_args.profile_num_steps is None:
            print(f"Profile: {engine.stop_profile()}", flush=True)
    total_in = sum(r.prompt_len for r in rows)
    total_out = sum(o["meta_info"]["completion_tokens"] for o in outputs)
    result = {
        "backend": bench_args.backend, "successful_requests": len(rows), "total_latency": latency,
        "total_input_tokens": total_in, "total_output_tokens": total_out,
        "request_throughput": len(rows) / latency, "input_throughput": total_in / latency,
        "output_throughput": total_out / latency, "total_throughput": (total_in + total_out) / latency,
    }
    print_result(result)
    if bench_args.result_filename:
        with open(bench_args.result_filename, "a") as f:
            f.write(json.dumps(result) + "\n")
    return result


def _generate(engine: Any, rows: list[DatasetRow], bench_args: BenchArgs, extra: dict[str, Any]) -> list[Any]:
    params = [{"temperature": 0.0, "max_new_tokens": r.output_len, "ignore_eos": not bench_args.disable_ignore_eos,
               **extra} for r in rows]
    if rows and rows[0].input_ids is not None:
        return list(engine.generate(input_ids=[r.input_ids for r in rows], sampling_params=params))
    return list(engine.generate(prompt=[r.prompt for r in rows], sampling_params=params))


def print_result(r: dict[str, Any]) -> None:
    print("\n{s:{c}^{n}}".format(s=" Offline Throughput Benchmark Result ", n=50, c="="))
    rows = [("Backend:", r["backend"]), ("Successful requests:", r["successful_requests"]),
            ("Benchmark duration (s):", f"{r['total_latency']:.2f}"),
            ("Total input tokens:", r["total_input_tokens"]), ("Total generated tokens:", r["total_output_tokens"]),
            ("Request throughput (req/s):", f"{r['request_throughput']:.2f}"),
            ("Input token throughput (tok/s):", f"{r['input_throughput']:.2f}"),
            ("Output token throughput (tok/s):", f"{r['output_throughput']:.2f}"),
            ("Total token throughput (tok/s):", f"{r['total_throughput']:.2f}")]
    for label, value in rows:
        print(f"{label:<40} {value:<10}")
    print("=" * 50, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sglang_nb.bench_offline_throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    ServerArgs.add_cli_args(parser)
    BenchArgs.add_cli_args(parser)
    args = parser.parse_args(argv)
    throughput_test(ServerArgs.from_cli_args(args), BenchArgs.from_cli_args(args))


if __name__ == "__main__":
    main()
