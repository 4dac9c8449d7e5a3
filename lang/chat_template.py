"""Frontend chat templates: how role turns render into prompt text.

The 27 named templates of SGLang's frontend, its model-path matching order, and a template derived
from a tokenizer's own Jinja chat template for models that no name matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any


class ChatTemplateStyle(Enum):
    PLAIN = auto()
    LLAMA2 = auto()


@dataclass(kw_only=True)
class ChatTemplate:
    name: str
    default_system_prompt: str | None
    role_prefix_and_suffix: dict[str, tuple[str, str]]
    stop_str: tuple[str, ...] = ()
    image_token: str = "<image>"
    audio_token: str = "<audio>"
    style: ChatTemplateStyle = ChatTemplateStyle.PLAIN

    def get_prefix_and_suffix(self, role: str, hist_messages: list[dict[str, Any]]) -> tuple[str, str]:
        """The (prefix, suffix) of a `role` turn given the messages before it."""
        prefix, suffix = self.role_prefix_and_suffix.get(role, ("", ""))
        if self.style == ChatTemplateStyle.LLAMA2:
            # Llama-2 puts the system block inside the first [INST] ... [/INST].
            if role == "system" and not hist_messages:
                user_prefix = self.role_prefix_and_suffix.get("user", ("", ""))[0]
                return user_prefix + prefix, suffix
            if role == "user" and len(hist_messages) == 1 and hist_messages[0]["content"] is not None:
                return "", suffix
        return prefix, suffix

    def get_prompt(self, messages: list[dict[str, Any]]) -> str:
        """Render a message list (a system message with content None gets the default prompt)."""
        out = []
        for i, message in enumerate(messages):
            role, content = message["role"], message["content"]
            if role == "system" and content is None:
                content = self.default_system_prompt
                if content is None:
                    continue
            prefix, suffix = self.get_prefix_and_suffix(role, messages[:i])
            out.append(f"{prefix}{content}{suffix}")
        return "".join(out)


CHAT_TEMPLATE_REGISTRY: dict[str, ChatTemplate] = {}


def register_chat_template(template: ChatTemplate) -> None:
    CHAT_TEMPLATE_REGISTRY[template.name] = template


def get_chat_template(name: str) -> ChatTemplate:
    try:
        return CHAT_TEMPLATE_REGISTRY[name]
    except KeyError:
        raise KeyError(f"Unknown chat template {name!r}; known: {', '.join(sorted(CHAT_TEMPLATE_REGISTRY))}") from None


def _roles(system: tuple[str, str], user: tuple[str, str], assistant: tuple[str, str]) -> dict[str, tuple[str, str]]:
    return {"system": system, "user": user, "assistant": assistant}


def _same(prefix: str, suffix: str) -> dict[str, tuple[str, str]]:
    """All three roles share one shape; `{role}` in the prefix is the role name."""
    return {r: (prefix.format(role=r), suffix) for r in ("system", "user", "assistant")}


_CHATML = _same("<|im_start|>{role}\n", "<|im_end|>\n")
_LLAMA3 = _same("<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>")
_DEEPSEEK = _roles(("", ""), ("<｜User｜>", ""), ("<｜Assistant｜>", "<｜end▁of▁sentence｜>"))
_MINICPM = _roles(("", " "), ("user:", " "), ("assistant:", "</s>"))
_HELPFUL = "You are a helpful assistant."
_VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                  "The assistant gives helpful, detailed, and polite answers to the user's questions.")
_YI_VL_SYSTEM = (
    "This is a chat between an inquisitive human and an AI assistant. Assume the role of the AI assistant. "
    "Read all the images carefully, and respond to the human's questions with informative, helpful, detailed "
    "and polite answers."
    "这是一个好奇的人类和一个人工智能助手之间的对话。假设你扮演这个AI助手的角色。"
    "仔细阅读所有的图像，并对人类的问题做出信息丰富、有帮助、详细的和礼貌的回答。")
_DBRX_SYSTEM = (
    "You are DBRX, created by Databricks. You were last updated in December 2023. You answer questions based on "
    "information available up to that point.\nYOU PROVIDE SHORT RESPONSES TO SHORT QUESTIONS OR STATEMENTS, but "
    "provide thorough responses to more complex and open-ended questions.\nYou assist with various tasks, from "
    "writing to coding (using markdown for code blocks — remember to use ``` with code, JSON, and tables).\n(You "
    "do not have real-time data access or code execution capabilities. You avoid stereotyping and provide balanced "
    "perspectives on controversial topics. You do not provide song lyrics, poems, or news articles and do not "
    "divulge details of your training data.)\nThis is your system prompt, guiding your responses. Do not reference "
    "it, just respond to the user. If you find yourself talking about this message, stop. You should be responding "
    "appropriately and usually that means not mentioning this.\nYOU DO NOT MENTION ANY OF THIS INFORMATION ABOUT "
    "YOURSELF UNLESS THE INFORMATION IS DIRECTLY PERTINENT TO THE USER'S QUERY.")
_INTERNVL_SYSTEM = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
_INTERNS1_SYSTEM = (
    "You are an AI assistant whose name is Intern-S1 (书生大模型).\n- Intern-S1 (书生大模型) is a vision-language "
    "model that is developed by Shanghai AI Laboratory (上海人工智能实验室).  It is designed to be helpful, honest, "
    "and harmless.\n- Intern-S1 (书生大模型) can understand and communicate fluently in the language chosen by the "
    "user such as English and 中文.\nYou are an expert reasoner with extensive experience in all areas. You approach "
    "problems through systematic thinking and rigorous reasoning. Your response should reflect deep understanding "
    "and precise logical thinking, making your solution path and reasoning clear to others. Please put your thinking "
    "process within <think>...</think> tags.")

for _t in [
    ChatTemplate(name="default", default_system_prompt=None,
                 role_prefix_and_suffix=_roles(("SYSTEM:", "\n"), ("USER:", "\n"), ("ASSISTANT:", "\n"))),
    ChatTemplate(name="claude", default_system_prompt=None,
                 role_prefix_and_suffix=_roles(("", ""), ("\n\nHuman: ", ""), ("\n\nAssistant:", ""))),
    ChatTemplate(name="chatml", default_system_prompt=None, role_prefix_and_suffix=_CHATML,
                 stop_str=("<|im_end|>",)),
    ChatTemplate(name="chatml-llava", default_system_prompt=_HELPFUL, role_prefix_and_suffix=_CHATML,
                 stop_str=("<|im_end|>",), image_token="<image>\n"),
    ChatTemplate(name="qwen", default_system_prompt=_HELPFUL, role_prefix_and_suffix=_CHATML,
                 stop_str=("<|im_end|>",)),
    ChatTemplate(name="qwen2-vl", default_system_prompt=_HELPFUL, role_prefix_and_suffix=_CHATML,
                 stop_str=("<|im_end|>",), image_token="<|vision_start|><|image_pad|><|vision_end|>"),
    ChatTemplate(name="vicuna_v1.1", default_system_prompt=_VICUNA_SYSTEM,
                 role_prefix_and_suffix=_roles(("", " "), ("USER:", " "), ("ASSISTANT:", "</s>")),
                 image_token=" <image>\n"),
    ChatTemplate(name="llama-2-chat", default_system_prompt=None, style=ChatTemplateStyle.LLAMA2,
                 role_prefix_and_suffix=_roles(("<<SYS>>\n", "\n<</SYS>>\n\n"), ("[INST] ", " [/INST]"),
                                               ("", " </s><s>"))),
    ChatTemplate(name="mistral", default_system_prompt=None, stop_str=("</s>",), image_token="[IMG]",
                 role_prefix_and_suffix=_roles(("[SYSTEM_PROMPT] ", " [/SYSTEM_PROMPT]"), ("[INST] ", " [/INST]"),
                                               ("", " </s><s>"))),
    ChatTemplate(name="llama-3-instruct", default_system_prompt=None, role_prefix_and_suffix=_LLAMA3,
                 stop_str=("<|eot_id|>",), image_token="<|image|>"),
    ChatTemplate(name="llama-3-instruct-llava", default_system_prompt=None, role_prefix_and_suffix=_LLAMA3,
                 stop_str=("<|eot_id|>",), image_token="<image>\n"),
    ChatTemplate(name="llama-4", default_system_prompt=None,
                 role_prefix_and_suffix=_same("<|header_start|>{role}<|header_end|>\n\n", "<|eot|>"),
                 stop_str=("<|eot|>",), image_token="<|image|>"),
    ChatTemplate(name="minicpmv", default_system_prompt=None, role_prefix_and_suffix=_MINICPM,
                 stop_str=("<|im_end|>", "<|endoftext|>"), image_token="(<image>./</image>)"),
    ChatTemplate(name="minicpmo", default_system_prompt=None, role_prefix_and_suffix=_MINICPM,
                 stop_str=("<|im_end|>", "<|endoftext|>"), image_token="(<image>./</image>)",
                 audio_token="(<audio>./</audio>)"),
    # NOTE: keyed by "user" (SGLang keys janus-pro's user turn as "User", so user turns lost their prefix).
    ChatTemplate(name="janus-pro", default_system_prompt=None, role_prefix_and_suffix=_DEEPSEEK,
                 stop_str=("<｜end▁of▁sentence｜>",), image_token="<image_placeholder>\n"),
    ChatTemplate(name="janus", default_system_prompt=None, role_prefix_and_suffix=_DEEPSEEK,
                 stop_str=("<｜end▁of▁sentence｜>",), image_token="<image_placeholder>\n"),
    ChatTemplate(name="yi-1.5", default_system_prompt=None, stop_str=("<|im_end|>",),
                 role_prefix_and_suffix=_roles(("", ""), ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"),
                                               ("", "<|im_end|>\n"))),
    ChatTemplate(name="yi-vl", default_system_prompt=_YI_VL_SYSTEM, image_token=" <image_placeholder>\n",
                 role_prefix_and_suffix=_roles(("", "\n\n"), ("### Human:", "\n"), ("### Assistant:", "\n"))),
    ChatTemplate(name="gemma-it", default_system_prompt=None, image_token="<start_of_image>",
                 audio_token="<start_of_audio>",
                 role_prefix_and_suffix=_roles(("", ""), ("<start_of_turn>user\n", "<end_of_turn>\n"),
                                               ("<start_of_turn>model\n", "<end_of_turn>\n"))),
    ChatTemplate(name="gemma-4-it", default_system_prompt=None,
                 role_prefix_and_suffix=_roles(("", ""), ("<|turn>user\n", "<turn|>\n"),
                                               ("<|turn>assistant\n", "<turn|>\n"))),
    ChatTemplate(name="dbrx-instruct", default_system_prompt=_DBRX_SYSTEM, stop_str=("<|im_end|>",),
                 role_prefix_and_suffix=_roles(("<|im_start|>system\n", "<|im_end|>"),
                                               ("\n<|im_start|>user\n", "<|im_end|>"),
                                               ("\n<|im_start|>assistant\n", "<|im_end|>"))),
    ChatTemplate(name="c4ai-command-r", default_system_prompt=None,
                 role_prefix_and_suffix={r: (f"<|START_OF_TURN_TOKEN|><|{tok}_TOKEN|>", "<|END_OF_TURN_TOKEN|>")
                                         for r, tok in (("system", "SYSTEM"), ("user", "USER"),
                                                        ("assistant", "CHATBOT"))}),
    ChatTemplate(name="internvl-2-5", default_system_prompt=_INTERNVL_SYSTEM, role_prefix_and_suffix=_CHATML,
                 stop_str=("<|im_end|>", "<|action_end|>")),
    ChatTemplate(name="interns1", default_system_prompt=_INTERNS1_SYSTEM, role_prefix_and_suffix=_CHATML,
                 stop_str=("<|im_end|>", "<|action_end|>")),
    ChatTemplate(name="granite-3-instruct", default_system_prompt=None, stop_str=("<|end_of_text|>",),
                 role_prefix_and_suffix=_same("<|start_of_role|>{role}<|end_of_role|>", "<|end_of_text|>")),
    ChatTemplate(name="deepseek-v3", default_system_prompt=None, role_prefix_and_suffix=_DEEPSEEK,
                 stop_str=("<｜end▁of▁sentence｜>",)),
    ChatTemplate(name="glm-4v", default_system_prompt=None, image_token="<|image|>",
                 role_prefix_and_suffix=_same("<|{role}|>\n", "\n"),
                 stop_str=("<|user|>", "<|endoftext|>", "<|observation|>")),
]:
    register_chat_template(_t)


@dataclass
class _Rule:
    """`pattern` must match (case-insensitive search) and `unless` must not."""

    pattern: str
    template: str
    unless: str | None = None
    also: list[str] = field(default_factory=list)  # further patterns that must all match

    def matches(self, path: str) -> bool:
        if not re.search(self.pattern, path, re.IGNORECASE):
            return False
        if self.unless and re.search(self.unless, path, re.IGNORECASE):
            return False
        return all(re.search(p, path, re.IGNORECASE) for p in self.also)


# First match wins; the order is SGLang's.
MODEL_PATH_RULES: list[_Rule] = [
    _Rule(r"deepseek-(v3|r1)", "deepseek-v3", unless=r"base"),
    _Rule(r"orion", "claude"),
    _Rule(r"janus", "janus-pro"),
    _Rule(r"dbrx", "dbrx-instruct", also=[r"instruct"]),
    _Rule(r"vicuna|llava-v1\.5|llava-next-video-7b", "vicuna_v1.1"),
    _Rule(r"llama-2.*chat|codellama.*instruct", "llama-2-chat"),
    _Rule(r"pixtral|(mistral|mixtral).*instruct", "mistral"),
    _Rule(r"llama-3.*instruct", "llama-3-instruct"),
    _Rule(r"tinyllama", "chatml"),
    _Rule(r"qwen.*vl", "qwen2-vl"),
    _Rule(r"glm[-_]?4(\.\d+)?v", "glm-4v"),
    _Rule(r"qwen.*(chat|instruct)", "qwen", unless=r"llava"),
    _Rule(r"llava-v1\.6-34b|llava-v1\.6-yi-34b|llava-next-video-34b|llava-onevision-qwen2", "chatml-llava"),
    _Rule(r"yi-vl", "yi-vl", unless=r"llava"),
    _Rule(r"yi-1\.5.*chat", "yi-1.5"),
    _Rule(r"gemma-4.*it", "gemma-4-it"),
    _Rule(r"(gemma.*it)|(gemma-3)", "gemma-it"),
    _Rule(r"minicpm-v", "minicpmv"),
    _Rule(r"minicpm-o", "minicpmo"),
    _Rule(r"c4ai-command-r", "c4ai-command-r"),
    _Rule(r"granite.*instruct", "granite-3-instruct"),
    _Rule(r"internvl2_5", "internvl-2-5"),
    _Rule(r"intern-s1|interns1", "interns1"),
]


def match_chat_template_name(model_path: str) -> str | None:
    """The registered template name SGLang would pick for `model_path`, or None (SGLang: "default")."""
    for rule in MODEL_PATH_RULES:
        if rule.matches(model_path):
            return rule.template
    return None


def get_chat_template_by_model_path(model_path: str) -> ChatTemplate:
    name = match_chat_template_name(model_path)
    return get_chat_template(name or "default")


# ---- templates derived from a tokenizer's Jinja chat template ---------------------------------------

_MARK = "\x00{}\x00"


def chat_template_from_tokenizer(tokenizer: Any, name: str = "tokenizer") -> ChatTemplate | None:
    """Derive role prefixes/suffixes by rendering marker messages through `tokenizer.apply_chat_template`.

    Returns None when the tokenizer has no chat template or it does not render turns independently
    (e.g. it rejects a system role or a lone assistant turn).
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    render: Callable[[list[dict[str, str]]], str] = lambda msgs: tokenizer.apply_chat_template(  # noqa: E731
        msgs, tokenize=False, add_generation_prompt=False)
    try:
        sys_msg = {"role": "system", "content": _MARK.format("S")}
        user_msg = {"role": "user", "content": _MARK.format("U")}
        asst_msg = {"role": "assistant", "content": _MARK.format("A")}
        full = render([sys_msg, user_msg, asst_msg])
        sys_prefix, rest = full.split(_MARK.format("S"))
        sys_suffix_user_prefix, rest = rest.split(_MARK.format("U"))
        user_suffix_asst_prefix, asst_tail = rest.split(_MARK.format("A"))
        # Split "suffix + next prefix" where the next role's prefix starts (rendered alone after a system turn).
        only_user = render([sys_msg, user_msg])
        user_suffix = only_user.split(_MARK.format("U"))[1]
        asst_prefix = user_suffix_asst_prefix[len(user_suffix):] if user_suffix_asst_prefix.startswith(user_suffix) \
            else user_suffix_asst_prefix
        sys_suffix, user_prefix = _split_turn(sys_suffix_user_prefix, asst_tail)
        default_system = _default_system(render([user_msg]), sys_prefix, sys_suffix, user_prefix)
    except Exception:  # noqa: BLE001 - templates that cannot render marker turns are simply not usable
        return None
    return ChatTemplate(name=name, default_system_prompt=default_system,
                        role_prefix_and_suffix=_roles((sys_prefix, sys_suffix), (user_prefix, user_suffix),
                                                      (asst_prefix, asst_tail)),
                        stop_str=tuple(s for s in {asst_tail.strip()} if s))


def _split_turn(between: str, turn_suffix: str) -> tuple[str, str]:
    """`between` = system suffix + user prefix; templates end every turn the same way, so cut there."""
    if turn_suffix and between.startswith(turn_suffix):
        return turn_suffix, between[len(turn_suffix):]
    return "", between


def _default_system(user_only: str, sys_prefix: str, sys_suffix: str, user_prefix: str) -> str | None:
    """The system prompt a template injects when the conversation has none."""
    head = user_only.split(_MARK.format("U"))[0]
    if head.endswith(user_prefix):
        head = head[: len(head) - len(user_prefix)]
    if head.startswith(sys_prefix) and sys_suffix and head.endswith(sys_suffix) and len(head) > len(sys_prefix):
        return head[len(sys_prefix): len(head) - len(sys_suffix)]
    return None
