"""Backend details: admin calls through the public helpers, RuntimeEndpoint specifics (URL forms, API key,
errors as HTTP 400s, text-only select scoring), and the legacy Runtime helpers."""

from __future__ import annotations

import json

import httpx
import pytest

import sglang_nb as sgl
from sglang_nb.lang.backend.runtime_endpoint import ServerError


def test_admin_helpers_on_engine_and_endpoint(tiny_text_engine, tiny_runtime):
    for backend in (tiny_text_engine, tiny_runtime, tiny_runtime.endpoint):
        info = sgl.get_server_info(backend)
        assert info["version"] and "max_total_num_tokens" in info
        sgl.flush_cache(backend)
    assert "model_path" in tiny_runtime.endpoint.get_model_info()


def test_endpoint_url_forms_and_api_key(tiny_runtime):
    endpoint = sgl.RuntimeEndpoint(tiny_runtime.url + "/", api_key=tiny_runtime.api_key)
    assert endpoint.base_url == tiny_runtime.url
    with pytest.raises(ServerError) as info:
        sgl.RuntimeEndpoint(tiny_runtime.url)  # no key: the server refuses
    assert info.value.status_code == 401


def test_server_errors_become_program_errors(tiny_runtime):
    @sgl.function
    def bad(s):
        s += "x" + sgl.gen("y", json_schema='{"type": "nope"}', max_tokens=2)

    error = bad.run(backend=tiny_runtime.endpoint).error()
    assert isinstance(error, ServerError) and error.status_code == 400 and "Invalid json_schema" in str(error)


@sgl.function
def pick(s, method):
    s += "Answer yes or no. Is snow cold? Answer:" + sgl.select("a", [" yes", " no", " perhaps not"],
                                                                 choices_method=method)


@pytest.mark.parametrize("method", [sgl.token_length_normalized, sgl.greedy_token_selection,
                                    sgl.unconditional_likelihood_normalized])
def test_select_without_a_local_tokenizer_scores_by_token_text(tiny_runtime, method):
    with_ids = sgl.RuntimeEndpoint(tiny_runtime.url, api_key=tiny_runtime.api_key)
    text_only = sgl.RuntimeEndpoint(tiny_runtime.url, api_key=tiny_runtime.api_key)
    text_only.tokenizer = None  # as for a remote server
    by_ids = pick.run(method=method, backend=with_ids)
    by_text = pick.run(method=method, backend=text_only)
    assert by_text.error() is None and by_ids.error() is None
    ids_meta, text_meta = by_ids.get_meta_info("a"), by_text.get_meta_info("a")
    # Both ways find the same choice tokens, so the scores agree.
    assert [len(x) for x in text_meta["input_token_logprobs"]] == [len(x) for x in ids_meta["input_token_logprobs"]]
    assert text_meta["normalized_prompt_logprobs"] == pytest.approx(ids_meta["normalized_prompt_logprobs"], abs=1e-4)
    assert by_text["a"] == by_ids["a"]


def test_runtime_helpers(tiny_runtime):
    out = json.loads(tiny_runtime.generate("Hello", {"max_new_tokens": 3, "temperature": 0}))
    assert out["meta_info"]["completion_tokens"] == 3
    assert tiny_runtime.get_tokenizer().encode("hi")
    assert httpx.get(tiny_runtime.url + "/health").status_code in (200, 401)


def test_endpoint_lends_the_servers_tokenizer(tiny_runtime, tiny_text_model):
    from transformers import AutoTokenizer

    from sglang_nb.lang.backend.server_tokenizer import ServerTokenizer
    from sglang_nb.lang.chat_template import chat_template_from_tokenizer

    endpoint = sgl.RuntimeEndpoint(tiny_runtime.url, api_key=tiny_runtime.api_key)
    assert isinstance(endpoint.tokenizer, ServerTokenizer)  # no tokenizer loaded in the client
    local = AutoTokenizer.from_pretrained(tiny_text_model)
    for text in ("Hello world", "  spaces\tand\nnewlines", "ünïcödé 123"):
        assert endpoint.tokenizer.encode(text) == local.encode(text)
    assert endpoint.chat_template == chat_template_from_tokenizer(local)


def test_server_tokenizer_renders_like_transformers(smollm_engine):
    from sglang_nb.lang.backend.server_tokenizer import ServerTokenizer

    tok = smollm_engine.get_tokenizer()
    shim = ServerTokenizer(tok.chat_template, {"bos_token": tok.bos_token, "eos_token": tok.eos_token},
                           lambda path, body: pytest.fail("rendering needs no server"))
    chats = [[{"role": "user", "content": "hi"}],
             [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
              {"role": "assistant", "content": "4"}]]
    for messages in chats:
        for gen_prompt in (False, True):
            assert shim.apply_chat_template(messages, add_generation_prompt=gen_prompt) == \
                tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt)
    with pytest.raises(ValueError, match="text only"):
        shim.apply_chat_template(chats[0], tokenize=True)
