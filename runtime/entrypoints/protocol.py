"""Request validation for the HTTP API: JSON bodies become the runtime's request types, and every
wrong type or out-of-range value becomes an `ApiError` (HTTP 4xx) that names the field.

Only the native `/generate` body is parsed here; the OpenAI bodies are in `openai_protocol.py`.
"""

from __future__ import annotations

import math
from typing import Any

from ..managers.io_struct import GenerateReqInput


class ApiError(Exception):
    """A client error: HTTP `status` with a message naming the offending `param`."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param


# ---- typed field readers ---------------------------------------------------------------------

_MISSING = object()


def _type_name(value: Any) -> str:
    return "null" if value is None else {bool: "boolean", int: "integer", float: "number", str: "string",
                                         list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _wrong(name: str, expected: str, value: Any) -> ApiError:
    return ApiError(f"{name} must be {expected}, got {_type_name(value)}.", param=name)


def get_bool(body: dict[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _wrong(name, "a boolean", value)
    return value


def get_int(body: dict[str, Any], name: str, default: Any = None, lo: int | None = None,
            hi: int | None = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not value.is_integer()):
        raise _wrong(name, "an integer", value)
    value = int(value)
    _check_range(name, value, lo, hi)
    return value


def get_number(body: dict[str, Any], name: str, default: Any = None, lo: float | None = None,
               hi: float | None = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _wrong(name, "a finite number", value)
    _check_range(name, value, lo, hi)
    return float(value)


def _check_range(name: str, value: float, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            raise ApiError(f"{name} must be in [{lo}, {hi}], got {value}.", param=name)
        if lo is not None:
            raise ApiError(f"{name} must be at least {lo}, got {value}.", param=name)
        raise ApiError(f"{name} must be at most {hi}, got {value}.", param=name)


def get_str(body: dict[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)
    return value


def get_dict(body: dict[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise _wrong(name, "an object", value)
    return value


def get_stop(body: dict[str, Any], name: str = "stop") -> list[str] | str | None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise ApiError(f"{name} must be a string or an array of strings.", param=name)


def get_int_list(body: dict[str, Any], name: str) -> list[int] | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        return value
    raise ApiError(f"{name} must be an array of integers.", param=name)


def is_token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


# ---- native /generate ------------------------------------------------------------------------

# Fields of SGLang's newer releases that clients may send; accepted and ignored.
IGNORED_GENERATE_FIELDS = frozenset({
    "priority", "extra_key", "cache_salt", "session_id", "return_prompt_token_ids", "return_entropy",
    "custom_labels", "log_metrics", "return_routed_experts", "require_reasoning", "max_thinking_tokens",
    "mm_hashes", "bootstrap_host", "bootstrap_port", "bootstrap_room", "data_parallel_rank",
    "routed_dp_rank", "modalities", "background", "conversation_id", "no_logs",
})
GENERATE_FIELDS = frozenset({
    "text", "input_ids", "input_embeds", "image_data", "audio_data", "video_data", "sampling_params", "rid",
    "return_logprob", "logprob_start_len", "top_logprobs_num", "token_ids_logprob", "return_text_in_logprobs",
    "stream", "lora_path", "custom_logit_processor", "return_hidden_states", "session_params",
})


def _scalar_or_list(body: dict[str, Any], name: str, check: Any, expected: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if not all(check(v) for v in items):
        raise ApiError(f"{name} must be {expected} or an array of them.", param=name)
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_generate(body: dict[str, Any], *, multimodal: bool = False,
                   custom_logit_processor: bool = False) -> GenerateReqInput:
    """A `/generate` body as a `GenerateReqInput`; types are checked here, semantics by normalize()."""
    unknown = sorted(set(body) - GENERATE_FIELDS - IGNORED_GENERATE_FIELDS)
    if unknown:
        raise ApiError(f"Unknown field(s) in the request body: {', '.join(unknown)}.", param=unknown[0])
    text = body.get("text")
    if text is not None and not isinstance(text, str) and not (
            isinstance(text, list) and all(isinstance(t, str) for t in text)):
        raise ApiError("text must be a string or an array of strings.", param="text")
    ids = body.get("input_ids")
    if ids is not None and not (isinstance(ids, list) and (
            all(_is_int(t) for t in ids) or all(isinstance(t, list) and all(_is_int(x) for x in t) for t in ids))):
        raise ApiError("input_ids must be an array of integers or an array of arrays of integers.",
                       param="input_ids")
    if body.get("input_embeds") is not None:
        raise ApiError("input_embeds is not supported by this server.", param="input_embeds")
    for name in ("audio_data", "video_data"):
        if body.get(name) is not None:
            raise ApiError(f"{name} is not supported by this server.", param=name)
    image_data = body.get("image_data")
    if image_data is not None and image_data != [] and not multimodal:
        raise ApiError("image_data was given but the served model does not accept images.", param="image_data")
    sp = body.get("sampling_params")
    if sp is not None and not isinstance(sp, dict) and not (
            isinstance(sp, list) and all(isinstance(s, dict) for s in sp)):
        raise ApiError("sampling_params must be an object or an array of objects.", param="sampling_params")
    rid = _scalar_or_list(body, "rid", lambda v: isinstance(v, str), "a string")
    ret_lp = _scalar_or_list(body, "return_logprob", lambda v: isinstance(v, bool), "a boolean")
    start = _scalar_or_list(body, "logprob_start_len", _is_int, "an integer")
    top = _scalar_or_list(body, "top_logprobs_num", _is_int, "an integer")
    token_ids = body.get("token_ids_logprob")
    if token_ids is not None and not (isinstance(token_ids, list) and (
            all(_is_int(t) for t in token_ids)
            or all(isinstance(t, list) and all(_is_int(x) for x in t) for t in token_ids))):
        raise ApiError("token_ids_logprob must be a flat list of integers.", param="token_ids_logprob")
    if body.get("lora_path") is not None:
        raise ApiError("lora_path: LoRA adapters are not supported by this server.", param="lora_path")
    if body.get("custom_logit_processor") is not None:
        if not custom_logit_processor:
            raise ApiError("The server is not configured to enable custom logit processor. Please set "
                           "`--enable-custom-logit-processor` to enable this feature.",
                           param="custom_logit_processor")
        raise ApiError("custom_logit_processor is not supported by this server yet.",
                       param="custom_logit_processor")
    if get_bool(body, "return_hidden_states", False):
        raise ApiError("return_hidden_states is not supported by this server.", param="return_hidden_states")
    if body.get("session_params") is not None:
        raise ApiError("session_params: sessions are not supported by this server.", param="session_params")
    return GenerateReqInput(
        text=text, input_ids=ids, image_data=image_data, sampling_params=sp, rid=rid, return_logprob=ret_lp,
        logprob_start_len=start, top_logprobs_num=top, token_ids_logprob=token_ids,
        return_text_in_logprobs=get_bool(body, "return_text_in_logprobs", False),
        stream=get_bool(body, "stream", False))
