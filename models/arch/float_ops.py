"""Float (ANN) operators with the same call signatures as their spiking twins, and op counting.

They report ``Effective_MACs`` (multiplications by nonzero float inputs), ``Dense`` and
``float_ops`` so an ANN baseline is measured with the same counters as its SNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.spiking import counters


class CountedLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            tokens = x.numel() // self.in_features
            counters.record(
                self,
                Effective_MACs=counters.nonzero(x) * self.out_features,
                Dense=tokens * self.in_features * self.out_features,
                float_ops=(tokens * self.out_features if self.bias is not None else 0),
            )
        return super().forward(x)


class FloatMatmul(nn.Module):
    """a @ b."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
            batch = a.numel() // (M * K)
            counters.record(self, Effective_MACs=counters.nonzero(a) * N, Dense=batch * M * K * N)
        return a @ b


class FloatSoftmax(nn.Module):
    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = x.masked_fill(~mask, torch.finfo(x.dtype).min)
        if counters.counting():
            counters.record(self, float_ops=5 * x.numel())
        return torch.softmax(x, dim=self.dim)


class FloatSiLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, float_ops=4 * x.numel())
        return F.silu(x)


class FloatMultiply(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, Effective_MACs=counters.nonzero(a), Dense=a.numel())
        return a * b


class RMSNorm(nn.Module):
    """y = weight * x / sqrt(mean(x^2) + eps), computed in float32 (as Llama)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, float_ops=5 * x.numel())
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """y = weight * (x - mean) / sqrt(var + eps) + bias (GPT-2), counted like RMSNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, float_ops=7 * x.numel())
        return super().forward(x)


class FloatGELU(nn.Module):
    """GELU, exact (``approximate="none"``) or the tanh form GPT-2 uses (``"tanh"``)."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, float_ops=8 * x.numel())
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate}"
