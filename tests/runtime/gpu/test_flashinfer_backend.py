"""The flashinfer backend against torch_native on random batches over a real pool (GQA, MHA, ragged
extends with and without cached prefixes, decode up to 32k), and the engine's greedy tokens with
flashinfer equal to those with triton (bf16, CUDA graphs, overlap, chunked prefill, cache hits)."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from backend_checks import compare_backend  # noqa: E402

pytestmark = pytest.mark.gpu
pytest.importorskip("flashinfer")

# Head dim 128 throughout: one compiled FlashInfer module (bf16, 128) serves every case but the MHA
# one, which takes the CUDA-core decode kernel (group < 4).
SHAPES = [(32, 8, 128), (16, 4, 128), (8, 8, 128)]


@pytest.mark.parametrize("heads,kv_heads,head_dim", SHAPES)
def test_extend_matches_torch_native(heads: int, kv_heads: int, head_dim: int) -> None:
    # No prefix (ragged only), then cached prefixes mixed with fresh prompts (ragged + paged, merged).
    assert compare_backend("flashinfer", [0, 0, 0], [33, 1, 300], heads, kv_heads, head_dim, torch.bfloat16,
                           "cuda") < 2e-2
    assert compare_backend("flashinfer", [0, 17, 300, 0, 1000], [33, 1, 129, 500, 64], heads, kv_heads, head_dim,
                           torch.bfloat16, "cuda", seed=3) < 2e-2


@pytest.mark.parametrize("heads,kv_heads,head_dim", SHAPES)
def test_decode_matches_torch_native(heads: int, kv_heads: int, head_dim: int) -> None:
    lens = [1, 7, 130, 1000, 4097]
    assert compare_backend("flashinfer", [n - 1 for n in lens], [1] * len(lens), heads, kv_heads, head_dim,
                           torch.bfloat16, "cuda") < 2e-2


def test_decode_32k_context() -> None:
    assert compare_backend("flashinfer", [32767, 4], [1, 1], 32, 8, 128, torch.bfloat16, "cuda") < 2e-2


def test_engine_greedy_tokens_identical_across_backends(bf16_llama: str, bf16_reference: dict[str, Any]) -> None:
    from sglang_nb.runtime.engine import Engine

    ref = bf16_reference
    prompts = [ref["prompts"][i] for i in ref["selected"]]
    tokens = {}
    for backend in ("triton", "flashinfer"):
        with Engine(model_path=bf16_llama, skip_tokenizer_init=True, device="cuda", dtype="bfloat16",
                    attention_backend=backend, max_total_tokens=16384, chunked_prefill_size=64,
                    cuda_graph_max_bs=8) as engine:
            assert engine.get_server_info()["attention_backend"] == backend
            runs = []
            for _ in range(2):  # fresh, then cache hits (the flashinfer extend merges prefix and new tokens)
                outs = engine.generate(input_ids=prompts, sampling_params=[ref["params"]] * len(prompts))
                runs.append([o["output_ids"] for o in outs])
            assert runs[0] == runs[1]
            tokens[backend] = runs[0]
    assert tokens["flashinfer"] == tokens["triton"]
