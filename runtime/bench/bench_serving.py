"""Online serving benchmark against a running server (SGLang's `bench_serving`).

    python -m sglang_nb.bench_serving --backend sglang --port 30000 \
        --dataset-name random --random-input-len 128 --random-output-len 32 --num-prompts 32 \
        --request-rate 4 --max-concurrency 8

Requests stream (unless --disable-stream); arrivals are a Poisson process at --request-rate (all at
once when inf), capped by --max-concurrency. Metric definitions follow SGLang: TTFT = time to the
first non-empty chunk; ITL = gaps between non-empty chunks (for the native backend a gap is split
evenly over the tokens it carried); TPOT = (latency - TTFT) / (output_len - 1); E2E = time to the
last chunk; concurrency = sum of E2E latencies / duration. `OPENAI_API_KEY` is sent as a bearer key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import numpy as np

from .serving_datasets import DatasetRow, sample_generated_shared_prefix, sample_random, sample_sharegpt

DEFAULT_PORTS = {"sglang": 30000, "sglang-native": 30000, "sglang-oai": 30000, "sglang-oai-chat": 30000,
                 "vllm": 8000, "vllm-chat": 8000, "lmdeploy": 23333, "lmdeploy-chat": 23333}
CHAT_BACKENDS = ("sglang-oai-chat", "vllm-chat", "lmdeploy-chat")
NATIVE_BACKENDS = ("sglang", "sglang-native")


@dataclass
class RequestOutput:
    success: bool = False
    generated_text: str = ""
    latency: float = 0.0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    prompt_len: int = 0
    output_len: int = 0
    error: str = ""


def _headers() -> dict[str, str]:
    key = os.environ.get("OPENAI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _payload(args: argparse.Namespace, row: DatasetRow, model: str, output_len: int) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of one request for the chosen backend."""
    extra = json.loads(args.extra_request_body) if args.extra_request_body else {}
    stream = not args.disable_stream
    prompt = row.prompt + args.prompt_suffix if isinstance(row.prompt, str) else row.prompt
    if args.backend in NATIVE_BACKENDS:
        body: dict[str, Any] = {
            "input_ids" if isinstance(prompt, list) else "text": prompt,
            "sampling_params": {"temperature": 0.0, "max_new_tokens": output_len,
                                "ignore_eos": not args.disable_ignore_eos},
            "stream": stream, "return_logprob": args.return_logprob, "logprob_start_len": -1, **extra}
        if args.lora_name:
            body["lora_path"] = args.lora_name[0]
        return "/generate", body
    common = {"model": model, "temperature": 0.0, "max_tokens": output_len, "stream": stream, **extra}
    if stream:
        common["stream_options"] = {"include_usage": True}
    if args.backend in CHAT_BACKENDS:
        return "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}], **common}
    return "/v1/completions", {"prompt": prompt, "best_of": 1, "ignore_eos": not args.disable_ignore_eos, **common}


async def send_request(client: httpx.AsyncClient, args: argparse.Namespace, row: DatasetRow, model: str,
                       output_len: int | None = None) -> RequestOutput:
    """One timed request; streaming chunks give TTFT and ITL."""
    want = output_len if output_len is not None else row.output_len
    path, body = _payload(args, row, model, want)
    out = RequestOutput(prompt_len=row.prompt_len)
    native = args.backend in NATIVE_BACKENDS
    start = last = time.perf_counter()
    tokens_seen = 0
    try:
        async with client.stream("POST", args.base_url + path, json=body, headers=_headers()) as resp:
            if resp.status_code != 200:
                out.error = f"HTTP {resp.status_code}: {(await resp.aread()).decode(errors='replace')[:300]}"
                return out
            if args.disable_stream:
                data = json.loads(await resp.aread())
                out.latency = out.ttft = time.perf_counter() - start
                _absorb_final(out, data, native, want)
                out.success = True
                return out
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                data = json.loads(payload)
                if "error" in data:
                    out.error = str(data["error"])
                    return out
                now = time.perf_counter()
                text, new_tokens = _chunk_text(data, native, out.generated_text, tokens_seen)
                out.generated_text += text
                if native:
                    tokens_seen = data["meta_info"]["completion_tokens"]
                    out.output_len = tokens_seen
                elif data.get("usage"):
                    out.output_len = data["usage"]["completion_tokens"]
                if text:
                    if out.ttft == 0.0:
                        out.ttft = now - start
                    else:
                        gap = (now - last) / max(new_tokens, 1)
                        out.itl.extend([gap] * max(new_tokens, 1))
                    last = now
            out.latency = last - start
            if not native and out.output_len == 0:
                out.output_len = want
            out.success = out.ttft > 0.0
            if not out.success:
                out.error = "The stream carried no text."
    except (httpx.HTTPError, json.JSONDecodeError, KeyError) as e:
        out.error = f"{type(e).__name__}: {e}"
    return out


