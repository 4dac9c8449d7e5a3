"""Constrained decoding on the GPU: the bitmask applied to CUDA logits, through the whole engine
(CUDA graphs and the overlap loop on, their defaults)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.gpu

IPV4 = r"((25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^[a-z]{1,8}$"},
                                           "n": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["name", "n"], "additionalProperties": False}


@pytest.fixture(scope="module")
def gpu_engine(tiny_grammar_model: str) -> Iterator[Any]:
    from sglang_nb.runtime.engine import Engine

    with Engine(model_path=tiny_grammar_model, device="cuda", max_total_tokens=8192) as engine:
        yield engine


def test_regex_json_and_free_rows_in_one_gpu_batch(gpu_engine):
    import jsonschema

    outs = gpu_engine.generate(["IP:", "JSON:", "Free:"], [
        {"regex": IPV4, "temperature": 0, "max_new_tokens": 20},
        {"json_schema": json.dumps(SCHEMA), "temperature": 0.8, "max_new_tokens": 40, "sampling_seed": 1},
        {"temperature": 0, "max_new_tokens": 5, "ignore_eos": True}])
    assert re.fullmatch(IPV4, outs[0]["text"]), outs[0]["text"]
    jsonschema.validate(json.loads(outs[1]["text"]), SCHEMA)
    assert outs[2]["meta_info"]["completion_tokens"] == 5


def test_many_constrained_rows_decode_together(gpu_engine):
    outs = gpu_engine.generate([f"Row {i}:" for i in range(16)],
                               {"regex": r"(yes|no|maybe)", "temperature": 1.0, "max_new_tokens": 8})
    assert all(o["text"] in ("yes", "no", "maybe") for o in outs)
