"""What a %%sgl cell turns into: interpolation, constraints, sampling parameters, program bodies."""

from __future__ import annotations

import json
import re

import pytest

from sglang_nb._cell import (
    CellError,
    choices_regex,
    compile_program,
    interpolate,
    json_schema_arg,
    sampling_params,
)


def test_interpolate_only_known_names() -> None:
    ns = {"city": "Paris", "n": 3}
    assert interpolate("{city} has {n} {unknown} and {\"json\": 1}", ns) == 'Paris has 3 {unknown} and {"json": 1}'


def test_choices_regex_escapes_and_matches_exactly() -> None:
    pattern = choices_regex(["a.b", "c|d", "yes"])
    assert re.fullmatch(pattern, "a.b") and re.fullmatch(pattern, "c|d") and re.fullmatch(pattern, "yes")
    assert not re.fullmatch(pattern, "axb")
    with pytest.raises(CellError, match="comma-separated"):
        choices_regex(["ok", ""])


def test_json_schema_from_variable_inline_or_error() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert json.loads(json_schema_arg("schema", {"schema": schema})) == schema
    assert json.loads(json_schema_arg('{"type": "string"}', {})) == {"type": "string"}
    with pytest.raises(CellError, match="neither a variable name nor valid JSON"):
        json_schema_arg("nope", {})
    with pytest.raises(CellError, match="JSON object"):
        json_schema_arg("[1]", {})


def test_sampling_params_validation() -> None:
    base = dict(max_tokens=8, temperature=0.0, top_p=None, stop=None, regex=None, json_schema=None, choices=None,
                ignore_eos=False, seed=None)
    assert sampling_params(**base) == {"max_new_tokens": 8, "temperature": 0.0}
    p = sampling_params(**{**base, "stop": ["\n"], "choices": ["a", "b"], "seed": 3, "ignore_eos": True})
    assert p["regex"] == "(a|b)" and p["stop"] == ["\n"] and p["sampling_seed"] == 3 and p["ignore_eos"]
    with pytest.raises(CellError, match="max-tokens"):
        sampling_params(**{**base, "max_tokens": 0})
    with pytest.raises(CellError, match="one constraint"):
        sampling_params(**{**base, "regex": "a", "choices": ["a"]})


def test_compile_program_sees_notebook_names_and_reports_syntax_errors() -> None:
    fn = compile_program('s += prefix + sgl.gen("x", max_tokens=1)', {"prefix": "Hi"})
    assert fn.arg_names == [] and fn.__name__ == "sgl_cell"
    with pytest.raises(CellError, match="does not compile"):
        compile_program("s +=", {})
