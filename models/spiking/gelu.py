"""SNNGELU: GELU from two fitted spiking neurons, as SNNSiLU (BrainGPT appendix B.2.2's construction).

GELU(x) = x Phi(x) has SiLU's shape: 0 at 0, rising on x >= 0, one minimum on x < 0
(-0.1700 at x = -0.7518) and back towards 0, so ``fit_staircase`` fits it the same way: T
equal positive steps and a ternary negative neuron. GPT-2 uses the tanh approximation
(``approximate="tanh"``, transformers' ``gelu_new``); the staircase is fitted to whichever
GELU the model uses. ``fit_snn_gelu(T, x_max).max_abs_error`` is the error on [-x_max, x_max].
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from .staircase import SNNStaircase, StaircaseFit, bisect_root, fit_staircase

APPROXIMATIONS = ("none", "tanh")
_C = math.sqrt(2 / math.pi)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _gelu_prime(x: float) -> float:
    """Phi(x) + x phi(x)."""
    return 0.5 * (1 + math.erf(x / math.sqrt(2))) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _gelu_tanh_prime(x: float) -> float:
    u = _C * (x + 0.044715 * x**3)
    t = math.tanh(u)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _C * (1 + 3 * 0.044715 * x * x)


def check_approximate(approximate: object) -> str:
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {', '.join(APPROXIMATIONS)}, got {approximate!r}")
    return approximate  # type: ignore[return-value]


@lru_cache(maxsize=64)
def fit_snn_gelu(time_steps: int = 127, x_max: float = 8.0, approximate: str = "none", grid_points: int = 160_001) -> StaircaseFit:
    """Fit the two neurons to GELU (exact or tanh) for T time steps on [-x_max, x_max]; the fit carries its error."""
    check_approximate(approximate)
    fn, prime = (_gelu, _gelu_prime) if approximate == "none" else (_gelu_tanh, _gelu_tanh_prime)
    return fit_staircase(fn, bisect_root(prime, -2.0, -0.5), time_steps, x_max, grid_points)


class SNNGELU(SNNStaircase):
    """GELU by two fitted spiking neurons. Modes ``qat`` (staircase forward, GELU' backward), ``snn``, ``snn-fused``."""

    float_ops_per_element = 8  # erf or tanh, products and sums of the float GELU

    def __init__(self, time_steps: int = 127, x_max: float = 8.0, approximate: str = "none", mode: str = "snn-fused") -> None:
        self.approximate = check_approximate(approximate)
        super().__init__(time_steps, x_max, mode)

    def make_fit(self, time_steps: int, x_max: float) -> StaircaseFit:
        return fit_snn_gelu(time_steps, x_max, self.approximate)

    def float_backward(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (out,) = torch.autograd.grad(F.gelu(x, approximate=self.approximate), x, grad)
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", approximate={self.approximate}"
