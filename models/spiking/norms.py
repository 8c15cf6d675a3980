"""Spiking normalization (BrainGPT appendix B.4): SNNRMSNorm and SNNLayerNorm.

Both operate on the accumulated input X_t with the differential readout of ``differential.py``.
B.4 writes a mean-subtracting norm: SNNLayerNorm is B.4 as written, with the mean (GPT-2),
y = gamma (x - mean(x)) / sqrt(var(x) + eps) + beta. RMSNorm has no mean, so its f is
y = gamma x / sqrt(mean(x^2) + eps), as in Llama.
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import check_last_dim
from .differential import DifferentialOp
from .quant import QuantSpec


class _Norm(DifferentialOp):
    """A norm over the last dimension ``dim`` with a gain ``weight``; modes ``qat``, ``snn``, ``snn-fused``."""

    def __init__(self, dim: int, eps: float, input_spec: QuantSpec | None, mode: str) -> None:
        super().__init__(input_spec, mode, num_features=dim)
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def check_shape(self, x: torch.Tensor) -> None:
        check_last_dim(x, self.dim, "x", "the normalized dimension")

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}, mode={self.mode}"


class SNNRMSNorm(_Norm):
    """RMSNorm (B.4 without the mean): y = gamma * x / sqrt(mean(x^2) + eps), on accumulated input."""

    float_ops_per_element = 5  # square, mean, rsqrt, scale, gamma

    def __init__(self, dim: int, eps: float = 1e-6, input_spec: QuantSpec | None = None, mode: str = "snn-fused") -> None:
        super().__init__(dim, eps, input_spec, mode)

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class SNNLayerNorm(_Norm):
    """LayerNorm (B.4, with the mean): y = gamma * (x - mean(x)) / sqrt(var(x) + eps) + beta, on accumulated input."""

    float_ops_per_element = 7  # mean, subtract, square, mean, rsqrt, scale, gamma/beta

    def __init__(self, dim: int, eps: float = 1e-5, input_spec: QuantSpec | None = None, mode: str = "snn-fused") -> None:
        super().__init__(dim, eps, input_spec, mode)
        self.bias = nn.Parameter(torch.zeros(dim))

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
