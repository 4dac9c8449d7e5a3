"""Instantiate a model class and fill its weights (safetensors, .bin/.pt, or random for `dummy`)."""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterator

import torch
from torch import nn

from ..models.registry import ModelRegistry
from .model_config import ModelConfig

logger = logging.getLogger(__name__)


def get_model(model_config: ModelConfig, load_format: str, device: str) -> nn.Module:
    """Build the registered class for the config's architecture on `device` and load its weights."""
    cls, arch = ModelRegistry.resolve_model_cls(model_config.architectures)
    old_dtype = torch.get_default_dtype()
    torch.set_default_dtype(model_config.dtype)
    try:
        with torch.device(device):
            model = cls(model_config.hf_config)
    finally:
        torch.set_default_dtype(old_dtype)
    if load_format == "dummy":
        init_dummy_weights(model)
    else:
        model.load_weights(iterate_weights(model_config.path, load_format, model_config.dtype))
    _cast_buffers(model, device)
    return model.eval()


def _cast_buffers(model: nn.Module, device: str) -> None:
    """Rotary tables stay fp32 (computed as in HF); everything else already has the model dtype."""
    for module in model.modules():
        for name, buf in module.named_buffers(recurse=False):
            if buf.device.type != torch.device(device).type:
                setattr(module, name, buf.to(device))


def init_dummy_weights(model: nn.Module, seed: int = 0) -> None:
    """Small random weights (norms at 1) so that dummy models produce finite, varied logits."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    dev_gens: dict[torch.device, torch.Generator] = {}
    for name, param in model.named_parameters():
        if param.dim() == 1 and "norm" in name:
            param.data.fill_(1.0)
        elif param.device.type != "cpu":  # generate on the device: billions of values in seconds
            if param.device not in dev_gens:
                dev_gens[param.device] = torch.Generator(device=param.device).manual_seed(seed)
            param.data.uniform_(-1e-2, 1e-2, generator=dev_gens[param.device])
        else:
            param.data.copy_((torch.rand(param.shape, generator=gen) * 2e-2 - 1e-2).to(param.dtype))


def iterate_weights(path: str, load_format: str, dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs from the checkpoint shards, cast to `dtype` (floating tensors only)."""
    files = _weight_files(path, load_format)
    if not files:
        raise ValueError(f"No weights found in {path} (looked for *.safetensors, *.bin, *.pt).")
    for file in files:
        if file.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(file, framework="pt", device="cpu") as f:
                for name in f.keys():  # noqa: SIM118 - safe_open is not a dict
                    yield name, _cast(f.get_tensor(name), dtype)
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
            for name, tensor in state.items():
                yield name, _cast(tensor, dtype)


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype) if t.is_floating_point() else t


def _weight_files(path: str, load_format: str) -> list[str]:
    if load_format in ("auto", "safetensors", "gguf"):
        index = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            return [os.path.join(path, s) for s in shards]
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        if files or load_format == "safetensors":
            return files
    return sorted(glob.glob(os.path.join(path, "*.bin")) + glob.glob(os.path.join(path, "*.pt")))
