"""Prefix sharing in language programs: radix cache on vs `--disable-radix-cache`, same run.

Two workloads on one model (default: the embedded SmolLM2 on CPU):
  * few-shot: a 5-shot QA program over N questions with `run_batch` (the shared shots are prefilled once);
  * tree of thought: per problem, fork into thoughts, fork each thought into critiques, join, conclude.

    python benchmarks/lang_prefix_sharing.py [--model-path M] [--num-questions 64] [--max-tokens 8]

Prints one JSON line per (workload, cache setting) and the throughput ratios.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import sglang_nb as sgl

SHOTS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin")]
COUNTRIES = ["Egypt", "Peru", "China", "Chile", "Kenya", "India", "Cuba", "Iran", "Greece", "Norway", "Poland",
             "Canada", "Mexico", "Sweden", "Austria", "Portugal"]
PREAMBLE = ("You are a careful assistant who answers questions about world geography. For every question, "
            "recall what you know about the country, its history, its regions and its cities, and then give "
            "the name of its capital city as a short answer without any further explanation.\n")


@sgl.function
def few_shot(s, question):
    s += PREAMBLE
    for country, capital in SHOTS:
        s += f"Q: What is the capital city of {country}?\nA: {capital}\n"
    s += "Q: " + question + "\nA:"
    s += sgl.gen("answer", stop="\n", temperature=0)


@sgl.function
def tree_of_thought(s, problem, width, depth_width):
    s += PREAMBLE + "Problem: " + problem + "\n"
    thoughts = s.fork(width)
    for i in range(width):
        thoughts[i] += f"Idea {i + 1}:" + sgl.gen("idea", stop="\n", temperature=0.7)
        critiques = thoughts[i].fork(depth_width)
        for j in range(depth_width):
            critiques[j] += f"\nCritique {j + 1} of idea {i + 1}:" + sgl.gen("critique", stop="\n", temperature=0.7)
        critiques.join()
    thoughts.join()
    s += "Best idea:" + sgl.gen("best", stop="\n", temperature=0)


def measure(name: str, fn: Any) -> dict[str, Any]:
    start = time.perf_counter()
    states = fn()
    elapsed = time.perf_counter() - start
    records = states.request_tree.requests()
    prompt = sum(r.prompt_tokens or 0 for r in records)
    cached = sum(r.cached_tokens or 0 for r in records)
    output = sum(r.completion_tokens or 0 for r in records)
    return {"workload": name, "seconds": round(elapsed, 3), "programs": len(states), "requests": len(records),
            "prompt_tokens": prompt, "cached_tokens": cached, "output_tokens": output,
            "cache_hit_ratio": round(cached / prompt, 4) if prompt else 0.0,
            "programs_per_s": round(len(states) / elapsed, 3), "tokens_per_s": round((prompt + output) / elapsed, 1)}


def run_workloads(args: argparse.Namespace, disable_radix_cache: bool) -> list[dict[str, Any]]:
    engine = sgl.Engine(model_path=args.model_path, disable_radix_cache=disable_radix_cache,
                        max_total_tokens=args.max_total_tokens)
    try:
        sgl.set_default_backend(engine)
        questions = [{"question": f"What is the capital city of {COUNTRIES[i % len(COUNTRIES)]}?"}
                     for i in range(args.num_questions)]
        few_shot.run(**questions[0], max_new_tokens=2)  # warm-up (not measured); the flush below empties the cache
        engine.flush_cache()
        results = [measure("few_shot", lambda: few_shot.run_batch(questions, max_new_tokens=args.max_tokens))]
        engine.flush_cache()
        problems = [{"problem": f"Plan a one-day visit to the capital of {c}.", "width": args.tot_width,
                     "depth_width": args.tot_depth_width} for c in COUNTRIES[:args.tot_problems]]
        results.append(measure("tree_of_thought",
                               lambda: tree_of_thought.run_batch(problems, max_new_tokens=args.max_tokens)))
        for r in results:
            r["radix_cache"] = not disable_radix_cache
            print(json.dumps(r), flush=True)
        return results
    finally:
        sgl.set_default_backend(None)
        engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None, help="Model (default: the embedded SmolLM2-135M-Instruct).")
    parser.add_argument("--num-questions", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--tot-problems", type=int, default=4)
    parser.add_argument("--tot-width", type=int, default=3)
    parser.add_argument("--tot-depth-width", type=int, default=2)
    parser.add_argument("--max-total-tokens", type=int, default=65536)
    args = parser.parse_args()
    with_cache = run_workloads(args, disable_radix_cache=False)
    without = run_workloads(args, disable_radix_cache=True)
    for on, off in zip(with_cache, without):
        print(json.dumps({"workload": on["workload"], "speedup_radix_on_vs_off": round(off["seconds"] / on["seconds"], 2),
                          "hit_ratio_on": on["cache_hit_ratio"], "hit_ratio_off": off["cache_hit_ratio"]}))


if __name__ == "__main__":
    main()
