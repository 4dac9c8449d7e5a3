"""The language's public constructors: `function`, `gen`, `select`, roles, media, and backend helpers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .choices import ChoicesSamplingMethod, token_length_normalized
from .global_config import global_config
from .ir import (
    SglExpr,
    SglExprList,
    SglGen,
    SglImage,
    SglRoleBegin,
    SglRoleEnd,
    SglSamplingParams,
    SglSelect,
    SglSeparateReasoning,
    SglVideo,
)


def function(func: Callable[..., Any] | None = None, num_api_spec_tokens: int | None = None) -> Any:
    """`@function` or `@function(num_api_spec_tokens=N)`: turn `def prog(s, ...)` into a program."""
    from .program import SglFunction

    if func is not None:
        return SglFunction(func, num_api_spec_tokens=num_api_spec_tokens)

    def decorator(f: Callable[..., Any]) -> SglFunction:
        return SglFunction(f, num_api_spec_tokens=num_api_spec_tokens)

    return decorator


def set_default_backend(backend: Any) -> None:
    """Use `backend` (an Engine, RuntimeEndpoint, Runtime or OpenAI) for programs run without one."""
    global_config.default_backend = backend


def _admin_backend(backend: Any) -> Any:
    from .program import resolve_backend

    return resolve_backend(backend)


def flush_cache(backend: Any = None) -> Any:
    """Flush the radix cache of `backend` (default backend if None)."""
    return _admin_backend(backend).flush_cache()


def get_server_info(backend: Any = None) -> Any:
    return _admin_backend(backend).get_server_info()


def gen(name: str | None = None, max_tokens: int | None = None, min_tokens: int | None = None, n: int | None = None,
        stop: str | list[str] | None = None, stop_token_ids: list[int] | None = None,
        stop_regex: str | list[str] | None = None, temperature: float | None = None, top_p: float | None = None,
        top_k: int | None = None, min_p: float | None = None, frequency_penalty: float | None = None,
        presence_penalty: float | None = None, ignore_eos: bool | None = None, return_logprob: bool | None = None,
        logprob_start_len: int | None = None, top_logprobs_num: int | None = None,
        return_text_in_logprobs: bool | None = None, dtype: Any = None, choices: list[str] | None = None,
        choices_method: ChoicesSamplingMethod | None = None, regex: str | None = None,
        json_schema: str | dict[str, Any] | None = None) -> SglExpr:
    """Generate text into variable `name`; None parameters inherit the run-level defaults."""
    if choices:
        return SglSelect(name, list(choices), 0.0 if temperature is None else temperature,
                         choices_method or token_length_normalized)
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as e:
            raise ValueError(f"Invalid regex {regex!r}: {e}") from None
    if isinstance(json_schema, dict):
        import json

        json_schema = json.dumps(json_schema)
    params = SglSamplingParams(
        max_new_tokens=max_tokens, min_new_tokens=min_tokens, n=n, stop=stop, stop_token_ids=stop_token_ids,
        stop_regex=stop_regex, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
        frequency_penalty=frequency_penalty, presence_penalty=presence_penalty, ignore_eos=ignore_eos,
        return_logprob=return_logprob, logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
        return_text_in_logprobs=return_text_in_logprobs, dtype=dtype, regex=regex, json_schema=json_schema)
    return SglGen(name, params)


def gen_int(name: str | None = None, max_tokens: int | None = None, n: int | None = None,
            stop: str | list[str] | None = None, stop_token_ids: list[int] | None = None,
            stop_regex: str | list[str] | None = None, temperature: float | None = None, top_p: float | None = None,
            top_k: int | None = None, min_p: float | None = None, frequency_penalty: float | None = None,
            presence_penalty: float | None = None, ignore_eos: bool | None = None,
            return_logprob: bool | None = None, logprob_start_len: int | None = None,
            top_logprobs_num: int | None = None, return_text_in_logprobs: bool | None = None) -> SglExpr:
    """Generate an integer (constrained by a regex)."""
    return gen(name, max_tokens=max_tokens, n=n, stop=stop, stop_token_ids=stop_token_ids, stop_regex=stop_regex,
               temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, frequency_penalty=frequency_penalty,
               presence_penalty=presence_penalty, ignore_eos=ignore_eos, return_logprob=return_logprob,
               logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
               return_text_in_logprobs=return_text_in_logprobs, dtype=int)


def gen_string(name: str | None = None, max_tokens: int | None = None, n: int | None = None,
               stop: str | list[str] | None = None, stop_token_ids: list[int] | None = None,
               stop_regex: str | list[str] | None = None, temperature: float | None = None,
               top_p: float | None = None, top_k: int | None = None, min_p: float | None = None,
               frequency_penalty: float | None = None, presence_penalty: float | None = None,
               ignore_eos: bool | None = None, return_logprob: bool | None = None,
               logprob_start_len: int | None = None, top_logprobs_num: int | None = None,
               return_text_in_logprobs: bool | None = None) -> SglExpr:
    """Generate a double-quoted string of word characters and spaces."""
    return gen(name, max_tokens=max_tokens, n=n, stop=stop, stop_token_ids=stop_token_ids, stop_regex=stop_regex,
               temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, frequency_penalty=frequency_penalty,
               presence_penalty=presence_penalty, ignore_eos=ignore_eos, return_logprob=return_logprob,
               logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
               return_text_in_logprobs=return_text_in_logprobs, dtype=str)


def select(name: str | None = None, choices: list[str] | None = None, temperature: float = 0.0,
           choices_method: ChoicesSamplingMethod = token_length_normalized) -> SglExpr:
    """Append the most likely of `choices` (scored from prompt logprobs) and store it in `name`."""
    if not choices:
        raise ValueError("select() needs a non-empty list of choices.")
    if not all(isinstance(c, str) for c in choices):
        raise TypeError("select() choices must be strings.")
    return SglSelect(name, list(choices), temperature, choices_method)


def image(expr: Any) -> SglExpr:
    """An image (file path, bytes, PIL image or tensor) placed in the prompt."""
    return SglImage(expr)


def video(path: str, num_frames: int) -> SglExpr:
    return SglVideo(path, num_frames)


def _role(name: str, expr: Any = None) -> SglExpr:
    if expr is None:
        return SglExprList([SglRoleBegin(name), SglRoleEnd(name)])
    return SglRoleBegin(name) + expr + SglRoleEnd(name)


def system(expr: Any = None) -> SglExpr:
    return _role("system", expr)


def user(expr: Any = None) -> SglExpr:
    return _role("user", expr)


def assistant(expr: Any = None) -> SglExpr:
    return _role("assistant", expr)


def system_begin() -> SglExpr:
    return SglRoleBegin("system")


def system_end() -> SglExpr:
    return SglRoleEnd("system")


def user_begin() -> SglExpr:
    return SglRoleBegin("user")


def user_end() -> SglExpr:
    return SglRoleEnd("user")


def assistant_begin() -> SglExpr:
    return SglRoleBegin("assistant")


def assistant_end() -> SglExpr:
    return SglRoleEnd("assistant")


def separate_reasoning(expr: Any = None, model_type: str | None = None) -> SglExpr:
    """After `expr` (a named gen), split its reasoning into `<name>_reasoning_content`."""
    return SglExprList([expr, SglSeparateReasoning(model_type, expr=expr)])