def _chunk_text(data: dict[str, Any], native: bool, sofar: str, tokens_seen: int) -> tuple[str, int]:
    """(new text, new token count) of one streamed chunk."""
    if native:
        text = data.get("text", "")
        new = text[len(sofar):] if text.startswith(sofar) else text  # cumulative or incremental server
        return new, data["meta_info"]["completion_tokens"] - tokens_seen
    choices = data.get("choices") or []
    if not choices:
        return "", 0
    c = choices[0]
    text = c.get("text") if "text" in c else (c.get("delta") or {}).get("content")
    return text or "", 1


def _absorb_final(out: RequestOutput, data: dict[str, Any], native: bool, want: int) -> None:
    if native:
        out.generated_text = data["text"]
        out.output_len = data["meta_info"]["completion_tokens"]
        return
    c = data["choices"][0]
    out.generated_text = c.get("text") if "text" in c else c["message"].get("content") or ""
    out.output_len = (data.get("usage") or {}).get("completion_tokens", want)


async def _profile(client: httpx.AsyncClient, args: argparse.Namespace, path: str) -> None:
    resp = await client.post(args.base_url + path, headers=_headers())
    if resp.status_code != 200:
        raise RuntimeError(f"{path} failed ({resp.status_code}): {resp.text.strip()}")
    print(resp.text.strip(), flush=True)


async def benchmark(args: argparse.Namespace, rows: list[DatasetRow], model: str, tokenizer: Any) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=httpx.Timeout(6 * 3600.0), limits=limits) as client:
        for _ in range(args.warmup_requests):
            warm = await send_request(client, args, rows[0], model, min(rows[0].output_len, 32))
            if not warm.success:
                raise RuntimeError(f"Warm-up request failed: {warm.error}")
        if args.flush_cache:
            await client.post(args.base_url + "/flush_cache", headers=_headers())
        await asyncio.sleep(1.0)
        semaphore = asyncio.Semaphore(args.max_concurrency) if args.max_concurrency else None
        progress = None if args.disable_tqdm else _progress(len(rows))

        async def one(row: DatasetRow) -> RequestOutput:
            if semaphore is None:
                result = await send_request(client, args, row, model)
            else:
                async with semaphore:
                    result = await send_request(client, args, row, model)
            if progress is not None:
                progress.update(1)
            return result

        if args.profile:
            await _profile(client, args, "/start_profile")
        start = time.perf_counter()
        tasks = []
        for row in rows:
            tasks.append(asyncio.create_task(one(row)))
            if args.request_rate != float("inf"):
                await asyncio.sleep(np.random.exponential(1.0 / args.request_rate))
        outputs = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
        if progress is not None:
            progress.close()
        if args.profile:
            await _profile(client, args, "/stop_profile")
        accept = await _accept_length(client, args)
    result = compute_metrics(outputs, duration, tokenizer)
    result.update(backend=args.backend, dataset_name=args.dataset_name, request_rate=args.request_rate,
                  max_concurrency=args.max_concurrency, random_input_len=args.random_input_len,
                  random_output_len=args.random_output_len, sharegpt_output_len=args.sharegpt_output_len,
                  accept_length=accept)
    if args.output_details:
        result.update(input_lens=[o.prompt_len for o in outputs], output_lens=[o.output_len for o in outputs],
                      ttfts=[o.ttft for o in outputs], itls=[o.itl for o in outputs],
                      generated_texts=[o.generated_text for o in outputs], errors=[o.error for o in outputs])
    return result


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total)


async def _accept_length(client: httpx.AsyncClient, args: argparse.Namespace) -> float | None:
    if args.backend not in NATIVE_BACKENDS + ("sglang-oai", "sglang-oai-chat"):
        return None
    try:
        info = (await client.get(args.base_url + "/get_server_info", headers=_headers())).json()
        value = info["internal_states"][0].get("avg_spec_accept_length")
        return float(value) if value is not None else None
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
        return None


