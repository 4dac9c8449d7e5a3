"""Programs in SGLang's style (the shapes of SGLang's own program suite) run unchanged after
`import sglang_nb as sgl` with a default backend: module-level `@sgl.function`s, `sgl.gen` with
positional max_tokens, `__call__` instead of run(), `fork`/`forks += lambda`, `join`, `var_scope`,
dtype/regex constraints, control flow on `select` results, `sgl.lang.ir` regex constants."""

from __future__ import annotations

import json
import re

import pytest

import sglang_nb as sgl
from sglang_nb.lang.ir import REGEX_FLOAT, REGEX_INT, REGEX_STR


@pytest.fixture()
def default_backend(request):
    backend = request.getfixturevalue(request.param)
    sgl.set_default_backend(backend)
    yield backend
    sgl.set_default_backend(None)


@sgl.function
def few_shot_qa(s, question):
    s += "The following are questions with answers.\n\n"
    s += "Q: What is the capital of France?\n"
    s += "A: Paris\n"
    s += "Q: What is the capital of Germany?\n"
    s += "A: Berlin\n"
    s += "Q: What is the capital of Italy?\n"
    s += "A: Rome\n"
    s += "Q: " + question + "\n"
    s += "A:" + sgl.gen("answer", stop="\n", temperature=0, max_tokens=8)


@sgl.function
def answer_mt_bench(s, question_1, question_2):
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(question_1)
    s += sgl.assistant(sgl.gen("answer_1"))
    with s.user():
        s += question_2
    with s.assistant():
        s += sgl.gen("answer_2")


@sgl.function
def decode_json_regex(s):
    s += "Generate a JSON object to describe the basic city information of Paris.\n"
    s += "Here are the JSON object:\n"
    with s.var_scope("json_output"):
        s += "{\n"
        s += '  "name": ' + sgl.gen(regex=REGEX_STR, max_tokens=8) + ",\n"
        s += '  "population": ' + sgl.gen(regex=REGEX_INT, stop=[" ", "\n"], max_tokens=8) + ",\n"
        s += '  "latitude": ' + sgl.gen(regex=REGEX_FLOAT, stop=[" ", "\n"], max_tokens=8) + "\n"
        s += "}"


@sgl.function
def tool_use(s, lhs, rhs):
    s += "Please perform computations using a calculator. You can use calculate(expression) to get the results.\n"
    s += "For example,\ncalculate(1+2)=3\ncalculate(3*4)=12\n"
    s += "Question: What is the product of " + str(lhs) + " and " + str(rhs) + "?\n"
    s += "Answer: The answer is calculate(" + sgl.gen("expression", stop=")", max_tokens=8,
                                                     regex=r"[1-9][0-9]{0,3}\*[1-9][0-9]{0,3}") + ") = "
    with s.var_scope("answer"):
        s += str(eval(s["expression"].rstrip(")")))


@sgl.function
def react(s, question):
    s += "Question: Which country does the founder of Microsoft live in?\n"
    s += "Thought 1: I need to search for the founder of Microsoft.\nAction 1: Search [Founder of Microsoft].\n"
    s += "Question: " + question + "\n"
    for i in range(1, 3):
        s += f"Thought {i}:" + sgl.gen(stop=[".", "\n"], max_tokens=6) + ".\n"
        s += f"Action {i}: " + sgl.select(f"action_{i}", ["Search", "Finish"])
        if s[f"action_{i}"] == "Search":
            s += " [" + sgl.gen(stop="]", max_tokens=4) + "].\n"
        else:
            s += " [" + sgl.gen("answer", stop="]", max_tokens=4) + "].\n"
            break


@sgl.function
def parallel_decoding(s, topic):
    s += "Act as a helpful assistant.\n"
    s += "USER: Give some tips for " + topic + ".\n"
    s += "ASSISTANT: Okay. Here are 3 concise tips, each under 8 words:\n"
    for i in range(1, 4):
        s += f"{i}." + sgl.gen(max_tokens=6, stop=[".", "\n"]) + ".\n"
    forks = s.fork(3)
    for i in range(3):
        forks[i] += f"Now, I expand tip {i+1} into a detailed paragraph:\nTip {i+1}:"
        forks[i] += sgl.gen("detailed_tip", 8, stop=["\n\n"])
    forks.join()
    s += "Here are these tips with detailed explanation:\n"
    for i in range(3):
        s += f"Tip {i+1}:" + forks[i]["detailed_tip"] + "\n"
    s += "\nIn summary," + sgl.gen("summary", max_tokens=8)


