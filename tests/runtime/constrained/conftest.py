"""Fixtures of the grammar-backend tests: SmolLM2's tokenizer (from the embedded model, or from the
directory in SGLANG_NB_TEST_TOKENIZER on hosts without it) and a tiny random model that uses it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def _tokenizer_dir() -> str | None:
    env = os.environ.get("SGLANG_NB_TEST_TOKENIZER")
    if env:
        return env
    try:
        from sglang_nb.runtime.model_loader.resolve import resolve_model_dir

        return resolve_model_dir(None)
    except Exception:  # noqa: BLE001 - no embedded model on this host
        return None


@pytest.fixture(scope="session")
def smol_tokenizer_dir() -> str:
    path = _tokenizer_dir()
    if path is None:
        pytest.skip("needs SmolLM2's tokenizer (embedded model or SGLANG_NB_TEST_TOKENIZER)")
    return path


@pytest.fixture(scope="session")
def tokenizer(smol_tokenizer_dir: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_grammar_model(tiny_model_factory: Callable[..., str], smol_tokenizer_dir: str) -> str:
    """A tiny random Llama over SmolLM2's vocabulary, with its tokenizer files."""
    path = Path(tiny_model_factory("llama_grammar", "LlamaConfig", vocab_size=49152, bos_token_id=1, eos_token_id=2,
                                   pad_token_id=2, hidden_size=128, intermediate_size=256,
                                   max_position_embeddings=2048))
    for name in TOKENIZER_FILES:
        if (Path(smol_tokenizer_dir) / name).exists():
            shutil.copy(Path(smol_tokenizer_dir) / name, path / name)
    return str(path)
