"""Chat templates: the 27 names, SGLang's model-path matching order, Llama-2 special cases, and templates
derived from a tokenizer's own Jinja template."""

from __future__ import annotations

import pytest

from sglang_nb.lang.chat_template import (
    CHAT_TEMPLATE_REGISTRY,
    chat_template_from_tokenizer,
    get_chat_template,
    get_chat_template_by_model_path,
    match_chat_template_name,
)

NAMES = ["default", "claude", "chatml", "chatml-llava", "qwen", "qwen2-vl", "vicuna_v1.1", "llama-2-chat", "mistral",
         "llama-3-instruct", "llama-3-instruct-llava", "llama-4", "minicpmv", "minicpmo", "janus-pro", "janus",
         "yi-1.5", "yi-vl", "gemma-it", "gemma-4-it", "dbrx-instruct", "c4ai-command-r", "internvl-2-5", "interns1",
         "granite-3-instruct", "deepseek-v3", "glm-4v"]


def test_all_27_templates_are_registered():
    assert sorted(CHAT_TEMPLATE_REGISTRY) == sorted(NAMES) and len(NAMES) == 27
    with pytest.raises(KeyError, match="Unknown chat template 'nope'"):
        get_chat_template("nope")


@pytest.mark.parametrize("path, name", [
    ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-instruct"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama-3-instruct"),
    ("meta-llama/Llama-2-7b-chat-hf", "llama-2-chat"),
    ("codellama/CodeLlama-7b-Instruct-hf", "llama-2-chat"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
    ("mistralai/Pixtral-12B-2409", "mistral"),
    ("Qwen/Qwen2.5-7B-Instruct", "qwen"),
    ("Qwen/Qwen2-VL-7B-Instruct", "qwen2-vl"),
    ("Qwen/Qwen3-8B", None),
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "chatml"),
    ("lmsys/vicuna-7b-v1.5", "vicuna_v1.1"),
    ("liuhaotian/llava-v1.5-7b", "vicuna_v1.1"),
    ("liuhaotian/llava-v1.6-34b", "chatml-llava"),
    ("lmms-lab/llava-onevision-qwen2-7b-ov", "chatml-llava"),
    ("lmms-lab/llama3-llava-next-8b", None),
    ("google/gemma-2-9b-it", "gemma-it"),
    ("google/gemma-3-4b-it", "gemma-it"),
    ("01-ai/Yi-1.5-9B-Chat", "yi-1.5"),
    ("01-ai/Yi-VL-6B", "yi-vl"),
    ("deepseek-ai/DeepSeek-V3", "deepseek-v3"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek-v3"),
    ("deepseek-ai/deepseek-v3-base", None),
    ("deepseek-ai/Janus-Pro-7B", "janus-pro"),
    ("databricks/dbrx-instruct", "dbrx-instruct"),
    ("CohereForAI/c4ai-command-r-v01", "c4ai-command-r"),
    ("ibm-granite/granite-3.0-8b-instruct", "granite-3-instruct"),
    ("OpenGVLab/InternVL2_5-8B", "internvl-2-5"),
    ("internlm/Intern-S1", "interns1"),
    ("openbmb/MiniCPM-V-2_6", "minicpmv"),
    ("openbmb/MiniCPM-o-2_6", "minicpmo"),
    ("THUDM/glm-4v-9b", "glm-4v"),
    ("OrionStarAI/Orion-14B-Chat", "claude"),
    ("gpt2", None),
])
def test_model_path_matching(path, name):
    assert match_chat_template_name(path) == name
    assert get_chat_template_by_model_path(path).name == (name or "default")


def test_llama2_system_goes_inside_the_first_inst():
    template = get_chat_template("llama-2-chat")
    prompt = template.get_prompt([{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                                  {"role": "assistant", "content": "A"}])
    assert prompt == "[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]A </s><s>"


def test_janus_pro_user_turns_keep_their_prefix():
    assert get_chat_template("janus-pro").get_prefix_and_suffix("user", []) == ("<｜User｜>", "")


def test_template_from_the_tokenizer_matches_its_jinja_rendering(smollm_engine):
    tokenizer = smollm_engine.get_tokenizer()
    template = chat_template_from_tokenizer(tokenizer)
    assert template is not None and template.stop_str == ("<|im_end|>",)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert template.get_prompt([{"role": "system", "content": None}, *messages]) == rendered
    assert "SmolLM" in template.default_system_prompt
