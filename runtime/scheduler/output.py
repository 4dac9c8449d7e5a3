"""Collect what each request produced since its last message into one BatchTokenIDOut per step."""

from __future__ import annotations

from ..managers.io_struct import BatchTokenIDOut
from .req import Req


def collect_outputs(reqs: list[Req], stream_interval: int) -> BatchTokenIDOut:
    """Requests that finished, or that stream and are due, contribute their news (logprob deltas are
    drained from the request's accumulator)."""
    out = BatchTokenIDOut()
    for req in reqs:
        if req.is_chunked > 0 and not req.finished():
            continue
        new_ids = req.output_ids[req.sent_output_len:]
        if not req.finished():
            if not req.stream or not new_ids:
                continue
            interval = req.sampling_params.stream_interval or stream_interval
            req.steps_since_stream += 1
            # The first token streams at once; later ones every `interval` steps.
            if req.sent_output_len > 0 and req.steps_since_stream < interval:
                continue
        req.steps_since_stream = 0
        req.sent_output_len = len(req.output_ids)
        out.rids.append(req.rid)
        out.new_token_ids.append(new_ids)
        out.finished_reasons.append(req.finished_reason.to_json() if req.finished_reason else None)
        out.prompt_tokens.append(len(req.origin_input_ids))
        out.completion_tokens.append(len(req.output_ids))
        out.cached_tokens.append(req.cached_tokens)
        _drain_logprobs(req, out)
    return out


def _drain_logprobs(req: Req, out: BatchTokenIDOut) -> None:
    if not req.return_logprob:
        for lst in (out.input_token_logprobs, out.input_top_logprobs, out.input_token_ids_logprobs,
                    out.output_token_logprobs, out.output_top_logprobs, out.output_token_ids_logprobs):
            lst.append(None)
        out.normalized_prompt_logprob.append(None)
        return
    acc = req.logprobs
    out.input_token_logprobs.append(acc.input_token_logprobs)
    out.input_top_logprobs.append(acc.input_top_logprobs)
    out.input_token_ids_logprobs.append(acc.input_token_ids_logprobs)
    out.output_token_logprobs.append(acc.output_token_logprobs)
    out.output_top_logprobs.append(acc.output_top_logprobs)
    out.output_token_ids_logprobs.append(acc.output_token_ids_logprobs)
    out.normalized_prompt_logprob.append(acc.input_sum / acc.input_count if acc.input_count else None)
    acc.input_token_logprobs, acc.input_top_logprobs, acc.input_token_ids_logprobs = [], [], []
    acc.output_token_logprobs, acc.output_top_logprobs, acc.output_token_ids_logprobs = [], [], []
