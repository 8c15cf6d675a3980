"""Spike coding: turn a float input into integer counts with an EI-IF neuron, on any path.

``spike_code`` is the one place where operators code their inputs: ``qat`` rounds with the
quantizer and a straight-through gradient; ``snn-fused`` takes the neuron's closed form;
``snn`` steps the neuron through T steps under the constant input current x / s. All three
give the same counts n (x ~= s n). It also feeds the encoding observers (conversion audit).
``SpikeEncoder`` is the module form, for operands that are coded on their own.
"""

from __future__ import annotations

import torch
from torch import nn

from . import counters, observe
from .checks import check_finite, check_path
from .neuron import EIIFNeuron
from .quant import QuantSpec, Quantizer, _RoundSTE


def spike_code(
    module: nn.Module, neuron: EIIFNeuron, x: torch.Tensor, scale: torch.Tensor, time_steps: int, path: str,
    tally: bool = True,
) -> tuple[torch.Tensor, int]:
    """Counts n of ``x / scale`` over ``time_steps`` steps, and the number of spikes (0 unless counting;
    ``tally=False`` leaves the closed form's total to a caller that derives it itself)."""
    v = x / scale
    fired = 0
    if path == "qat":
        n = _RoundSTE.apply(v, time_steps)
    elif path == "snn-fused":
        with torch.no_grad():
            n = neuron.count_closed_form(v, time_steps)
        if counters.counting() and tally:
            fired = counters.abs_sum(n, bound=time_steps)
    else:
        with torch.no_grad():
            neuron.reset()
            n = torch.zeros_like(v)
            for _ in range(time_steps):
                spikes = neuron.single_step(v)
                n += spikes
                if counters.counting():
                    fired += counters.nonzero(spikes)
            neuron.reset()
    if observe.observing():
        observe.encoded(module, v, n, time_steps, scale)
    return n, fired


class SpikeEncoder(nn.Module):
    def __init__(self, spec: QuantSpec, path: str = "snn-fused", num_features: int | None = None, dim: int = -1) -> None:
        super().__init__()
        self.path = check_path(path, ("qat", "snn", "snn-fused"))
        self.quant = Quantizer(spec, num_features=num_features, dim=dim)
        self.neuron = EIIFNeuron()

    @property
    def T(self) -> int:
        return self.quant.T

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, s) with x ~= s * n; records the spikes when counting."""
        check_finite(x, "x")
        s = self.quant.scale_for(x)
        n, fired = spike_code(self, self.neuron, x, s, self.T, self.path)
        if counters.counting() and self.path != "qat":
            counters.record(self, spikes=fired, neuron_steps=self.T * x.numel(), float_ops=2 * x.numel())
        return n, s

    def extra_repr(self) -> str:
        return f"path={self.path}"
