"""Attention backends: torch_native (CPU and reference), triton and flashinfer (GPU)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...model_executor.model_runner import ModelRunner
    from .base import AttentionBackend

logger = logging.getLogger(__name__)


def create_attention_backend(name: str, runner: ModelRunner) -> AttentionBackend:
    """Import the named backend lazily (GPU backends need CUDA and Triton)."""
    if name == "torch_native":
        from .torch_native import TorchNativeAttnBackend

        return TorchNativeAttnBackend(runner)
    if name == "triton":
        from .triton_backend import TritonAttnBackend

        return TritonAttnBackend(runner)
    if name == "flashinfer":
        try:
            from .flashinfer_backend import FlashInferAttnBackend, FlashInferUnsupported

            return FlashInferAttnBackend(runner)
        except ImportError as e:
            logger.warning("flashinfer backend unavailable (%s); using the triton backend", e)
        except FlashInferUnsupported as e:
            logger.warning("flashinfer backend does not cover this model (%s); using the triton backend", e)
        return create_attention_backend("triton", runner)
    raise ValueError(f"Unknown attention backend: {name}")


def flashinfer_available() -> bool:
    """True when the flashinfer package imports (its kernels are compiled on first use)."""
    try:
        import flashinfer  # noqa: F401
    except Exception:  # a broken install (missing CUDA bindings, ...) counts as absent
        return False
    return True
