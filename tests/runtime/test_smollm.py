"""The embedded default model (SmolLM2-135M-Instruct GGUF) end to end."""

from __future__ import annotations

import os

import pytest
import torch


def test_default_model_answers_paris(smollm_engine):
    tok = smollm_engine.get_tokenizer()
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, tokenize=False)
    out = smollm_engine.generate(prompt, {"temperature": 0, "max_new_tokens": 32})
    assert "Paris" in out["text"]
    assert out["meta_info"]["finish_reason"]["type"] == "stop"


def test_stop_strings_are_trimmed_and_never_streamed(smollm_engine):
    params = {"temperature": 0, "max_new_tokens": 40, "stop": [" is"]}
    out = smollm_engine.generate("The capital of France", params)
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": " is"}
    assert " is" not in out["text"]
    streamed = "".join(c["text"] for c in smollm_engine.generate("The capital of France", params, stream=True))
    assert streamed == out["text"]
    kept = smollm_engine.generate("The capital of France", {**params, "no_stop_trim": True})
    assert kept["text"].endswith(" is")


def test_streamed_text_equals_full_text(smollm_engine):
    params = {"temperature": 0, "max_new_tokens": 48}
    full = smollm_engine.generate("Write a haiku about the ocean.", params)["text"]
    streamed = "".join(c["text"] for c in smollm_engine.generate("Write a haiku about the ocean.", params,
                                                                   stream=True))
    assert streamed == full and len(full) > 20


@pytest.mark.skipif(os.environ.get("SGLANG_NB_SKIP_HF_GGUF") == "1", reason="HF GGUF reference disabled")
def test_greedy_tokens_equal_transformers_own_gguf_load(smollm_engine):
    from transformers import AutoModelForCausalLM

    from sglang_nb.runtime.model_loader.resolve import DEFAULT_MODEL_FILE, default_model_path

    tok = smollm_engine.get_tokenizer()
    prompt = "The capital of France is"
    ids = tok.encode(prompt)
    folder = os.path.dirname(default_model_path())
    hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=DEFAULT_MODEL_FILE, dtype=torch.float32,
                                              attn_implementation="eager").eval()
    with torch.no_grad():
        ref = hf.generate(torch.tensor([ids]), max_new_tokens=16, min_new_tokens=16, do_sample=False)[0, len(ids):]
    out = smollm_engine.generate(input_ids=ids, sampling_params={"temperature": 0, "max_new_tokens": 16,
                                                                  "ignore_eos": True})
    assert out["output_ids"] == ref.tolist()
