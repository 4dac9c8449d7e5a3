"""Request datasets of `bench_serving`: sharegpt (a local ShareGPT-format JSON file), random,
random-ids and generated-shared-prefix, with SGLang's length rules. Nothing is downloaded."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class DatasetRow:
    prompt: str | list[int]  # text, or token ids with --tokenize-prompt
    prompt_len: int
    output_len: int


def _load_sharegpt(path: str) -> list[tuple[str, str]]:
    """(first turn, second turn) of every conversation with at least two turns."""
    if not path:
        raise ValueError("--dataset-path: this machine downloads nothing; pass a local ShareGPT-format JSON file "
                         "(a list of {\"conversations\": [{\"from\", \"value\"}, ...]}).")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"--dataset-path: {path} must hold a JSON list of conversations.")
    pairs = []
    for item in data:
        conv = item.get("conversations", item.get("conversation")) if isinstance(item, dict) else None
        if isinstance(conv, list) and len(conv) >= 2:
            pairs.append((str(conv[0].get("value", "")), str(conv[1].get("value", ""))))
    return pairs


def sample_sharegpt(path: str, num: int, tokenizer: Any, fixed_output_len: int | None,
                    context_len: int | None, apply_chat_template: bool) -> list[DatasetRow]:
    pairs = _load_sharegpt(path)
    random.shuffle(pairs)
    rows: list[DatasetRow] = []
    for prompt, completion in pairs:
        if len(rows) == num:
            break
        if apply_chat_template:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                   add_generation_prompt=True, tokenize=False)
        prompt_len = len(tokenizer.encode(prompt))
        output_len = fixed_output_len or len(tokenizer.encode(completion))
        if prompt_len < 2 or output_len < 2:
            continue
        if context_len is not None and prompt_len + output_len > context_len:
            continue
        if context_len is None and (prompt_len > 1024 or prompt_len + output_len > 2048):
            continue
        rows.append(DatasetRow(prompt, prompt_len, output_len))
    _print_totals(rows)
    return rows


def _special_ids(tokenizer: Any) -> set[int]:
    return set(getattr(tokenizer, "all_special_ids", []) or [])


def sample_random(num: int, input_len: int, output_len: int, range_ratio: float, tokenizer: Any,
                  dataset_path: str, tokenize_prompt: bool, ids_only: bool = False) -> list[DatasetRow]:
    """Lengths uniform in [max(I*r, 1), I] and [max(O*r, 1), O]; token content from ShareGPT prompts
    when a file is given (repeated/truncated to length), otherwise from the vocabulary."""
    if input_len < 1 or output_len < 1 or not 0.0 <= range_ratio <= 1.0:
        raise ValueError("--random-input-len/--random-output-len must be >= 1 and --random-range-ratio in [0, 1].")
    input_lens = np.random.randint(max(int(input_len * range_ratio), 1), input_len + 1, size=num)
    output_lens = np.random.randint(max(int(output_len * range_ratio), 1), output_len + 1, size=num)
    vocab = len(tokenizer)
    special = _special_ids(tokenizer)
    pool: list[list[int]] = []
    if dataset_path and not ids_only:
        pool = [ids for ids in (tokenizer.encode(p) for p, _ in _load_sharegpt(dataset_path)) if ids]
    offsets = np.random.randint(0, vocab, size=num)
    rows = []
    for i in range(num):
        n = int(input_lens[i])
        if pool:
            src = pool[i % len(pool)]
            ids = (src * (n // len(src) + 1))[:n]
        else:
            ids = [int((offsets[i] + i + j) % vocab) for j in range(n)]
            ids = [t if t not in special else (t + 1) % vocab for t in ids]
        prompt: str | list[int] = ids if tokenize_prompt else tokenizer.decode(ids)
        rows.append(DatasetRow(prompt, n, int(output_lens[i])))
    _print_totals(rows)
    return rows


def sample_generated_shared_prefix(num_groups: int, prompts_per_group: int, system_prompt_len: int,
                                   question_len: int, output_len: int, tokenizer: Any) -> list[DatasetRow]:
    """G groups of P prompts; each group shares a system prompt of S random tokens, each prompt adds a
    Q-token question; shuffled."""
    vocab = len(tokenizer)
    special = _special_ids(tokenizer)

    def random_text(n: int) -> str:
        ids = [t for t in np.random.randint(0, vocab, size=n * 2).tolist() if t not in special][:n]
        return str(tokenizer.decode(ids))

    rows = []
    for _ in range(num_groups):
        system = random_text(system_prompt_len)
        for _ in range(prompts_per_group):
            text = system + "\n\n" + random_text(question_len)
            rows.append(DatasetRow(text, len(tokenizer.encode(text)), output_len))
    random.shuffle(rows)
    _print_totals(rows)
    return rows


def _print_totals(rows: list[DatasetRow]) -> None:
    print(f"#Input tokens: {sum(r.prompt_len for r in rows)}")
    print(f"#Output tokens: {sum(r.output_len for r in rows)}")
