"""The frontend language: `@function` programs with gen/select/fork, run on an Engine or a server."""

from __future__ import annotations

import importlib
from typing import Any

from .api import (
    assistant,
    assistant_begin,
    assistant_end,
    flush_cache,
    function,
    gen,
    gen_int,
    gen_string,
    get_server_info,
    image,
    select,
    separate_reasoning,
    set_default_backend,
    system,
    system_begin,
    system_end,
    user,
    user_begin,
    user_end,
    video,
)
from .choices import greedy_token_selection, token_length_normalized, unconditional_likelihood_normalized
from .global_config import global_config

_LAZY = {
    "RuntimeEndpoint": ("sglang_nb.lang.backend.runtime_endpoint", "RuntimeEndpoint"),
    "Runtime": ("sglang_nb._runtime", "Runtime"),
    "OpenAI": ("sglang_nb.lang.backend.openai", "OpenAI"),
    "EngineBackend": ("sglang_nb.lang.backend.engine", "EngineBackend"),
    "SglFunction": ("sglang_nb.lang.program", "SglFunction"),
    "ProgramState": ("sglang_nb.lang.state", "ProgramState"),
    "RequestTree": ("sglang_nb.lang.tree", "RequestTree"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'sglang_nb.lang' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


__all__ = [
    "function", "gen", "gen_int", "gen_string", "select", "image", "video", "system", "user", "assistant",
    "system_begin", "system_end", "user_begin", "user_end", "assistant_begin", "assistant_end",
    "separate_reasoning", "set_default_backend", "flush_cache", "get_server_info", "global_config",
    "token_length_normalized", "greedy_token_selection", "unconditional_likelihood_normalized", *_LAZY,
]
