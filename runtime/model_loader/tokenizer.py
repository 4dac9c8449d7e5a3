"""Tokenizer loading shared by the front and the scheduler."""

from __future__ import annotations

from typing import Any


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
