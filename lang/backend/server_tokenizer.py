"""A tokenizer stand-in backed by the server: `/tokenize` for ids, its Jinja template for roles.

Loading a Hugging Face tokenizer in the client costs seconds (transformers' import alone); a kernel
that talks to a runtime only needs exact token ids for `select` and request trees, and the role
markers of the chat template. The server publishes its template in `/get_model_info`
(`chat_template`, `chat_template_tokens`); it is rendered here the way transformers renders it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any


def _raise(message: str) -> None:
    raise ValueError(message)


class ServerTokenizer:
    """`encode` through the server's `/tokenize`; `apply_chat_template` rendered locally (text only)."""

    def __init__(self, chat_template: str, special_tokens: dict[str, str],
                 post_json: Callable[[str, dict[str, Any]], Any]) -> None:
        self.chat_template = chat_template
        self.special_tokens = dict(special_tokens)
        self._post_json = post_json
        self._compiled: Any = None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text` as the server's tokenizer makes them (one HTTP round trip)."""
        out = self._post_json("/tokenize", {"prompt": text, "add_special_tokens": add_special_tokens})
        return [int(t) for t in out["tokens"]]

    def apply_chat_template(self, messages: list[dict[str, Any]], tokenize: bool = False,
                            add_generation_prompt: bool = False, **kwargs: Any) -> str:
        if tokenize:
            raise ValueError("ServerTokenizer renders text only; pass tokenize=False.")
        return str(self._template().render(messages=messages, add_generation_prompt=add_generation_prompt,
                                           **self.special_tokens, **kwargs))

    def _template(self) -> Any:
        if self._compiled is None:
            # The environment transformers uses for chat templates: sandboxed, trimmed blocks,
            # loop controls, `raise_exception` and `strftime_now` available to the template.
            from jinja2.ext import loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
            env.globals["raise_exception"] = _raise
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            self._compiled = env.from_string(self.chat_template)
        return self._compiled
