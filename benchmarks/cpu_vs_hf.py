"""Output tokens/s of the engine against Hugging Face `generate`, same machine, same run, CPU fp32.

    python benchmarks/cpu_vs_hf.py [--model-path DIR] [--seed 0]

(a) one request, 128 new tokens; (b) 16 requests with prompt lengths in [20, 200] and
max_new_tokens in [16, 128] (HF runs them as one left-padded batch up to the longest output and is
credited with the requested tokens only). Both sides generate greedily and ignore EOS, so they
produce exactly the requested number of tokens. Prints a table and the ratios.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from sglang_nb.runtime.engine import Engine

TEXT = ("The history of the city begins with a small settlement on the river, where traders met to exchange "
        "salt, grain and cloth. Over the centuries the market grew into a town, the town into a city, and the "
        "city into the capital of a wide region known for its bridges, its libraries and its long winters. ")


class CausalLM(Protocol):
    """What this benchmark uses of a transformers causal LM."""

    def generate(self, *args: Any, **kwargs: Any) -> Any: ...


def hf_model(path: str, attn: str) -> CausalLM:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn).eval()


def hf_generate(model: CausalLM, tok: Any, prompts: list[list[int]], max_new: list[int]) -> float:
    """Seconds for one padded batch generating up to max(max_new) tokens."""
    width = max(len(p) for p in prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    n = max(max_new)
    t0 = time.perf_counter()
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                       pad_token_id=pad)
    return time.perf_counter() - t0


def engine_generate(engine: Engine, prompts: list[list[int]], max_new: list[int]) -> float:
    params = [{"temperature": 0, "max_new_tokens": m, "ignore_eos": True} for m in max_new]
    t0 = time.perf_counter()
    outs = engine.generate(input_ids=prompts, sampling_params=params)
    dt = time.perf_counter() - t0
    assert [len(o["output_ids"]) for o in outs] == max_new
    return dt


def main() -> None:
    from sglang_nb.runtime.engine import Engine
    from sglang_nb.runtime.model_loader.resolve import resolve_model_dir
    from sglang_nb.runtime.model_loader.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine-args", default="{}", help="JSON of extra Engine keyword arguments")
    args = parser.parse_args()
    import json

    path = resolve_model_dir(args.model_path)
    tok = load_tokenizer(path)
    text_ids = tok.encode(TEXT * 8)
    rng = random.Random(args.seed)
    single = ([text_ids[:32]], [128])
    lens = [rng.randint(20, 200) for _ in range(16)]
    start = [rng.randint(0, len(text_ids) - 201) for _ in range(16)]
    batch = ([text_ids[s:s + n] for s, n in zip(start, lens)], [rng.randint(16, 128) for _ in range(16)])
    torch.set_num_threads(torch.get_num_threads())

    rows = []
    engine = Engine(model_path=args.model_path, **json.loads(args.engine_args))
    engine_generate(engine, [text_ids[:16]], [8])  # warm-up
    for name, (prompts, max_new) in (("(a) 1 x 128", single), ("(b) 16 mixed", batch)):
        dt = engine_generate(engine, prompts, max_new)
        rows.append((name, "engine", sum(max_new) / dt, dt))
    engine.shutdown()
    for attn in ("eager", "sdpa"):
        model = hf_model(path, attn)
        hf_generate(model, tok, [text_ids[:16]], [8])  # warm-up
        for name, (prompts, max_new) in (("(a) 1 x 128", single), ("(b) 16 mixed", batch)):
            dt = hf_generate(model, tok, prompts, max_new)
            rows.append((name, f"hf-{attn}", sum(max_new) / dt, dt))
        del model

    print(f"\n{'workload':<14} {'system':<10} {'out tok/s':>10} {'seconds':>9}")
    for name, system, tps, dt in rows:
        print(f"{name:<14} {system:<10} {tps:>10.1f} {dt:>9.2f}")
    for name in ("(a) 1 x 128", "(b) 16 mixed"):
        ours = next(r[2] for r in rows if r[0] == name and r[1] == "engine")
        best_hf = max(r[2] for r in rows if r[0] == name and r[1].startswith("hf"))
        print(f"{name}: engine / best HF = {ours / best_hf:.2f}x")


if __name__ == "__main__":
    main()
