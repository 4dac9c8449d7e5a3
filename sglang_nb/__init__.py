"""sglang_nb: a Jupyter-native LLM serving kernel with SGLang's frontend language and APIs.

`import sglang_nb as sgl` gives SGLang's public surface (Engine, the language primitives) and the
Jupyter extension entry points. Heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sglang_nb.runtime import __version__

if TYPE_CHECKING:
    from sglang_nb.runtime.engine import Engine

_LAZY = {
    "Engine": ("sglang_nb.runtime.engine", "Engine"),
    "ServerArgs": ("sglang_nb.runtime.server_args", "ServerArgs"),
}
# The frontend language (SGLang's `sglang.lang` surface), loaded on first use.
_LANG_NAMES = (
    "function", "gen", "gen_int", "gen_string", "select", "image", "video", "system", "user", "assistant",
    "system_begin", "system_end", "user_begin", "user_end", "assistant_begin", "assistant_end",
    "separate_reasoning", "set_default_backend", "flush_cache", "get_server_info", "global_config",
    "token_length_normalized", "greedy_token_selection", "unconditional_likelihood_normalized",
    "RuntimeEndpoint", "Runtime", "OpenAI", "ProgramState", "SglFunction", "RequestTree",
)
_LAZY.update({name: ("sglang_nb.lang", name) for name in _LANG_NAMES})
# The notebook's runtime handle: its own process session, lifeline, registry (sglang_nb/_runtime.py).
_LAZY["Runtime"] = ("sglang_nb._runtime", "Runtime")
_LAZY["current_runtime"] = ("sglang_nb._runtime", "current_runtime")


def load_ipython_extension(ip: Any) -> None:
    """`%load_ext sglang_nb`: the `%sgl` / `%%sgl` magics."""
    from sglang_nb.magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    from sglang_nb.magics import unload_ipython_extension as unload

    unload(ip)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The jupyter_server extension (`sglang_nb` routes under the server's base URL)."""
    from sglang_nb.server_extension import SglangNbApp

    return [{"module": "sglang_nb.server_extension", "app": SglangNbApp}]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'sglang_nb' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


__all__ = ["Engine", "ServerArgs", "__version__", "current_runtime", *_LANG_NAMES]
