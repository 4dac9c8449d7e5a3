"""The backend interface programs run against.

Model calls are coroutines on the program loop (lang/runloop.py); admin calls (`flush_cache`,
`get_server_info`, ...) are plain synchronous methods. Each model call records the requests it sent
in a `RequestLog`, which is what request trees are built from.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..chat_template import ChatTemplate, get_chat_template

if TYPE_CHECKING:
    from ..choices import ChoicesDecision, ChoicesSamplingMethod
    from ..ir import SglSamplingParams
    from ..tree import RequestLog


@dataclass
class Prompt:
    """What a model call sends: the program's text so far and its images (base64, the wire form).

    Chat APIs use the finished turns (`messages`) and the turn being written (`open_role`, `open_text`).
    """

    text: str
    images: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    open_role: str | None = None
    open_text: str = ""


class BaseBackend:
    """Interface of every backend; subclasses implement the model calls they support."""

    support_concate_and_append = False

    def __init__(self) -> None:
        self.chat_template: ChatTemplate = get_chat_template("default")

    def get_chat_template(self) -> ChatTemplate:
        return self.chat_template

    @property
    def supports_images(self) -> bool:
        return False

    def tokenize(self, text: str) -> list[int] | None:
        """Token ids of `text` exactly as the runtime would tokenize it, or None when unknown."""
        return None

    # ---- model calls (coroutines on the program loop) ----------------------------------------

    async def generate(self, prompt: Prompt, params: SglSamplingParams, log: RequestLog) -> tuple[Any, dict[str, Any]]:
        """(completion text — a list when n > 1 —, meta_info)."""
        raise NotImplementedError(f"{type(self).__name__} cannot generate")

    def generate_stream(self, prompt: Prompt, params: SglSamplingParams,
                        log: RequestLog) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield (new text, meta_info with incremental output logprobs) per chunk."""
        raise NotImplementedError(f"{type(self).__name__} cannot stream")

    async def select(self, prompt: Prompt, choices: list[str], temperature: float,
                     method: ChoicesSamplingMethod, log: RequestLog) -> ChoicesDecision:
        raise NotImplementedError(f"{type(self).__name__} cannot select")

    async def prefill(self, prompt: Prompt, log: RequestLog, *, input_ids: list[int] | None = None,
                      kind: str = "prefill") -> dict[str, Any]:
        """Compute and cache a prefix without generating (`max_new_tokens=0`); returns meta_info."""
        return {}

    # ---- admin (synchronous) -----------------------------------------------------------------

    def cache_prefix(self, prefix_str: str) -> None:
        """Prefill `prefix_str` so that later requests starting with it hit the cache."""

    def flush_cache(self) -> Any:
        return None

    def get_server_info(self) -> dict[str, Any]:
        return {}

    def get_model_name(self) -> str:
        return ""

    def end_program(self, state: Any) -> None:
        """Called when a program state ends (no-op for stateless backends)."""

    def shutdown(self) -> None:
        """Release what the backend owns."""
