"""Grammar-constrained decoding: regex, JSON schema and EBNF turned into per-step token bitmasks."""

from __future__ import annotations

from .grammar_backend import GrammarBackend, create_grammar_backend

__all__ = ["GrammarBackend", "create_grammar_backend"]
