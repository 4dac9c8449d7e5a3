"""The conformance programs: each runs one language feature end to end on a backend and checks it.

`trained` is True for a real model (SmolLM2): content is checked too. On a random model only the
structure is (constraints still hold: regex, JSON schema and integers are enforced by the grammar).
"""

from __future__ import annotations

import io
import json
import re

import sglang_nb as sgl

IPV4 = r"((25[0-5]|2[0-4]\d|[01]?\d\d?)\.){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)"
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin")]
FEW_SHOT = "Answer with the capital city.\n" + "".join(f"Q: What is the capital of {c}?\nA: {a}\n" for c, a in CAPITALS)
COUNTRIES = ["Egypt", "Peru", "China", "Chile", "Kenya", "India", "Cuba", "Iran",
             "Greece", "Norway", "Poland", "Canada", "Mexico", "Sweden", "Austria", "Portugal"]
PERSON_SCHEMA = {"type": "object",
                 "properties": {"name": {"type": "string", "pattern": "^[A-Za-z ]{1,12}$"},
                                "age": {"type": "integer", "maximum": 120}, "student": {"type": "boolean"}},
                 "required": ["name", "age", "student"], "additionalProperties": False}


@sgl.function
def multi_turn_chat(s, question_1, question_2):
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(question_1)
    s += sgl.assistant(sgl.gen("answer_1", max_tokens=12, temperature=0))
    with s.user():
        s += question_2
    with s.assistant():
        s += sgl.gen("answer_2", max_tokens=12, temperature=0)


def check_multi_turn_chat(backend, trained: bool) -> None:
    state = multi_turn_chat.run(question_1="What is the capital of France?", question_2="And of Italy?",
                                backend=backend)
    assert state.error() is None
    messages = state.messages()
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == state["answer_1"].lstrip() and messages[4]["content"] == state["answer_2"].lstrip()
    template = backend.get_chat_template()
    prefix, suffix = template.get_prefix_and_suffix("user", [])
    assert prefix + "And of Italy?" + suffix in state.text()
    if trained:
        assert "paris" in state["answer_1"].lower()
        assert "rome" in state["answer_2"].lower()


@sgl.function
def few_shot_qa(s, country):
    s += FEW_SHOT + "Q: What is the capital of " + country + "?\nA:"
    s += sgl.gen("answer", max_tokens=6, stop="\n", temperature=0)


def check_few_shot_qa(backend, trained: bool) -> None:
    state = few_shot_qa.run(country="Egypt", backend=backend)
    assert state.error() is None and "\n" not in state["answer"]
    meta = state.get_meta_info("answer")
    assert meta["prompt_tokens"] > 50 and meta["finish_reason"]["type"] in ("stop", "length")
    if trained:
        assert "cairo" in state["answer"].lower()


@sgl.function
def true_or_false(s, statement, method):
    s += "Is the statement true or false?\n"
    s += "Statement: Water is wet.\nAnswer: True\n"
    s += "Statement: Fire is cold.\nAnswer: False\n"
    s += "Statement: " + statement + "\nAnswer:"
    s += sgl.select("answer", [" True", " False"], choices_method=method)


def check_select(backend, trained: bool) -> None:
    methods = [sgl.token_length_normalized, sgl.greedy_token_selection, sgl.unconditional_likelihood_normalized]
    for method in methods:
        state = true_or_false.run(statement="The sun is hot.", method=method, backend=backend)
        assert state.error() is None, state.error()
        assert state["answer"] in (" True", " False")
        assert state.text().endswith(state["answer"])
        meta = state.get_meta_info("answer")
        scores = meta["normalized_prompt_logprobs"]
        assert len(scores) == 2 and all(x < 0 for x in scores)
        assert all(len(entries) >= 1 and all(e[0] is not None for e in entries)
                   for entries in meta["input_token_logprobs"])
        if method is sgl.greedy_token_selection:
            assert len(meta["greedy_logprob_matrix"]) == 2
        if method is sgl.unconditional_likelihood_normalized:
            assert len(meta["normalized_unconditional_prompt_logprobs"]) == 2
        if method is sgl.token_length_normalized:
            assert state["answer"] == [" True", " False"][scores.index(max(scores))]
        if trained:
            assert state["answer"] == " True"


@sgl.function
def regex_gen(s):
    s += "Q: What is the IP address of the Google DNS servers?\n"
    s += "A: " + sgl.gen("answer", temperature=0, regex=IPV4, max_tokens=24)


