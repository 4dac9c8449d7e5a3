"""Prefix sharing in language programs: radix cache on vs `--disable-radix-cache`, same run.

Two workloads on one model (default: the embedded SmolLM2 on CPU):
  * few-shot: a 5-shot QA program over N questions with `run_batch` (the shared shots are prefilled once);
  * tree of thought: per problem (over a shared travel guide), fork into ideas, fork each idea into
    critiques, join, conclude.

    python benchmarks/lang_prefix_sharing.py [--model-path M] [--num-questions 64] [--max-tokens 8]

Prints one JSON line per (workload, cache setting) and the throughput ratios.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import sglang_nb as sgl

SHOTS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin")]
COUNTRIES = ["Egypt", "Peru", "China", "Chile", "Kenya", "India", "Cuba", "Iran", "Greece", "Norway", "Poland",
             "Canada", "Mexico", "Sweden", "Austria", "Portugal"]
PREAMBLE = ("You are a careful assistant who answers questions about world geography. For every question, "
            "recall what you know about the country, its history, its regions and its cities, and then give "
            "the name of its capital city as a short answer without any further explanation.\n")


@sgl.function
def few_shot(s: Any, question: str) -> None:  # s: the program state (a tracer's when traced)
    s += PREAMBLE
    for country, capital in SHOTS:
        s += f"Q: What is the capital city of {country}?\nA: {capital}\n"
    s += "Q: " + question + "\nA:"
    s += sgl.gen("answer", stop="\n", temperature=0)


GUIDE = ("Travel notes. The old town sits on a bend of the river, with a cathedral, a covered market and a "
         "castle on the hill. Museums open at nine and close at six, except on Mondays. Trams cross the centre every "
         "ten minutes; the funicular to the castle runs until dusk. The market is busiest before noon, when the "
         "fishmongers and bakers arrive. Lunch is served late, rarely before two. In the afternoon the riverside "
         "walk is shaded and quiet, and boats leave from the stone pier every half hour for a short tour. The "
         "evening view from the castle terrace is the best in the city, and the small squares below fill with "
         "music after dark. ") * 2


@sgl.function
def tree_of_thought(s: Any, problem: str, width: int, depth_width: int) -> None:
    s += PREAMBLE + GUIDE + "\nProblem: " + problem + "\n"
    thoughts = s.fork(width)
    for i in range(width):
        thoughts[i] += f"Idea {i + 1}:" + sgl.gen("idea", stop="\n", temperature=0.7)
        critiques = thoughts[i].fork(depth_width)
        for j in range(depth_width):
            critiques[j] += f"\nCritique {j + 1} of idea {i + 1}:" + sgl.gen("critique", stop="\n", temperature=0.7)
        critiques.join()
    thoughts.join()
    s += "Best idea:" + sgl.gen("best", stop="\n", temperature=0)


def measure(name: str, radix_cache: bool, run: Callable[[Any], Any], engine: Any) -> dict[str, Any]:
    start = time.perf_counter()
    states = run(engine)
    elapsed = time.perf_counter() - start
    records = states.request_tree.requests()
    prompt = sum(r.prompt_tokens or 0 for r in records)
    cached = sum(r.cached_tokens or 0 for r in records)
    output = sum(r.completion_tokens or 0 for r in records)
    return {"workload": name, "radix_cache": radix_cache, "seconds": round(elapsed, 3), "programs": len(states),
            "requests": len(records), "prompt_tokens": prompt, "cached_tokens": cached,
            "computed_prompt_tokens": prompt - cached, "output_tokens": output,
            "cache_hit_ratio": round(cached / prompt, 4) if prompt else 0.0,
            "programs_per_s": round(len(states) / elapsed, 3), "tokens_per_s": round((prompt + output) / elapsed, 1)}


def workloads(args: argparse.Namespace) -> dict[str, Callable[[Any], Any]]:
    questions = [{"question": f"What is the capital city of {COUNTRIES[i % len(COUNTRIES)]}?"}
                 for i in range(args.num_questions)]
    problems = [{"problem": f"Plan a one-day visit to the capital of {c}.", "width": args.tot_width,
                 "depth_width": args.tot_depth_width} for c in COUNTRIES[:args.tot_problems]]
    return {
        "few_shot": lambda engine: few_shot.run_batch(questions, max_new_tokens=args.max_tokens, backend=engine),
        "tree_of_thought": lambda engine: tree_of_thought.run_batch(problems, max_new_tokens=args.max_tokens,
                                                                    backend=engine),
    }


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
    # Both engines live side by side and the runs alternate, so a change in machine load hits both.
    engines = {on: sgl.Engine(model_path=args.model_path, disable_radix_cache=not on,
                              max_total_tokens=args.max_total_tokens) for on in (True, False)}
    try:
        for engine in engines.values():  # warm-up, not measured; the cache is emptied after it
            few_shot.run(question="What is the capital city of Chile?", max_new_tokens=2, backend=engine)
            engine.flush_cache()
        results: dict[tuple[str, bool], dict[str, Any]] = {}
        for name, run in workloads(args).items():
            for on, engine in engines.items():
                engine.flush_cache()
                results[name, on] = measure(name, on, run, engine)
                print(json.dumps(results[name, on]), flush=True)
        for name in workloads(args):
            r_on, r_off = results[name, True], results[name, False]
            print(json.dumps({"workload": name, "speedup_radix_on_vs_off": round(r_off["seconds"] / r_on["seconds"], 2),
                              "computed_prompt_tokens_on_vs_off": [r_on["computed_prompt_tokens"],
                                                                   r_off["computed_prompt_tokens"]],
                              "hit_ratio_on": r_on["cache_hit_ratio"]}))
    finally:
        for engine in engines.values():
            engine.shutdown()


if __name__ == "__main__":
    main()
