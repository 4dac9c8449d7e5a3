"""Attention backends: torch_native (CPU and reference), triton and flashinfer (GPU)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...model_executor.model_runner import ModelRunner
    from .base import AttentionBackend


def create_attention_backend(name: str, runner: ModelRunner) -> AttentionBackend:
    """Import the named backend lazily (GPU backends need CUDA and Triton)."""
    if name == "torch_native":
        from .torch_native import TorchNativeAttnBackend

        return TorchNativeAttnBackend(runner)
    if name == "triton":
        from .triton_backend import TritonAttnBackend

        return TritonAttnBackend(runner)
    if name == "flashinfer":
        from .flashinfer_backend import FlashInferAttnBackend

        return FlashInferAttnBackend(runner)
    raise ValueError(f"Unknown attention backend: {name}")
