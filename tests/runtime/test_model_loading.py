"""Model loading paths: config spellings, sharded checkpoints, dummy weights, the HF cache, custom models."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
import torch

from sglang_nb.runtime.engine import Engine
from sglang_nb.runtime.model_loader.resolve import resolve_model_dir

IDS = [7, 19, 250, 3, 88, 41, 160, 201, 99]


def _hf_logprobs(path: str, ids: list[int]) -> list[float]:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        lp = torch.log_softmax(hf(torch.tensor([ids])).logits[0].float(), dim=-1)
    return [lp[i, ids[i + 1]].item() for i in range(len(ids) - 1)]


@pytest.fixture(scope="module")
def legacy_sharded(tiny_model_factory, tmp_path_factory):
    """A Llama 3.1-style checkpoint: old `rope_theta`/`rope_scaling` spelling and sharded safetensors."""
    from transformers import AutoModelForCausalLM

    src = tiny_model_factory("llama3_legacy_src", "LlamaConfig", rope_parameters={
        "rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    out = tmp_path_factory.mktemp("legacy") / "model"
    AutoModelForCausalLM.from_pretrained(src).save_pretrained(out, max_shard_size="100KB")
    cfg = json.loads((out / "config.json").read_text())
    rope = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope
    (out / "config.json").write_text(json.dumps(cfg))
    return str(out)


def test_legacy_rope_spelling_and_sharded_checkpoint(legacy_sharded):
    assert os.path.exists(os.path.join(legacy_sharded, "model.safetensors.index.json"))
    with Engine(model_path=legacy_sharded, skip_tokenizer_init=True, max_total_tokens=2048) as engine:
        out = engine.generate(input_ids=IDS, sampling_params={"max_new_tokens": 1}, return_logprob=True,
                              logprob_start_len=0)
    got = [t[0] for t in out["meta_info"]["input_token_logprobs"][1:]]
    ref = _hf_logprobs(legacy_sharded, IDS)
    assert max(abs(a - b) for a, b in zip(got, ref)) < 2e-3


def test_dummy_weights_generate(tiny_llama):
    with Engine(model_path=tiny_llama, load_format="dummy", skip_tokenizer_init=True,
                max_total_tokens=2048) as engine:
        out = engine.generate(input_ids=IDS, sampling_params={"temperature": 0, "max_new_tokens": 5,
                                                              "ignore_eos": True}, return_logprob=True)
    assert len(out["output_ids"]) == 5
    assert all(torch.isfinite(torch.tensor(t[0])) for t in out["meta_info"]["output_token_logprobs"])


def test_hub_name_resolves_through_the_local_cache_only(tiny_llama, tmp_path):
    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_llama, snapshot)
    (tmp_path / "hub" / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny" / "refs" / "main").write_text("0123abcd")
    assert resolve_model_dir("acme/tiny", download_dir=str(tmp_path / "hub")) == str(snapshot)
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        resolve_model_dir("acme/absent", download_dir=str(tmp_path / "hub"))


def test_missing_path_and_bad_architecture_fail_clearly(tiny_llama, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="neither a model directory nor a .gguf file"):
        resolve_model_dir(str(tmp_path / "config.json"))
    bad = tmp_path / "bad"
    shutil.copytree(tiny_llama, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["architectures"] = ["NoSuchForCausalLM"]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RuntimeError, match="NoSuchForCausalLM.*not supported"):
        Engine(model_path=str(bad), skip_tokenizer_init=True, max_total_tokens=1024)


def test_externally_registered_model_reaches_the_scheduler(tiny_llama, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
    try:
        from custom_model import MyCustomLlamaForCausalLM  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    from sglang_nb.runtime.models.registry import ModelRegistry

    custom = tmp_path / "custom"
    shutil.copytree(tiny_llama, custom)
    cfg = json.loads((custom / "config.json").read_text())
    cfg["architectures"] = ["MyCustomLlamaForCausalLM"]
    (custom / "config.json").write_text(json.dumps(cfg))
    ModelRegistry.models["MyCustomLlamaForCausalLM"] = MyCustomLlamaForCausalLM
    try:
        with Engine(model_path=str(custom), skip_tokenizer_init=True, max_total_tokens=1024) as engine:
            custom_out = engine.generate(input_ids=IDS, sampling_params={"temperature": 0, "max_new_tokens": 6})
    finally:
        del ModelRegistry.models["MyCustomLlamaForCausalLM"]
    with Engine(model_path=tiny_llama, skip_tokenizer_init=True, max_total_tokens=1024) as engine:
        plain = engine.generate(input_ids=IDS, sampling_params={"temperature": 0, "max_new_tokens": 6})
    assert custom_out["output_ids"] == plain["output_ids"]
