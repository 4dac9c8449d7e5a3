"""Hugging Face transformers `generate` on the same GPU and shapes as bench_one_batch (the baseline).

    python benchmarks/hf_baseline_gpu.py --model-path DIR [--load-format dummy] --batch-size 1 \
        --input-len 128 --output-len 256 [--json out.json]

Greedy, bf16, eager, static KV cache off (transformers' default). With `--load-format dummy` the
model is built from DIR's config.json with random weights on the GPU (no checkpoint needed).
Reports time per output token after the first (decode) and the prefill time.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-path", required=True)
    p.add_argument("--load-format", default="auto", choices=["auto", "dummy"])
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=256)
    p.add_argument("--json", default="")
    args = p.parse_args()
    if args.load_format == "dummy":
        cfg = AutoConfig.from_pretrained(args.model_path)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        for prm in model.parameters():
            prm.data.uniform_(-1e-2, 1e-2)
    else:
        # transformers wraps `cuda` with functools.wraps, whose type does not bind `self`
        model = AutoModelForCausalLM.from_pretrained(args.model_path, dtype=torch.bfloat16).cuda()  # type: ignore[call-arg]
    model.eval()
    vocab = model.config.vocab_size
    ids = torch.randint(0, min(vocab, 10000), (args.batch_size, args.input_len), device="cuda")
    mask = torch.ones_like(ids)

    def run(n: int) -> float:
        torch.cuda.synchronize()
        t = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                       pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - t

    with torch.inference_mode():
        run(4)  # warm-up
        t1 = run(1)
        tn = run(args.output_len)
    per_token = (tn - t1) / (args.output_len - 1)
    r = {"device": torch.cuda.get_device_name(), "batch_size": args.batch_size, "input_len": args.input_len,
         "output_len": args.output_len, "prefill_s": t1, "decode_s_per_token": per_token, "total_s": tn}
    print(f"HF generate: prefill {t1 * 1e3:.1f} ms, decode {per_token * 1e3:.2f} ms/token "
          f"({args.batch_size / per_token:.1f} tok/s), total {tn:.2f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f)


if __name__ == "__main__":
    main()
