"""SamplingParams: the `sampling_params` object of a request, with SGLang's defaults and messages."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

_GREEDY_EPS = 1e-6
TOP_K_ALL = 1 << 30


@dataclass
class SamplingParams:
    max_new_tokens: int | None = 128
    min_new_tokens: int = 0
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    regex: str | None = None
    json_schema: str | None = None
    ebnf: str | None = None
    structural_tag: str | None = None
    n: int = 1
    custom_params: dict[str, Any] | None = None
    logit_bias: dict[str, float] | None = None
    sampling_seed: int | None = None
    stream_interval: int | None = None
    # Derived by normalize(); not request fields.
    stop_strs: list[str] = field(default_factory=list, repr=False)
    stop_str_max_len: int = field(default=0, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SamplingParams:
        """Build from a request dict: unknown keys and wrong types raise ValueError naming the field.

        `null` values mean "use the default", and `seed` is accepted as an alias of `sampling_seed`.
        """
        d = dict(d or {})
        if "seed" in d:
            seed = d.pop("seed")
            d.setdefault("sampling_seed", seed)
        allowed = {f.name: f for f in fields(cls) if f.repr}
        unknown = sorted(k for k in d if k not in allowed)
        if unknown:
            raise ValueError(f"Unknown sampling parameter(s): {', '.join(unknown)}.")
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if value is None:
                if key == "max_new_tokens":
                    kwargs[key] = None
                continue
            kwargs[key] = _coerce(key, value)
        return cls(**kwargs)

    def normalize(self, tokenizer: Any | None) -> None:
        """Apply the greedy rewrite and prepare stop strings (before verify(), as SGLang does)."""
        if not math.isfinite(self.temperature) or self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")
        if self.temperature < _GREEDY_EPS:
            self.temperature = 1.0
            self.top_k = 1
        if self.top_k == -1:
            self.top_k = TOP_K_ALL
        if self.stop is None:
            self.stop_strs = []
        elif isinstance(self.stop, str):
            self.stop_strs = [self.stop]
        else:
            self.stop_strs = list(self.stop)
        self.stop_strs = [s for s in self.stop_strs if s]
        if self.stop_strs:
            if tokenizer is not None:
                self.stop_str_max_len = max(len(tokenizer.encode(s, add_special_tokens=False)) for s in self.stop_strs)
            else:
                self.stop_str_max_len = max(len(s) for s in self.stop_strs)

    def verify(self, vocab_size: int | None = None) -> None:
        if not math.isfinite(self.temperature) or self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}.")
        if self.top_k < -1 or self.top_k == 0:
            raise ValueError(f"top_k must be -1 (disable), or at least 1, got {self.top_k}.")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            raise ValueError(f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}.")
        if not -2.0 <= self.presence_penalty <= 2.0:
            raise ValueError(f"presence_penalty must be in [-2, 2], got {self.presence_penalty}.")
        if not 0.0 < self.repetition_penalty <= 2.0:
            raise ValueError(f"repetition_penalty must be in (0, 2], got {self.repetition_penalty}.")
        if self.min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens}.")
        if self.max_new_tokens is not None:
            if self.max_new_tokens < 0:
                raise ValueError(f"max_new_tokens must be at least 0, got {self.max_new_tokens}.")
            if self.min_new_tokens > self.max_new_tokens:
                raise ValueError(f"min_new_tokens must be in [0, max_new_tokens({self.max_new_tokens})], "
                                 f"got {self.min_new_tokens}.")
        grammars = [g for g in (self.regex, self.json_schema, self.ebnf) if g is not None]
        if len(grammars) > 1:
            raise ValueError("Only one of regex, json_schema, or ebnf can be set.")
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        if self.stream_interval is not None and self.stream_interval < 1:
            raise ValueError(f"stream_interval must be at least 1, got {self.stream_interval}.")
        if self.stop_token_ids is not None and vocab_size is not None:
            for t in self.stop_token_ids:
                if not 0 <= t < vocab_size:
                    raise ValueError(f"stop_token_ids must be in [0, {vocab_size - 1}], got {t}.")
        if self.logit_bias is not None:
            for key, bias in self.logit_bias.items():
                try:
                    tid = int(key)
                except (TypeError, ValueError):
                    raise ValueError(f"logit_bias keys must be token ids, got {key!r}.") from None
                if vocab_size is not None and not 0 <= tid < vocab_size:
                    raise ValueError(f"logit_bias must has keys in [0, {vocab_size - 1}], got {tid}.")
                if not isinstance(bias, (int, float)) or not math.isfinite(bias):
                    raise ValueError(f"logit_bias values must be finite numbers, got {bias!r}.")

    @property
    def is_greedy(self) -> bool:
        return self.top_k == 1

    @property
    def has_penalties(self) -> bool:
        return self.frequency_penalty != 0.0 or self.presence_penalty != 0.0 or self.repetition_penalty != 1.0

    @property
    def has_grammar(self) -> bool:
        return self.regex is not None or self.json_schema is not None or self.ebnf is not None \
            or self.structural_tag is not None


_INT_FIELDS = {"max_new_tokens", "min_new_tokens", "top_k", "n", "sampling_seed", "stream_interval"}
_FLOAT_FIELDS = {"temperature", "top_p", "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty"}
_BOOL_FIELDS = {"ignore_eos", "skip_special_tokens", "spaces_between_special_tokens", "no_stop_trim"}
_STR_FIELDS = {"regex", "ebnf", "structural_tag"}


def _coerce(key: str, value: Any) -> Any:
    """Check one field's JSON type; name the field when it is wrong."""
    if key in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{key} must be an integer, got {value!r}.")
        return int(value)
    if key in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}.")
        return float(value)
    if key in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be a boolean, got {value!r}.")
        return value
    if key in _STR_FIELDS:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {type(value).__name__}.")
        return value
    if key == "json_schema":
        if isinstance(value, dict):
            import json

            return json.dumps(value)
        if not isinstance(value, str):
            raise ValueError("json_schema must be a JSON string.")
        return value
    if key == "stop":
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value)):
            return value
        raise ValueError("stop must be a string or a list of strings.")
    if key == "stop_token_ids":
        if isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return value
        raise ValueError("stop_token_ids must be a list of integers.")
    if key in ("custom_params", "logit_bias"):
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be an object.")
        return value
    return value
