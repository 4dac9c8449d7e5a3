"""RMSNorm (with the fused residual-add form) and LayerNorm."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """y = x / rms(x) * w, computed in fp32 like Hugging Face.

    With `residual`, computes the pre-norm sum `x + residual` first and returns (normed, sum), so
    decoder layers carry the residual stream without an extra add.
    """

    gemma_style = False  # y = norm(x) * (1 + w) in fp32 (GemmaRMSNorm)

    def __init__(self, hidden_size: int, eps: float = 1e-6, params_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, dtype=params_dtype or torch.get_default_dtype()),
                                   requires_grad=False)
        self.variance_epsilon = eps

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.is_cuda:  # one fused Triton kernel instead of ~8 small ones
            from .attention.triton_ops import rmsnorm

            return rmsnorm(x, self.weight, self.variance_epsilon, residual, gemma=self.gemma_style)
        if residual is None:
            return self._norm(x)
        residual = x + residual
        return self._norm(residual), residual


class GemmaRMSNorm(RMSNorm):
    """Gemma's variant: y = x / rms(x) * (1 + w), all in fp32."""

    gemma_style = True

    def __init__(self, hidden_size: int, eps: float = 1e-6, params_dtype: torch.dtype | None = None) -> None:
        super().__init__(hidden_size, eps, params_dtype)
        self.weight.data.zero_()

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return (x * (1.0 + self.weight.float())).to(dtype)


class LayerNorm(nn.LayerNorm):
    def __init__(self, hidden_size: int, eps: float = 1e-5, bias: bool = True,
                 params_dtype: torch.dtype | None = None) -> None:
        super().__init__(hidden_size, eps=eps, bias=bias, dtype=params_dtype)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
