"""JSON-schema constrained vs unconstrained decoding: time per output token, same run, same token counts.

Each round first generates under the schema (the grammar decides where the output ends), then
generates the same prompts unconstrained with `max_new_tokens` set to the constrained lengths and
`ignore_eos`, so both sides decode exactly the same number of tokens. Reported per setting:
decode time per output token (first token excluded, from streaming timestamps) for single requests,
and wall time per output token for a concurrent batch.

    python benchmarks/lang_constrained.py [--model-path M] [--requests 4] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import sglang_nb as sgl

SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 16},
    "country": {"type": "string", "maxLength": 16},
    "population_millions": {"type": "integer", "minimum": 0, "maximum": 50},
    "landmarks": {"type": "array", "items": {"type": "string", "maxLength": 24}, "minItems": 3, "maxItems": 3},
    "is_capital": {"type": "boolean"}},
    "required": ["city", "country", "population_millions", "landmarks", "is_capital"], "additionalProperties": False}
CITIES = ["Paris", "Tokyo", "Rome", "Madrid", "Berlin", "Cairo", "Lima", "Oslo"]


def prompt_for(city: str) -> str:
    return f"Describe the city of {city} as a JSON object with its country, population and landmarks.\n"


def stream_one(engine: Any, prompt: str, params: dict[str, Any]) -> tuple[float, int, str]:
    """(decode seconds per token after the first, completion tokens, text) for one streamed request."""
    start = time.perf_counter()
    first = last = start
    text, tokens = "", 0
    for chunk in engine.generate(prompt, params, stream=True):
        now = time.perf_counter()
        if not text and not tokens:
            first = now
        last = now
        text += chunk["text"]
        tokens = chunk["meta_info"]["completion_tokens"]
    return (last - first) / max(tokens - 1, 1), tokens, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--requests", type=int, default=4, help="single (sequential) requests per setting")
    parser.add_argument("--batch", type=int, default=8, help="concurrent requests for the batched measurement")
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    engine = sgl.Engine(model_path=args.model_path, max_total_tokens=32768)
    schema = json.dumps(SCHEMA)
    try:
        cold = time.perf_counter()
        engine.generate(prompt_for("Bern"), {"json_schema": schema, "max_new_tokens": 1})  # compile once
        compile_s = time.perf_counter() - cold
        single: dict[str, list[float]] = {"json_schema": [], "unconstrained": []}
        for city in CITIES[:args.requests]:
            prompt = prompt_for(city)
            tpot, n, text = stream_one(engine, prompt, {"json_schema": schema, "temperature": 0,
                                                        "max_new_tokens": args.max_tokens})
            json.loads(text)  # the constrained output is valid JSON
            single["json_schema"].append(tpot)
            tpot_free, n_free, _ = stream_one(engine, prompt, {"temperature": 0, "max_new_tokens": n,
                                                               "ignore_eos": True})
            assert n_free == n
            single["unconstrained"].append(tpot_free)
        prompts = [prompt_for(CITIES[i % len(CITIES)]) for i in range(args.batch)]
        start = time.perf_counter()
        outs = engine.generate(prompts, {"json_schema": schema, "temperature": 0, "max_new_tokens": args.max_tokens})
        batch_json = time.perf_counter() - start
        lengths = [o["meta_info"]["completion_tokens"] for o in outs]
        start = time.perf_counter()
        engine.generate(prompts, [{"temperature": 0, "max_new_tokens": n, "ignore_eos": True} for n in lengths])
        batch_free = time.perf_counter() - start
        report = {
            "grammar_first_compile_and_step_s": round(compile_s, 3),
            "single_tpot_ms": {k: round(1000 * statistics.mean(v), 2) for k, v in single.items()},
            "single_overhead": round(statistics.mean(single["json_schema"]) / statistics.mean(single["unconstrained"]), 3),
            "batch": args.batch, "batch_output_tokens": sum(lengths),
            "batch_ms_per_token": {"json_schema": round(1000 * batch_json / sum(lengths), 2),
                                   "unconstrained": round(1000 * batch_free / sum(lengths), 2)},
            "batch_overhead": round(batch_json / batch_free, 3),
        }
        print(json.dumps(report, indent=1))
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
