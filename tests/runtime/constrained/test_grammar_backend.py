"""The xgrammar backend: compile/cache/errors, bitmask filling and application, and the scheduler path."""

from __future__ import annotations

import json
import re
import time
from types import SimpleNamespace

import pytest
import torch

from sglang_nb.runtime.constrained.grammar_backend import GrammarBackend, grammar_key
from sglang_nb.runtime.layers.sampler import apply_token_bitmask
from sglang_nb.runtime.sampling.sampling_params import SamplingParams

IPV4 = r"((25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)"


@pytest.fixture()
def backend(tokenizer):
    b = GrammarBackend(tokenizer, vocab_size=49152 + 64, eos_token_ids=[2])  # model vocab padded past the tokenizer's
    yield b
    b.shutdown()


def _req(**params):
    return SimpleNamespace(sampling_params=SamplingParams(**params), grammar=None)


def _wait_ready(backend, req, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, failed, waiting = backend.poll([req], timeout=0.05)
        if not waiting:
            return ready, failed
    raise AssertionError("grammar did not compile")


def test_grammar_key_picks_the_constraint():
    assert grammar_key(SamplingParams(regex="a+")) == ("regex", "a+")
    assert grammar_key(SamplingParams(json_schema="{}")) == ("json_schema", "{}")
    assert grammar_key(SamplingParams(ebnf='root ::= "x"')) == ("ebnf", 'root ::= "x"')
    assert grammar_key(SamplingParams()) is None


def test_compile_is_cached_and_off_the_caller(backend):
    a, b = _req(regex=IPV4), _req(regex=IPV4)
    assert backend.attach(a) is None
    ready, failed = _wait_ready(backend, a)
    assert ready == [a] and not failed and a.grammar.ready
    assert backend.attach(b) is None
    assert b.grammar.future is a.grammar.future  # same compile, own matcher
    assert b.grammar.ready and b.grammar.matcher is not a.grammar.matcher


@pytest.mark.parametrize("params, needle", [
    ({"regex": "((("}, "Invalid regex: Regex parsing error"),
    ({"json_schema": "{bad"}, "Invalid json_schema: Failed to parse JSON"),
    ({"ebnf": "root ::= foo"}, 'Invalid ebnf: EBNF parser error at line 1, column 10: Rule "foo" is not defined'),
])
def test_invalid_grammars_name_the_problem(backend, params, needle):
    req = _req(**params)
    error = backend.attach(req)
    if error is None:
        _, failed = _wait_ready(backend, req)
        assert failed == [req]
        error = req.grammar.error
    assert error.startswith(needle)
    assert "/project/" not in error and ".cc:" not in error


def test_structural_tags_in_both_formats(backend):
    legacy = {"type": "structural_tag", "triggers": ["<f>"],
              "structures": [{"begin": "<f>", "schema": {"type": "object"}, "end": "</f>"}]}
    for source in (json.dumps(legacy), json.dumps({"type": "structural_tag",
                                                   "format": {"type": "const_string", "value": "hi"}})):
        req = _req(structural_tag=source)
        backend.attach(req)
        ready, failed = _wait_ready(backend, req)
        assert ready == [req], req.grammar.error
    bad = _req(structural_tag='{"type": "structural_tag"}')
    error = backend.attach(bad)
    if error is None:
        _wait_ready(backend, bad)
        error = bad.grammar.error
    assert error.startswith("Invalid structural_tag")


def test_mask_follows_the_matcher_and_pads_the_vocab(backend, tokenizer):
    req, free = _req(regex="(yes|no)"), None
    backend.attach(req)
    _wait_ready(backend, req)
    info = SimpleNamespace(grammars=[req.grammar, free], vocab_size=49152 + 64, vocab_mask=None)
    backend.fill_vocab_mask(info)
    mask = info.vocab_mask
    assert mask.dtype == torch.int32 and mask.shape == (2, (49152 + 64 + 31) // 32)
    logits = torch.zeros(2, 49152 + 64)
    masked = apply_token_bitmask(logits, mask)
    allowed = torch.isfinite(masked[0]).nonzero().flatten().tolist()
    texts = {tokenizer.decode([t]) for t in allowed}
    assert texts and all("yes".startswith(t) or "no".startswith(t) for t in texts)
    assert torch.isfinite(masked[1]).all()  # the unconstrained row is untouched
    for t in tokenizer.encode("yes"):
        req.grammar.accept_token(t)
    assert not req.grammar.is_terminated()
    req.grammar.accept_token(2)  # EOS ends the grammar
    assert req.grammar.is_terminated()


@pytest.mark.gpu
def test_bitmask_applies_on_gpu(backend):
    req = _req(regex="[0-9]")
    backend.attach(req)
    _wait_ready(backend, req)
    info = SimpleNamespace(grammars=[req.grammar], vocab_size=49152, vocab_mask=None)
    backend.fill_vocab_mask(info)
    logits = torch.randn(1, 49152, device="cuda")
    on_gpu = apply_token_bitmask(logits, info.vocab_mask.to("cuda"))
    on_cpu = apply_token_bitmask(logits.cpu(), info.vocab_mask)
    assert torch.equal(torch.isfinite(on_gpu).cpu(), torch.isfinite(on_cpu))


# ---- end to end through the scheduler (SmolLM2) ---------------------------------------------------


def test_regex_output_fullmatches(smollm_engine):
    out = smollm_engine.generate("The IP address of the Google DNS server is ",
                                 {"regex": IPV4, "temperature": 0, "max_new_tokens": 20})
    assert re.fullmatch(IPV4, out["text"]), out["text"]
    assert out["meta_info"]["finish_reason"]["type"] == "stop"


def test_json_schema_output_validates(smollm_engine):
    jsonschema = pytest.importorskip("jsonschema")
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "ok": {"type": "boolean"}}, "required": ["name", "ok"]}
    out = smollm_engine.generate("A JSON object describing Paris: ", {"json_schema": json.dumps(schema),
                                                                      "temperature": 0, "max_new_tokens": 30})
    jsonschema.validate(json.loads(out["text"]), schema)


def test_ebnf_and_batch_mixing_constrained_and_free_rows(smollm_engine):
    outs = smollm_engine.generate(["Is the sky blue? Answer:", "Count: 1, 2,"],
                                  [{"ebnf": 'root ::= " yes" | " no"', "temperature": 0, "max_new_tokens": 5},
                                   {"temperature": 0, "max_new_tokens": 3}])
    assert outs[0]["text"] in (" yes", " no")
    assert outs[1]["meta_info"]["completion_tokens"] == 3


def test_grammar_finishes_the_request_even_with_ignore_eos(smollm_engine):
    out = smollm_engine.generate("Pick:", {"regex": "(A|B)", "temperature": 0, "max_new_tokens": 16, "ignore_eos": True})
    assert out["text"] in ("A", "B")
    assert out["meta_info"]["completion_tokens"] <= 3


def test_invalid_grammar_is_a_value_error(smollm_engine):
    with pytest.raises(ValueError, match="Invalid regex"):
        smollm_engine.generate("x", {"regex": "(((", "max_new_tokens": 4})
    with pytest.raises(ValueError, match="Invalid json_schema"):
        smollm_engine.generate("x", {"json_schema": '{"type": "nope"}', "max_new_tokens": 4})
