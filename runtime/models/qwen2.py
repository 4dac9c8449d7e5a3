"""Qwen2 / Qwen2.5: Llama with biases on q/k/v (none on o_proj) and, at small sizes, tied embeddings."""

from __future__ import annotations

from typing import Any

from .llama import LlamaDecoderLayer, LlamaForCausalLM, LlamaModel


class Qwen2DecoderLayer(LlamaDecoderLayer):
    @staticmethod
    def attention_biases(config: Any) -> tuple[bool, bool]:
        return True, False


class Qwen2Model(LlamaModel):
    layer_cls = Qwen2DecoderLayer


class Qwen2ForCausalLM(LlamaForCausalLM):
    model_cls = Qwen2Model


EntryClass = [Qwen2ForCausalLM]