def compute_metrics(outputs: list[RequestOutput], duration: float, tokenizer: Any) -> dict[str, Any]:
    """SGLang's aggregate metrics over the successful requests (latencies in ms)."""
    ok = [o for o in outputs if o.success]
    for o in outputs:
        if not o.success:
            print(f"Request failed: {o.error}", file=sys.stderr)
    total_in = sum(o.prompt_len for o in ok)
    total_out = sum(o.output_len for o in ok)
    retok = sum(len(tokenizer.encode(o.generated_text, add_special_tokens=False)) for o in ok)
    tpots = [(o.latency - o.ttft) / (o.output_len - 1) for o in ok if o.output_len > 1]
    itls = [x for o in ok for x in o.itl]
    r: dict[str, Any] = {
        "duration": duration, "completed": len(ok), "total_input_tokens": total_in,
        "total_output_tokens": total_out, "total_output_tokens_retokenized": retok,
        "request_throughput": len(ok) / duration, "input_throughput": total_in / duration,
        "output_throughput": total_out / duration, "output_throughput_retokenized": retok / duration,
        "total_throughput": (total_in + total_out) / duration,
        "concurrency": sum(o.latency for o in ok) / duration,
    }
    for name, values in (("e2e_latency", [o.latency for o in ok]), ("ttft", [o.ttft for o in ok]),
                         ("tpot", tpots), ("itl", itls)):
        ms = np.array(values or [0.0]) * 1000
        r[f"mean_{name}_ms"] = float(np.mean(ms))
        r[f"median_{name}_ms"] = float(np.median(ms))
        r[f"std_{name}_ms"] = float(np.std(ms))
        r[f"p95_{name}_ms"] = float(np.percentile(ms, 95))
        r[f"p99_{name}_ms"] = float(np.percentile(ms, 99))
        r[f"max_{name}_ms"] = float(np.max(ms))
    return r


