"""Messages between the front (TokenizerManager) and the scheduler process, plus the public
`GenerateReqInput` that HTTP handlers and `Engine.generate` build.

Everything here is a plain dataclass, pickled over ZMQ once per scheduler step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ..sampling.sampling_params import SamplingParams


def new_rid() -> str:
    return uuid.uuid4().hex


@dataclass
class GenerateReqInput:
    """A /generate body (single or batch) before normalisation. Field names follow SGLang."""

    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    input_embeds: Any = None
    image_data: Any = None
    sampling_params: dict[str, Any] | list[dict[str, Any]] | None = None
    rid: str | list[str] | None = None
    return_logprob: bool | list[bool] | None = None
    logprob_start_len: int | list[int] | None = None
    top_logprobs_num: int | list[int] | None = None
    token_ids_logprob: list[int] | list[list[int]] | None = None
    return_text_in_logprobs: bool = False
    stream: bool = False
    lora_path: Any = None
    custom_logit_processor: Any = None
    return_hidden_states: bool = False
    modalities: Any = None
    session_params: Any = None
    # Filled by normalize().
    is_single: bool = True
    batch_size: int = 1
    parallel_sample_num: int = 1

    def normalize(self) -> None:
        """Validate the input forms and work out single/batch and `n` (SGLang's rules and messages)."""
        if (self.text is None) == (self.input_ids is None):
            raise ValueError("Either text or input_ids should be provided.")
        if self.input_embeds is not None:
            raise ValueError("input_embeds is not supported by this server.")
        if self.text is not None:
            if isinstance(self.text, str):
                self.is_single, self.batch_size = True, 1
            elif isinstance(self.text, list) and all(isinstance(t, str) for t in self.text):
                if not self.text:
                    raise ValueError("text cannot be an empty list.")
                self.is_single, self.batch_size = False, len(self.text)
            else:
                raise ValueError("Text should be a list for batch processing.")
        else:
            ids = self.input_ids
            if not isinstance(ids, list) or len(ids) == 0:
                raise ValueError("input_ids cannot be empty.")
            if all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
                self.is_single, self.batch_size = True, 1
            elif all(isinstance(t, list) and t and all(isinstance(x, int) and not isinstance(x, bool) for x in t)
                     for t in ids):
                self.is_single, self.batch_size = False, len(ids)
            else:
                raise ValueError("input_ids should be a list of lists for batch processing.")

        sp = self.sampling_params
        if sp is None:
            sp = {}
        if isinstance(sp, dict):
            n = sp.get("n", 1)
        elif isinstance(sp, list):
            if len(sp) != self.batch_size or not all(isinstance(s, dict) for s in sp):
                raise ValueError("sampling_params should be a dict or a list of dicts, one per prompt.")
            ns = {s.get("n", 1) for s in sp}
            if len(ns) > 1:
                raise ValueError("The parallel_sample_num should be the same for all samples in sample params.")
            n = ns.pop() if ns else 1
        else:
            raise ValueError("sampling_params should be a dict or a list of dicts.")
        if n is None:
            n = 1
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}.")
        self.parallel_sample_num = n
        if n > 1:
            for name in ("return_logprob", "logprob_start_len", "top_logprobs_num", "custom_logit_processor"):
                if isinstance(getattr(self, name), list):
                    raise ValueError(f"Cannot use list {name} with parallel_sample_num > 1")
        if self.rid is not None:
            if self.is_single and n == 1:
                if not isinstance(self.rid, str):
                    raise ValueError("The rid should be a string or a list of strings.")
            elif isinstance(self.rid, list):
                if len(self.rid) != self.batch_size:
                    raise ValueError("The specified rids length mismatch with the batch_size for batch processing.")
                if not all(isinstance(r, str) for r in self.rid):
                    raise ValueError("The rid should be a string or a list of strings.")
                if len(set(self.rid)) != len(self.rid):
                    raise ValueError(f"Duplicate request IDs detected within the request: {self.rid}")
            elif not isinstance(self.rid, str):
                raise ValueError("The rid should be a string or a list of strings.")

    def item(self, i: int, name: str, default: Any) -> Any:
        """Per-prompt value of a broadcastable field."""
        value = getattr(self, name)
        if isinstance(value, list) and not (name == "token_ids_logprob" and value and isinstance(value[0], int)):
            if len(value) != self.batch_size:
                raise ValueError(f"The length of {name} should be equal to the batch size.")
            value = value[i]
        return default if value is None else value

    def prompt(self, i: int) -> tuple[str | None, list[int] | None]:
        if self.text is not None:
            return (self.text if isinstance(self.text, str) else self.text[i]), None
        ids = self.input_ids
        assert ids is not None
        return None, (ids if self.is_single else ids[i])  # type: ignore[return-value]

    def rid_for(self, i: int) -> str:
        if self.rid is None:
            return new_rid()
        if isinstance(self.rid, str):
            return self.rid if self.is_single else f"{self.rid}_{i}"
        return self.rid[i]