def check_regex(backend, trained: bool) -> None:
    state = regex_gen.run(backend=backend)
    assert state.error() is None
    assert re.fullmatch(IPV4, state["answer"]), state["answer"]


@sgl.function
def json_person(s, schema):
    s += "Describe a person as JSON.\n"
    s += sgl.gen("json", max_tokens=64, temperature=0, json_schema=schema)


def check_json_schema(backend, trained: bool) -> None:
    import jsonschema

    state = json_person.run(schema=json.dumps(PERSON_SCHEMA), backend=backend)
    assert state.error() is None
    jsonschema.validate(json.loads(state["json"]), PERSON_SCHEMA)


@sgl.function
def decode_int(s):
    s += "Q: How many legs does a dog have?\nA: 4\n"
    s += "Q: How many hours are in a day?\nA: " + sgl.gen_int("hours", max_tokens=4) + "\n"
    s += "Q: How many days are in a week?\nA: " + sgl.gen_int("days", max_tokens=4) + "\n"


def check_gen_int(backend, trained: bool) -> None:
    state = decode_int.run(temperature=0, backend=backend)
    assert state.error() is None
    hours, days = int(state["hours"]), int(state["days"])
    assert hours >= 0 and days >= 0
    if trained:
        assert days == 7, state.text()


@sgl.function
def fork_join(s, topic):
    s += "Here are four short facts about " + topic + ".\n"
    forks = s.fork(4)
    for i in range(4):
        forks[i] += f"Fact {i + 1}:" + sgl.gen("fact", max_tokens=6, stop="\n", temperature=0)
    forks.join()
    s += "In one word, " + topic + " are" + sgl.gen("summary", max_tokens=3, temperature=0)


def check_fork_join(backend, trained: bool) -> None:
    state = fork_join.run(topic="cats", backend=backend)
    assert state.error() is None
    facts = state["fact"]
    assert isinstance(facts, list) and len(facts) == 4 and all(isinstance(f, str) for f in facts)
    assert isinstance(state["summary"], str)
    assert "Fact 1:" not in state.text()  # children's text is not merged by a gather join
    kinds = [r.kind for r in state.request_tree().requests()]
    assert kinds.count("fork") == 1 and kinds.count("gen") == 5


def check_run_batch(backend, trained: bool) -> None:
    err = io.StringIO()
    from contextlib import redirect_stderr

    with redirect_stderr(err):
        states = few_shot_qa.run_batch([{"country": c} for c in COUNTRIES], progress_bar=True, backend=backend)
    assert len(states) == 16 and all(s.error() is None for s in states)
    assert "16/16" in err.getvalue()  # the progress bar ran to the end
    answers = [s["answer"] for s in states]
    assert all(isinstance(a, str) for a in answers)
    if trained:
        assert sum(expected in a for a, expected in zip(answers, ["Cairo", "Lima", "Beijing"])) >= 2


@sgl.function
def chat_qa(s, question):
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=10, temperature=0))


def check_stream(backend, trained: bool) -> None:
    state = chat_qa.run(question="Name a fruit.", stream=True, backend=backend)
    chunks = list(state.text_iter("answer"))
    assert len(chunks) >= 2 and "".join(chunks) == state["answer"]
    state = chat_qa.run(question="Name a fruit.", stream=True, backend=backend)
    text_chunks = list(state.text_iter())
    assert "".join(text_chunks) == state.text()
    assert "Name a fruit." in text_chunks[0]  # the prompt arrives first, then the model's deltas


@sgl.function
def image_qa(s, image_bytes):
    s += sgl.user(sgl.image(image_bytes) + "What is in this picture?")
    s += sgl.assistant(sgl.gen("answer", max_tokens=4))


def check_image_without_vision(backend, trained: bool) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="PNG")
    state = image_qa.run(image_bytes=buf.getvalue(), backend=backend)
    error = state.error()
    assert isinstance(error, ValueError) and "does not accept images" in str(error)
    try:
        state["answer"]
    except RuntimeError as e:
        assert "does not accept images" in str(e)
    else:
        raise AssertionError("reading a variable of a failed program must raise")


ALL_CHECKS = [check_multi_turn_chat, check_few_shot_qa, check_select, check_regex, check_json_schema, check_gen_int,
              check_fork_join, check_run_batch, check_stream, check_image_without_vision]
