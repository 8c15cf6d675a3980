"""Float (ANN) operators with the same call signatures as their spiking twins, and op counting.

They report ``Effective_MACs`` (multiplications by nonzero float inputs), ``Dense`` and
``float_ops`` so an ANN baseline is measured with the same counters as its SNN; each records
its counts in one method (``record_counts``), which the fused attention kernel calls too.

Class attributes tell stage-2 calibration (``models/calibrate.py``) what the spiking twin needs
from the float operator: ``observe_channels`` (the per-channel max |input|, for static input
scales) or ``range_kind`` (the max |input| of the operator's ``layer``, the fitted range of the
staircase neuron that replaces it).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.spiking import counters


class CountedLinear(nn.Linear):
    observe_channels: ClassVar[bool] = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            tokens = x.numel() // self.in_features
            weights = tokens * (self.weight.numel() + (self.out_features if self.bias is not None else 0))
            counters.record(
                self,
                Effective_MACs=counters.nonzero(x) * self.out_features,
                Dense=tokens * self.in_features * self.out_features,
                float_ops=(tokens * self.out_features if self.bias is not None else 0),
                weight_reads=weights,
                step_reads=weights,
                act_reads=x.numel(),
                act_writes=tokens * self.out_features,
            )
        return super().forward(x)


class FloatMatmul(nn.Module):
    """a @ b."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            K = a.shape[-1]
            self.record_counts(counters.nonzero(a), a.numel() // K, K, b.shape[-1])
        return a @ b

    def record_counts(self, nonzero_a: int, rows: int, inner: int, columns: int) -> None:
        """(rows x inner) @ (inner x columns), ``nonzero_a`` nonzero entries in a: each costs ``columns`` MACs."""
        counters.record(  # b, cached keys or values, is counted by the attention block (kv heads, mask)
            self, Effective_MACs=nonzero_a * columns, Dense=rows * inner * columns, act_reads=rows * inner, act_writes=rows * columns,
        )


class FloatAttentionValues(nn.Module):
    """P . V as one float matmul (the spiking twin is ``SpikingAttentionValues``)."""

    def __init__(self) -> None:
        super().__init__()
        self.matmul = FloatMatmul()

    def forward(self, probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.matmul(probs, v)

    def record_counts(self, nonzero_probs: int, rows: int, keys: int, head_dim: int) -> None:
        self.matmul.record_counts(nonzero_probs, rows, keys, head_dim)


class FloatSoftmax(nn.Module):
    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = x.masked_fill(~mask, torch.finfo(x.dtype).min)
        if counters.counting():
            self.record_counts(x.numel())
        return torch.softmax(x, dim=self.dim)

    def record_counts(self, elements: int) -> None:
        counters.record(self, float_ops=5 * elements, act_reads=elements, act_writes=elements)  # max, subtract, exp, sum, divide


class FloatSiLU(nn.Module):
    range_kind: ClassVar[str] = "silu"

    def __init__(self, layer: int = 0) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, float_ops=4 * x.numel(), act_reads=x.numel(), act_writes=x.numel())
        return F.silu(x)


class FloatMultiply(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, Effective_MACs=counters.nonzero(a), Dense=a.numel(), act_reads=2 * a.numel(), act_writes=a.numel())
        return a * b


class RMSNorm(nn.Module):
    """y = weight * x / sqrt(mean(x^2) + eps), computed in float32 (as Llama)."""

    observe_channels: ClassVar[bool] = True

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, float_ops=5 * x.numel(), weight_reads=x.numel(), step_reads=x.numel(), act_reads=x.numel(), act_writes=x.numel())
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """y = weight * (x - mean) / sqrt(var + eps) + bias (GPT-2), counted like RMSNorm."""

    observe_channels: ClassVar[bool] = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, float_ops=7 * x.numel(), weight_reads=2 * x.numel(), step_reads=2 * x.numel(), act_reads=x.numel(), act_writes=x.numel())
        return super().forward(x)


class FloatGELU(nn.Module):
    """GELU, exact (``approximate="none"``) or the tanh form GPT-2 uses (``"tanh"``)."""

    range_kind: ClassVar[str] = "gelu"

    def __init__(self, approximate: str = "none", layer: int = 0) -> None:
        super().__init__()
        self.approximate = approximate
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if counters.counting():
            counters.record(self, float_ops=8 * x.numel(), act_reads=x.numel(), act_writes=x.numel())
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate}"
