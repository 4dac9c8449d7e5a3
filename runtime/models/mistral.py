"""Mistral (v0.1 with a sliding window on every layer; v0.2+, NeMo and Small 3 without one)."""

from __future__ import annotations

from .llama import LlamaForCausalLM


class MistralForCausalLM(LlamaForCausalLM):
    """Llama with a global `sliding_window` (read by the shared attention block)."""


EntryClass = [MistralForCausalLM]