@sgl.function
def parallel_encoding(s, question, context_0, context_1, context_2):
    s += "USER: I will ask a question based on some statements.\n"
    s += "ASSISTANT: Sure. I will give the answer.\n"
    s += "USER: Please memorize these statements.\n"
    contexts = [context_0, context_1, context_2]
    forks = s.fork(len(contexts))
    forks += lambda i: f"Statement {i}: " + contexts[i] + "\n"
    forks.join(mode="concate_and_append")
    s += "Now, please answer the following question. Do not list options."
    s += "\nQuestion: " + question + "\n"
    s += "ASSISTANT:" + sgl.gen("answer", max_tokens=8)


@sgl.function
def dtype_gen(s):
    s += "Q: What is the full name of DNS?\n"
    s += "A: The full name is " + sgl.gen("str_res", dtype=str, stop="\n", max_tokens=12) + "\n"
    s += "Q: Which year was DNS invented?\n"
    s += "A: " + sgl.gen("int_res", dtype=int, max_tokens=6) + "\n"
    s += "Q: What is the value of pi?\n"
    s += "A: " + sgl.gen("float_res", dtype=float, max_tokens=6) + "\n"
    s += "Q: Is the sky blue?\n"
    s += "A: " + sgl.gen("bool_res", dtype=bool) + "\n"


@sgl.function
def qa(s, question):
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=8))


@pytest.mark.parametrize("default_backend", ["tiny_backend"], indirect=True)
def test_programs_run_unchanged(default_backend):
    ret = few_shot_qa.run(question="What is the capital of the United States?")
    assert isinstance(ret["answer"], str)
    rets = few_shot_qa.run_batch([{"question": "What is the capital of Japan?"},
                                  {"question": "What is the capital of the United Kingdom?"}], temperature=0.1)
    assert len(rets) == 2

    ret = answer_mt_bench.run(question_1="Say hi.", question_2="Again.", temperature=0.7, max_new_tokens=8)
    assert len(ret.messages()) in [4, 5]

    ret = decode_json_regex.run(temperature=0.0)
    assert ret["json_output"].startswith("{\n") and ret.error() is None

    ret = tool_use(lhs=257, rhs=983, temperature=0)  # __call__ runs the program
    assert int(ret["answer"]) == eval(ret["expression"].rstrip(")"))

    ret = react.run(question="What country does the creator of Linux live in?", temperature=0.1)
    assert ret["action_1"] in ("Search", "Finish") and ret.error() is None

    ret = parallel_decoding.run(topic="writing a good blog post", temperature=0.3)
    assert isinstance(ret["summary"], str) and len(ret["detailed_tip"]) == 3

    ret = parallel_encoding.run(question="Who is the father of Julian?", context_0="Ethan is the father of Liam.",
                                context_1="Noah is the father of Julian.", context_2="Oliver is the father of Carlos.",
                                temperature=0)
    assert "Statement 1: Noah is the father of Julian.\n" in ret.text()

    state = dtype_gen.run(temperature=0)
    state["int_res"] = int(state["int_res"])
    state["float_res"] = float(state["float_res"])
    assert state["bool_res"] in ("True", "False") and state["str_res"].startswith('"')  # may hit max_tokens

    ret = qa(question="Compose a haiku.", stream=True)
    out = "".join(ret.text_iter("answer"))
    assert out == ret["answer"]


@pytest.mark.parametrize("default_backend", ["smollm_backend"], indirect=True)
def test_programs_with_answers_on_smollm(default_backend):
    ret = few_shot_qa.run(question="What is the capital of Japan?")
    assert "tokyo" in ret["answer"].strip().lower(), ret["answer"]
    regex = r"((25[0-5]|2[0-4]\d|[01]?\d\d?).){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)"

    @sgl.function
    def regex_gen(s):
        s += "Q: What is the IP address of the Google DNS servers?\n"
        s += "A: " + sgl.gen("answer", temperature=0, regex=regex, max_tokens=20)

    assert re.match(regex, regex_gen.run()["answer"])
    ret = decode_json_regex.run(temperature=0.0)
    js_obj = json.loads(ret["json_output"])
    assert isinstance(js_obj["name"], str) and isinstance(js_obj["population"], int)
