"""Model-free parts: IR composition, sampling-parameter resolution, tracing, the tree and the compiler."""

from __future__ import annotations

import pytest

import sglang_nb as sgl
from sglang_nb.lang.chat_template import get_chat_template
from sglang_nb.lang.compiler import RowPlan, _safe_cut, compile_tree
from sglang_nb.lang.interpreter import _apply_dtype
from sglang_nb.lang.ir import REGEX_INT, SglConstantText, SglExprList, SglGen, SglSamplingParams
from sglang_nb.lang.reasoning import separate_reasoning_text
from sglang_nb.lang.tracer import trace_program
from sglang_nb.lang.tree import RequestRecord, RequestTree


def test_expressions_concatenate_flat():
    expr = "Q: " + sgl.gen("a") + "\n" + sgl.gen("b")
    assert isinstance(expr, SglExprList)
    assert [type(e) for e in expr.expr_list] == [SglConstantText, SglGen, SglConstantText, SglGen]
    with pytest.raises(TypeError):
        _ = sgl.gen("a") + 3


def test_gen_with_choices_is_a_select_and_bad_regex_is_rejected():
    assert type(sgl.gen("x", choices=["a", "b"])).__name__ == "SglSelect"
    with pytest.raises(ValueError, match="Invalid regex"):
        sgl.gen("x", regex="(((")
    with pytest.raises(ValueError, match="non-empty"):
        sgl.select("x", choices=[])


def test_gen_overrides_run_defaults_and_never_mutates_caller_lists():
    stop = ["\n"]
    run_defaults = SglSamplingParams(max_new_tokens=99, stop=stop, temperature=0.3)
    resolved = run_defaults.override(sgl.gen("x", max_tokens=5, top_k=20).sampling_params)
    assert (resolved.max_new_tokens, resolved.top_k, resolved.temperature) == (5, 20, 0.3)
    resolved.stop.append("<|eot_id|>")
    assert stop == ["\n"] and run_defaults.stop == ["\n"]
    params = SglSamplingParams(stop=stop, dtype=int)
    _apply_dtype(params)
    assert params.regex == REGEX_INT and params.stop == ["\n", " ", "\n"] and stop == ["\n"]


def _chat(s, question):
    s += sgl.system("You are terse.")
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("a"))


def test_trace_renders_roles_through_the_template():
    traced = trace_program(_chat, {}, ["question"], get_chat_template("llama-3-instruct"))
    reprs = [repr(n) for n in traced.nodes]
    assert reprs[0] == "Constant('<|start_header_id|>system<|end_header_id|>\\n\\n')"
    assert reprs[1] == "Constant('You are terse.')"
    assert "Argument(name=question, value=None)" in reprs and reprs[-2] == "Gen('a')"
    assert reprs[-1] == "Constant('<|eot_id|>')"
    assert not traced.reads_variables


def test_trace_with_real_arguments_gives_the_first_prompt():
    traced = trace_program(_chat, {"question": "Hi?"}, ["question"], get_chat_template("chatml"),
                           substitute_arguments=True)
    assert traced.prefix_text() == ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
                                    "<|im_start|>assistant\n")


def test_f_string_of_a_traced_argument_is_an_error_and_reads_are_detected():
    def f_string(s, x):
        s += f"{x}"

    with pytest.raises(TypeError, match="f-string"):
        trace_program(f_string, {}, ["x"])

    def reads(s):
        s += sgl.gen("a")
        if s["a"] == "yes":
            s += "!"

    assert trace_program(reads, {}, []).reads_variables


def test_tree_splits_spans_and_keeps_offsets():
    tree = RequestTree()
    tree.add_request(RequestRecord(kind="gen", prompt="shared prefix A", rid="1", prompt_tokens=3, cached_tokens=0))
    tree.add_request(RequestRecord(kind="gen", prompt="shared prefix B", rid="2", prompt_tokens=3, cached_tokens=2))
    tree.add_path("shared", "row 0")
    root = tree.root.children[0]
    assert root.text == "shared" and root.labels == ["row 0"]
    (middle,) = root.children
    assert middle.text == " prefix " and (middle.start, middle.end) == (6, 14)
    leaves = {leaf.text: leaf for leaf in middle.children}
    assert leaves["A"].rids == ["1"] and leaves["B"].cached_tokens == 2
    assert leaves["B"].prefix == "shared prefix B"
    assert tree.cache_hit_ratio == pytest.approx(2 / 6)


def test_compiler_plans_one_prefill_per_shared_prefix():
    shots = "x" * 100 + "\n"
    plans = [RowPlan({}, shots + f"Q{i}", static=True) for i in range(4)] + [RowPlan({}, "other", static=True)]
    tree = compile_tree(plans)
    planned = [n for n in tree.nodes() if n.planned_prefill]
    assert len(planned) == 1 and planned[0].prefix == shots + "Q"
    assert _safe_cut("the first line of text\nline two") == "the first line of text\n"
    assert _safe_cut("no newline here at all") == "no newline here at"


def test_separate_reasoning_formats():
    assert separate_reasoning_text("<think>hmm</think>Answer", "qwen3") == ("hmm", "Answer")
    assert separate_reasoning_text("just an answer", "qwen3") == ("", "just an answer")
    assert separate_reasoning_text("still thinking", "deepseek-r1") == ("still thinking", "")
    with pytest.raises(ValueError, match="Unknown reasoning model_type"):
        separate_reasoning_text("x", "nope")
    with pytest.raises(ValueError, match="name must be provided"):
        sgl.separate_reasoning(sgl.gen(), model_type="qwen3")


def test_function_signature_rules():
    with pytest.raises(ValueError, match="named 's'"):
        sgl.function(lambda state: None)

    @sgl.function(num_api_spec_tokens=16)
    def prog(s, a, b=2):
        s += a

    assert prog.arg_names == ["a", "b"] and prog.num_api_spec_tokens == 16
    bound = prog.bind(a="x")
    assert bound.bind_arguments == {"a": "x"} and bound.num_api_spec_tokens == 16
    with pytest.raises(ValueError, match="unknown argument"):
        prog.bind(c=1)
    with pytest.raises(ValueError, match="specify a backend"):
        prog.run(a="x")