def print_report(r: dict[str, Any]) -> None:
    def line(label: str, value: Any) -> None:
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{label:<40} {text:<10}")

    def rule(title: str) -> None:
        print("{s:{c}^{n}}".format(s=title, n=50, c="-"))

    print("\n{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="))
    line("Backend:", r["backend"])
    line("Traffic request rate:", str(r["request_rate"]))
    line("Max request concurrency:", r["max_concurrency"] if r["max_concurrency"] else "not set")
    line("Successful requests:", r["completed"])
    line("Benchmark duration (s):", r["duration"])
    line("Total input tokens:", r["total_input_tokens"])
    line("Total generated tokens:", r["total_output_tokens"])
    line("Total generated tokens (retokenized):", r["total_output_tokens_retokenized"])
    line("Request throughput (req/s):", r["request_throughput"])
    line("Input token throughput (tok/s):", r["input_throughput"])
    line("Output token throughput (tok/s):", r["output_throughput"])
    line("Total token throughput (tok/s):", r["total_throughput"])
    line("Concurrency:", r["concurrency"])
    if r.get("accept_length") is not None:
        line("Accept length:", r["accept_length"])
    rule("End-to-End Latency")
    line("Mean E2E Latency (ms):", r["mean_e2e_latency_ms"])
    line("Median E2E Latency (ms):", r["median_e2e_latency_ms"])
    line("P99 E2E Latency (ms):", r["p99_e2e_latency_ms"])
    rule("Time to First Token")
    line("Mean TTFT (ms):", r["mean_ttft_ms"])
    line("Median TTFT (ms):", r["median_ttft_ms"])
    line("P99 TTFT (ms):", r["p99_ttft_ms"])
    rule("Time per Output Token (excl. 1st token)")
    line("Mean TPOT (ms):", r["mean_tpot_ms"])
    line("Median TPOT (ms):", r["median_tpot_ms"])
    line("P99 TPOT (ms):", r["p99_tpot_ms"])
    rule("Inter-Token Latency")
    line("Mean ITL (ms):", r["mean_itl_ms"])
    line("Median ITL (ms):", r["median_itl_ms"])
    line("P95 ITL (ms):", r["p95_itl_ms"])
    line("P99 ITL (ms):", r["p99_itl_ms"])
    line("Max ITL (ms):", r["max_itl_ms"])
    print("=" * 50, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sglang_nb.bench_serving", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="sglang", choices=sorted(DEFAULT_PORTS))
    p.add_argument("--base-url", default=None)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--dataset-name", default="sharegpt",
                   choices=["sharegpt", "random", "random-ids", "generated-shared-prefix"])
    p.add_argument("--dataset-path", default="")
    p.add_argument("--model", default=None)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--num-prompts", type=int, default=1000)
    p.add_argument("--sharegpt-output-len", type=int, default=None)
    p.add_argument("--sharegpt-context-len", type=int, default=None)
    p.add_argument("--random-input-len", type=int, default=1024)
    p.add_argument("--random-output-len", type=int, default=1024)
    p.add_argument("--random-range-ratio", type=float, default=0.0)
    p.add_argument("--request-rate", type=float, default=float("inf"))
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--output-file", default=None)
    p.add_argument("--output-details", action="store_true")
    p.add_argument("--disable-tqdm", action="store_true")
    p.add_argument("--disable-stream", action="store_true")
    p.add_argument("--return-logprob", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--disable-ignore-eos", action="store_true")
    p.add_argument("--extra-request-body", default=None, help="JSON merged into every request body")
    p.add_argument("--apply-chat-template", action="store_true")
    p.add_argument("--profile", action="store_true",
                   help="Profile the server during the run (/start_profile, /stop_profile; traces go to the "
                        "server's $SGLANG_TORCH_PROFILER_DIR).")
    p.add_argument("--lora-name", nargs="*", default=None)
    p.add_argument("--prompt-suffix", default="")
    p.add_argument("--pd-separated", action="store_true", help="Accepted for compatibility.")
    p.add_argument("--flush-cache", action="store_true")
    p.add_argument("--warmup-requests", type=int, default=1)
    p.add_argument("--tokenize-prompt", action="store_true")
    for name, default in (("num-groups", 64), ("prompts-per-group", 16), ("system-prompt-len", 2048),
                          ("question-len", 128), ("output-len", 256)):
        p.add_argument(f"--gsp-{name}", f"--gen-{name}", dest=f"gsp_{name.replace('-', '_')}", type=int,
                       default=default)
    return p


def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve the server, build the dataset, run, print and append the JSONL record."""
    port = args.port or DEFAULT_PORTS[args.backend]
    args.base_url = (args.base_url or f"http://{args.host}:{port}").rstrip("/")
    if args.tokenize_prompt and args.backend not in NATIVE_BACKENDS:
        raise ValueError("--tokenize-prompt needs the sglang backend (token ids go to /generate).")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise ValueError("--max-concurrency must be at least 1.")
    if args.request_rate <= 0:
        raise ValueError("--request-rate must be positive (inf sends everything at once).")
    random.seed(args.seed)
    np.random.seed(args.seed)
    with httpx.Client(timeout=30.0) as client:
        model = args.model or client.get(args.base_url + "/v1/models", headers=_headers()).json()["data"][0]["id"]
        tokenizer_name = args.tokenizer
        if tokenizer_name is None:
            info = client.get(args.base_url + "/get_model_info", headers=_headers()).json()
            tokenizer_name = info.get("tokenizer_path") or model
    tokenizer = _load_tokenizer(tokenizer_name)
    if args.dataset_name == "sharegpt":
        rows = sample_sharegpt(args.dataset_path, args.num_prompts, tokenizer, args.sharegpt_output_len,
                               args.sharegpt_context_len, args.apply_chat_template)
    elif args.dataset_name in ("random", "random-ids"):
        rows = sample_random(args.num_prompts, args.random_input_len, args.random_output_len,
                             args.random_range_ratio, tokenizer, args.dataset_path, args.tokenize_prompt,
                             ids_only=args.dataset_name == "random-ids")
    else:
        rows = sample_generated_shared_prefix(args.gsp_num_groups, args.gsp_prompts_per_group,
                                              args.gsp_system_prompt_len, args.gsp_question_len,
                                              args.gsp_output_len, tokenizer)
    if not rows:
        raise ValueError("The dataset produced no requests (check --dataset-path and the length limits).")
    result = asyncio.run(benchmark(args, rows, model, tokenizer))
    print_report(result)
    path = args.output_file or _default_output(args)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(result) + "\n")
    return result


def _default_output(args: argparse.Namespace) -> str:
    day = datetime.now().strftime("%m%d")
    if args.dataset_name.startswith("random"):
        return f"{args.backend}_{day}_{args.num_prompts}_{args.random_input_len}_{args.random_output_len}.jsonl"
    return f"{args.backend}_{day}_{args.num_prompts}_{args.dataset_name}.jsonl"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_benchmark(args)
    except (ValueError, RuntimeError, OSError, httpx.HTTPError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


__all__ = ["RequestOutput", "build_parser", "compute_metrics", "main", "run_benchmark"]
