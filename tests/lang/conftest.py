"""Fixtures for the language tests: backends over the embedded SmolLM2 and over a tiny random model
that uses SmolLM2's tokenizer and chat template (so text programs run on it), and a real server."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


@pytest.fixture(scope="session")
def tiny_text_model(tiny_model_factory: Callable[..., str]) -> str:
    """A 2-layer random Llama with SmolLM2's 49152-token vocabulary and tokenizer files."""
    from pathlib import Path

    from sglang_nb.runtime.model_loader.resolve import resolve_model_dir

    path = Path(tiny_model_factory("llama_smol_vocab", "LlamaConfig", vocab_size=49152, bos_token_id=1,
                                   eos_token_id=2, pad_token_id=2, max_position_embeddings=4096))
    source = Path(resolve_model_dir(None))
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, path / name)
    return str(path)


@pytest.fixture(scope="session")
def tiny_text_engine(tiny_text_model: str) -> Iterator[Any]:
    from sglang_nb.runtime.engine import Engine

    engine = Engine(model_path=tiny_text_model, max_total_tokens=32768)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
def smollm_backend(smollm_engine: Any) -> Any:
    from sglang_nb.lang.backend.engine import EngineBackend

    return EngineBackend(smollm_engine)


@pytest.fixture(scope="session")
def tiny_backend(tiny_text_engine: Any) -> Any:
    from sglang_nb.lang.backend.engine import EngineBackend

    return EngineBackend(tiny_text_engine)


@pytest.fixture(scope="session")
def tiny_runtime(tiny_text_model: str) -> Iterator[Any]:
    """A real `launch_server` process over the tiny model, reached through `sgl.Runtime`."""
    import sglang_nb as sgl

    runtime = sgl.Runtime(model_path=tiny_text_model, max_total_tokens=32768, launch_timeout=600)
    yield runtime
    runtime.shutdown()


@pytest.fixture(scope="session")
def smollm_runtime() -> Iterator[Any]:
    """A real server over the embedded SmolLM2 (slow to start on CPU)."""
    import sglang_nb as sgl

    runtime = sgl.Runtime(max_total_tokens=16384, launch_timeout=900)
    yield runtime
    runtime.shutdown()


@pytest.fixture(params=["smollm", "tiny", "http", pytest.param("http_smollm", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> Any:
    """Every conformance program runs on SmolLM2 (Engine), the tiny model (Engine) and a server over
    the tiny model (HTTP); with -m slow also on a server over SmolLM2."""
    if request.param == "smollm":
        return request.getfixturevalue("smollm_backend")
    if request.param == "tiny":
        return request.getfixturevalue("tiny_backend")
    if request.param == "http_smollm":
        return request.getfixturevalue("smollm_runtime").endpoint
    return request.getfixturevalue("tiny_runtime").endpoint
