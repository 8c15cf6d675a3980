"""Surrogate gradients: a Heaviside spike forward, a smooth derivative backward (NeurTransformer step 3).

A spiking neuron fires S = H(x), x = V/theta - 1 (membrane over threshold, normalized), whose
derivative is zero almost everywhere. Surrogate-gradient learning keeps H in the forward pass and
replaces H' by the derivative of a smooth function sigma in the backward pass. The functions are
those of SpikingJelly (``spikingjelly.activation_based.surrogate``), written from their formulas:

- ``atan``:    sigma(x) = arctan(pi/2 alpha x) / pi + 1/2,   sigma'(x) = alpha / (2 (1 + (pi/2 alpha x)^2));
- ``sigmoid``: sigma(x) = sigmoid(alpha x),                   sigma'(x) = alpha sigmoid(alpha x) (1 - sigmoid(alpha x)).

``spike(x, "atan", alpha)`` selects one by name; ``SURROGATES`` lists them with default alphas.
SSA's IF neuron (``neuron.IFNeuron``) fires through ``ternary_spike``; the fine-tuning loop
(``models/train/surrogate.py``) trains through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def atan_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """sigma'(x) = alpha / (2 (1 + (pi/2 alpha x)^2))."""
    return alpha / (2 * (1 + (math.pi / 2 * alpha * x) ** 2))


def sigmoid_derivative(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """sigma'(x) = alpha sigmoid(alpha x) (1 - sigmoid(alpha x))."""
    s = torch.sigmoid(alpha * x)
    return alpha * s * (1 - s)


def atan_primitive(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """sigma(x) = arctan(pi/2 alpha x) / pi + 1/2 (the smooth step whose derivative is used)."""
    return torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5


def sigmoid_primitive(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.sigmoid(alpha * x)


# name: (sigma', sigma, default alpha as in SpikingJelly)
SURROGATES: dict[str, tuple[Callable[[torch.Tensor, float], torch.Tensor], Callable[[torch.Tensor, float], torch.Tensor], float]] = {
    "atan": (atan_derivative, atan_primitive, 2.0),
    "sigmoid": (sigmoid_derivative, sigmoid_primitive, 4.0),
}


def check_surrogate(name: object, alpha: object = None) -> tuple[str, float]:
    """(name, alpha) with alpha defaulted; one-line ValueError for an unknown name or a bad alpha."""
    if name not in SURROGATES:
        raise ValueError(f"surrogate must be one of {', '.join(SURROGATES)}, got {name!r}")
    value = SURROGATES[name][2] if alpha is None else alpha
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    return name, float(value)  # type: ignore[return-value]


class _Spike(torch.autograd.Function):
    """Forward: H(x) = 1 where x >= 0, else 0. Backward: grad * sigma'(x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * SURROGATES[ctx.name][0](x, ctx.alpha), None, None


def spike(x: torch.Tensor, surrogate: str = "atan", alpha: float | None = None) -> torch.Tensor:
    """Heaviside spikes of ``x`` (fire where x >= 0) with the named surrogate gradient."""
    name, a = check_surrogate(surrogate, alpha)
    return _Spike.apply(x, name, a)


class _TernarySpike(torch.autograd.Function):
    """S = H(v/theta - 1/2) - H(-v/theta - 1/2) in {-1, 0, 1}, one pass for both surrogate gradients.

    With g = (sigma'(v/theta - 1/2) + sigma'(-v/theta - 1/2)) / theta: dS/dv = g and dS/dtheta = -g v / theta.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, threshold: torch.Tensor, name: str, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(v, threshold)
        ctx.name, ctx.alpha = name, alpha
        half = threshold / 2
        return (v >= half).to(v.dtype) - (v <= -half).to(v.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        v, threshold = ctx.saved_tensors
        derivative = SURROGATES[ctx.name][0]
        u = v / threshold
        g = grad * (derivative(u - 0.5, ctx.alpha) + derivative(-u - 0.5, ctx.alpha)) / threshold
        grad_threshold = None
        if ctx.needs_input_grad[1]:
            grad_threshold = (-g * u).sum_to_size(threshold.shape)
        return g, grad_threshold, None, None


def ternary_spike(v: torch.Tensor, threshold: torch.Tensor, surrogate: str = "atan", alpha: float | None = None) -> torch.Tensor:
    """Ternary spikes of membrane ``v``: +1 where v >= theta/2, -1 where v <= -theta/2, with surrogate gradients.

    Equal (forward and backward) to ``spike(v/theta - 1/2) - spike(-v/theta - 1/2)``.
    """
    name, a = check_surrogate(surrogate, alpha)
    threshold = torch.as_tensor(threshold, dtype=v.dtype, device=v.device)
    return _TernarySpike.apply(v, threshold, name, a)
