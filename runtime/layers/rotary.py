"""Rotary position embeddings with a precomputed cos/sin table indexed by position.

Scaling types: default, linear, dynamic (NTK, static at the maximum length), llama3, yarn.
Both the transformers 5.x `rope_parameters` and the older `rope_theta`/`rope_scaling` spellings
are read by `rope_params_from_config`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def rope_params_from_config(config: Any) -> dict[str, Any]:
    """{"rope_theta": float, "rope_type": str, ...scaling fields} from either config spelling."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        out = dict(params)
    else:
        out = {"rope_theta": getattr(config, "rope_theta", 10000.0)}
        scaling = getattr(config, "rope_scaling", None) or {}
        out.update(scaling)
    rope_type = out.get("rope_type") or out.get("type") or "default"
    out["rope_type"] = rope_type
    return out


def _inv_freq(rotary_dim: int, base: float) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim))


def _llama3_inv_freq(inv_freq: torch.Tensor, p: dict[str, Any], max_position: int) -> torch.Tensor:
    factor = p["factor"]
    low, high = p.get("low_freq_factor", 1.0), p.get("high_freq_factor", 4.0)
    old_len = p.get("original_max_position_embeddings", max_position)
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn_inv_freq(rotary_dim: int, base: float, p: dict[str, Any], max_position: int) -> tuple[torch.Tensor, float]:
    factor = p["factor"]
    orig = p.get("original_max_position_embeddings") or max_position
    beta_fast, beta_slow = p.get("beta_fast") or 32.0, p.get("beta_slow") or 1.0

    def get_mscale(scale: float, mscale: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0

    attention_factor = p.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = p.get("mscale"), p.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)
        else:
            attention_factor = get_mscale(factor)

    def correction_dim(num_rotations: float) -> float:
        return (rotary_dim * math.log(orig / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low = correction_dim(beta_fast)
    high = correction_dim(beta_slow)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, rotary_dim - 1)
    if low == high:
        high += 0.001
    ramp = (torch.arange(rotary_dim // 2, dtype=torch.float32) - low) / (high - low)
    extrapolation_factor = 1 - ramp.clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, rotary_dim, 2).float() / rotary_dim)
    inv_interp, inv_extrap = 1.0 / (factor * pos_freqs), 1.0 / pos_freqs
    inv_freq = inv_interp * (1 - extrapolation_factor) + inv_extrap * extrapolation_factor
    return inv_freq, float(attention_factor)


class RotaryEmbedding(nn.Module):
    """Applies rotary embeddings to q and k ([num_tokens, heads * head_dim]) at `positions`."""

    cos_cache: torch.Tensor  # [table_len, rotary_dim / 2]
    sin_cache: torch.Tensor

    def __init__(self, head_dim: int, rotary_dim: int, max_position: int, rope: dict[str, Any],
                 is_neox_style: bool = True, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.rotary_dim = rotary_dim
        self.is_neox_style = is_neox_style
        base = float(rope.get("rope_theta", 10000.0))
        rope_type = rope.get("rope_type", "default")
        scale = 1.0
        table_len = max_position
        if rope_type == "default":
            inv_freq = _inv_freq(rotary_dim, base)
        elif rope_type == "linear":
            inv_freq = _inv_freq(rotary_dim, base) / rope["factor"]
        elif rope_type == "dynamic":
            factor = rope["factor"]
            orig = rope.get("original_max_position_embeddings", max_position)
            table_len = int(orig * factor)
            base = base * ((factor * table_len / orig) - (factor - 1)) ** (rotary_dim / (rotary_dim - 2))
            inv_freq = _inv_freq(rotary_dim, base)
        elif rope_type == "llama3":
            inv_freq = _llama3_inv_freq(_inv_freq(rotary_dim, base), rope, max_position)
        elif rope_type == "yarn":
            inv_freq, scale = _yarn_inv_freq(rotary_dim, base, rope, max_position)
        else:
            raise ValueError(f"Unsupported rope type: {rope_type}")
        table_len = max(table_len, max_position)
        t = torch.arange(table_len, dtype=torch.int64).float()
        freqs = t[:, None] * inv_freq[None, :]  # [table_len, rotary_dim / 2]
        cos, sin = freqs.cos() * scale, freqs.sin() * scale
        self.register_buffer("cos_cache", cos.to(dtype or torch.float32), persistent=False)
        self.register_buffer("sin_cache", sin.to(dtype or torch.float32), persistent=False)
        self._last_positions: torch.Tensor | None = None
        self._last_cos_sin: tuple[torch.Tensor, torch.Tensor] = (cos, sin)

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if q.is_cuda and q.stride(-1) == 1 and k.stride(-1) == 1:  # fused Triton kernel per tensor
            from .attention.triton_ops import rotary_embedding

            args = (self.cos_cache, self.sin_cache, self.head_dim, self.rotary_dim, self.is_neox_style)
            return rotary_embedding(positions, q, *args), rotary_embedding(positions, k, *args)
        cos, sin = self.cos_sin(positions)
        return self._rotate(q, cos, sin), self._rotate(k, cos, sin)

    def forward_fused(self, positions: torch.Tensor, qk: torch.Tensor) -> torch.Tensor:
        """Rotate q and k in one pass: `qk` is [num_tokens, (q_heads + k_heads) * head_dim]."""
        if qk.is_cuda and qk.stride(-1) == 1:
            from .attention.triton_ops import rotary_embedding

            return rotary_embedding(positions, qk, self.cos_cache, self.sin_cache, self.head_dim, self.rotary_dim,
                                    self.is_neox_style)
        cos, sin = self.cos_sin(positions)
        return self._rotate(qk, cos, sin)

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin rows for `positions`, [num_tokens, 1, rotary_dim / 2].

        All layers share one RotaryEmbedding (see get_rope) and one positions tensor per forward, so
        the gather runs once per forward instead of once per layer."""
        if positions is not self._last_positions:
            self._last_positions = positions
            self._last_cos_sin = (self.cos_cache[positions].unsqueeze(1), self.sin_cache[positions].unsqueeze(1))
        return self._last_cos_sin

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.view(shape[0], -1, self.head_dim)
        rot, rest = x[..., : self.rotary_dim], x[..., self.rotary_dim:]
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        if self.is_neox_style:
            x1, x2 = rot.chunk(2, dim=-1)
            out = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        else:
            x1, x2 = rot[..., 0::2], rot[..., 1::2]
            out = torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)
        if rest.shape[-1]:
            out = torch.cat((out, rest), dim=-1)
        return out.reshape(shape)


_ROPE_CACHE: dict[tuple[Any, ...], RotaryEmbedding] = {}


def get_rope(head_dim: int, rotary_dim: int, max_position: int, rope: dict[str, Any],
             is_neox_style: bool = True, dtype: torch.dtype | None = None) -> RotaryEmbedding:
    """One shared instance per configuration and device: every layer of a model uses the same one."""
    key = (head_dim, rotary_dim, max_position, repr(sorted(rope.items())), is_neox_style, dtype,
           str(torch.empty(0).device))
    if key not in _ROPE_CACHE:
        _ROPE_CACHE[key] = RotaryEmbedding(head_dim, rotary_dim, max_position, rope, is_neox_style, dtype)
    return _ROPE_CACHE[key]
