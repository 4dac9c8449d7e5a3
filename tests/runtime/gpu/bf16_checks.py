"""The bf16 acceptance comparison: GPU outputs against the fp32 CPU engine's on the seed set."""

from __future__ import annotations

from typing import Any

LOGPROB_TOL = 2e-2


def compare_outputs(got: list[dict[str, Any]], ref: dict[str, Any]) -> tuple[int, float]:
    """(number of selected seeds whose tokens differ, worst |logprob difference| on identical tokens)."""
    mismatched, worst = 0, 0.0
    for i, out in zip(ref["selected"], got):
        want = ref["outputs"][i]
        if out["output_ids"] != want["output_ids"]:
            mismatched += 1
            continue
        for (lp, _, _), (lp_ref, _, _) in zip(out["meta_info"]["output_token_logprobs"],
                                              want["meta_info"]["output_token_logprobs"]):
            worst = max(worst, abs(lp - lp_ref))
    return mismatched, worst


def static_batch_outputs(runner: Any, prompts: list[list[int]], new_tokens: int) -> list[dict[str, Any]]:
    """Greedy outputs with logprobs from a StaticBatchRunner, in the engine's output format."""
    import torch

    outs = []
    for prompt in prompts:
        reqs = runner.new_reqs([prompt], new_tokens)
        ids, logits, batch = runner.extend(reqs)
        tokens, lps = [], []
        for step in range(new_tokens):
            if step:
                ids, logits = runner.decode(ids, batch)
            tok = int(ids[0])
            tokens.append(tok)
            lps.append((float(torch.log_softmax(logits[0].float(), -1)[tok]), tok, None))
        runner.release(batch)
        outs.append({"output_ids": tokens, "meta_info": {"output_token_logprobs": lps}})
    return outs
