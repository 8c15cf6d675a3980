"""SNNSiLU: SiLU from a positive and a negative spiking neuron (BrainGPT appendix B.2.2).

SiLU(x) = x sigma(x) rises from 0 on x >= 0 and, on x < 0, falls to its minimum -0.2785 at
x = -1.2785 and rises back towards 0: ``fit_staircase`` (``staircase.py``) fits the two neurons
to it for T time steps on [-x_max, x_max]; ``fit_snn_silu(T, x_max).max_abs_error`` is the error there.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from .staircase import SNNStaircase, StaircaseFit, bisect_root, fit_staircase

SiLUFit = StaircaseFit  # the name SNNSiLU's fit had first


def _silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _silu_prime(x: float) -> float:
    s = 1 / (1 + math.exp(-x))
    return s * (1 + x * (1 - s))


def _argmin_silu() -> float:
    """x* with SiLU'(x*) = 0, by bisection on the derivative (float64)."""
    return bisect_root(_silu_prime, -2.0, -1.0)


@lru_cache(maxsize=64)
def fit_snn_silu(time_steps: int = 127, x_max: float = 8.0, grid_points: int = 160_001) -> StaircaseFit:
    """Fit the two neurons to SiLU for T time steps on [-x_max, x_max] and measure the error there."""
    return fit_staircase(_silu, _argmin_silu(), time_steps, x_max, grid_points)


class SNNSiLU(SNNStaircase):
    """SiLU by two fitted spiking neurons. Modes ``qat`` (staircase forward, SiLU' backward), ``snn``, ``snn-fused``."""

    def make_fit(self, time_steps: int, x_max: float) -> StaircaseFit:
        return fit_snn_silu(time_steps, x_max)

    def float_backward(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x)
        return grad * s * (1 + x * (1 - s))