@dataclass
class TokenizedGenerateReqInput:
    """One tokenized request sent to the scheduler."""

    rid: str
    input_text: str | None
    input_ids: list[int]
    sampling_params: SamplingParams
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    token_ids_logprob: list[int] | None = None
    stream: bool = False
    image_inputs: Any = None


@dataclass
class AbortReq:
    rid: str  # "" aborts everything


@dataclass
class FlushCacheReq:
    pass


@dataclass
class FlushCacheOutput:
    success: bool
    message: str = ""


PROFILE_ACTIVITIES = ("CPU", "GPU", "CUDA", "MEM")


@dataclass
class ProfileReq:
    """Start or stop the scheduler's torch profiler (`/start_profile`, `/stop_profile`)."""

    action: str  # "start" | "stop"
    output_dir: str | None = None
    start_step: int | None = None
    num_steps: int | None = None
    activities: list[str] | None = None  # CPU, GPU (CUDA), MEM
    with_stack: bool = False
    record_shapes: bool = False

    def validate(self) -> None:
        """ValueError naming the field for a value the profiler cannot take."""
        if self.action not in ("start", "stop"):
            raise ValueError(f"action must be 'start' or 'stop', got {self.action!r}.")
        if self.output_dir is not None and not isinstance(self.output_dir, str):
            raise ValueError("output_dir must be a string (a folder path).")
        for name, lo in (("start_step", 0), ("num_steps", 1)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < lo):
                raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}.")
        if self.activities is not None:
            if not isinstance(self.activities, list) or not all(a in PROFILE_ACTIVITIES for a in self.activities):
                raise ValueError(f"activities must be a list drawn from {list(PROFILE_ACTIVITIES)}, "
                                 f"got {self.activities!r}.")
        for name in ("with_stack", "record_shapes"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean, got {getattr(self, name)!r}.")


@dataclass
class ProfileOutput:
    success: bool
    message: str = ""
    trace_path: str | None = None


@dataclass
class GetInternalStateReq:
    """Ask the scheduler for counters and (optionally) a snapshot of the radix tree."""

    with_tree: bool = False
    max_nodes: int = 64


@dataclass
class InternalState:
    state: dict[str, Any]


@dataclass
class SchedulerReady:
    """Sent once by the scheduler after the model is loaded."""

    info: dict[str, Any]


@dataclass
class SchedulerFailed:
    message: str


@dataclass
class BatchTokenIDOut:
    """Per step: for each request with news, the new token ids and bookkeeping.

    Lists are parallel (one entry per request). Logprob lists hold only the entries produced since
    the last message for that request.
    """

    rids: list[str] = field(default_factory=list)
    new_token_ids: list[list[int]] = field(default_factory=list)
    finished_reasons: list[dict[str, Any] | None] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    cached_tokens: list[int] = field(default_factory=list)
    # Logprob deltas, None for requests that did not ask for logprobs.
    input_token_logprobs: list[Any] = field(default_factory=list)  # list[(vals, ids)] | None
    input_top_logprobs: list[Any] = field(default_factory=list)
    input_token_ids_logprobs: list[Any] = field(default_factory=list)
    output_token_logprobs: list[Any] = field(default_factory=list)
    output_top_logprobs: list[Any] = field(default_factory=list)
    output_token_ids_logprobs: list[Any] = field(default_factory=list)
    normalized_prompt_logprob: list[float | None] = field(default_factory=list)
