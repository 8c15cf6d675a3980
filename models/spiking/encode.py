"""Spike coding: turn a float input into integer counts with an EI-IF neuron, in any mode.

``spike_code`` is the one place where operators code their inputs: ``qat`` rounds with the
quantizer and a straight-through gradient; ``snn`` steps the neuron (``neuron.py``) through the
steps of its ``coding`` (rate T, bitwise ceil(log2(T+1)), multilevel 1) under the constant input
current x / s, n = sum_k w_k S(k); ``snn-fused`` takes the neuron's closed form (``fast.py``). All
three give the same counts n (x ~= s n), whatever the coding; the coding decides the spikes.
It also feeds the encoding observers (conversion audit). ``SpikeEncoder`` is the module form, for operands that are coded on their own.
"""

from __future__ import annotations

import torch
from torch import nn

import models.spiking.counters as counters
import models.spiking.observe as observe

from .checks import OPERATOR_MODES, check_finite, check_mode, coding_steps
from .fast import coded_counts, coded_spikes
from .neuron import EIIFNeuron
from .quant import QuantSpec, Quantizer, _RoundSTE


class SpikeCoding:
    """Mixin of the operators that spike-code their own input: the conversion audit reports each of them.

    ``coding_steps``: T of that coding (0 when the input arrives already accumulated, e.g. a softmax fed
    by SNNMatmul's steps); ``calibrated_input``: the quantizer whose static scale stage-2 calibration sets
    from the float twin's input maxima, None when the operator has none.
    """

    @property
    def coding_steps(self) -> int:
        raise NotImplementedError

    @property
    def calibrated_input(self) -> Quantizer | None:
        return None


def spike_code(
    module: nn.Module, neuron: EIIFNeuron, x: torch.Tensor, scale: torch.Tensor, time_steps: int, mode: str,
    tally: bool = True,
) -> tuple[torch.Tensor, int]:
    """Counts n of ``x / scale`` in the range [-T, T] (T = ``time_steps``), coded in ``neuron.coding``, and the number
    of spikes (0 unless counting; ``tally=False`` leaves the closed form's total to a caller that derives it itself)."""
    v = x / scale
    fired = 0
    if mode == "qat":
        n = _RoundSTE.apply(v, time_steps)
    elif mode == "snn-fused":
        with torch.no_grad():
            n = coded_counts(neuron, v, time_steps)
        if counters.counting() and tally:
            fired = coded_spikes(n, neuron.coding, time_steps)
    else:
        with torch.no_grad():
            neuron.reset()
            n = torch.zeros_like(v)
            for weight, spikes in neuron.iter_weighted(v, time_steps):
                n += spikes if weight == 1 else spikes * weight
                if counters.counting():
                    fired += counters.nonzero(spikes)
            neuron.reset()
    if observe.observing():
        observe.encoded(module, v, n, time_steps, scale)
    return n, fired


class SpikeEncoder(SpikeCoding, nn.Module):
    """An operand coded on its own: (n, s) with x ~= s * n, in mode ``qat``, ``snn`` or ``snn-fused``."""

    def __init__(self, spec: QuantSpec, mode: str = "snn-fused", num_features: int | None = None, dim: int = -1) -> None:
        super().__init__()
        self.mode = check_mode(mode, OPERATOR_MODES)
        self.quant = Quantizer(spec, num_features=num_features, dim=dim)
        self.neuron = EIIFNeuron()

    @property
    def T(self) -> int:
        return self.quant.T

    @property
    def coding_steps(self) -> int:
        return self.quant.T

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, s) with x ~= s * n; records the spikes when counting."""
        check_finite(x, "x")
        s = self.quant.scale_for(x)
        n, fired = spike_code(self, self.neuron, x, s, self.T, self.mode)
        if counters.counting():
            self._record_counts(x, fired)
        return n, s

    def _record_counts(self, x: torch.Tensor, spikes: int, values_read: bool = True) -> None:
        """``values_read`` False: ``x`` is already coded (a decoder's cached codes, read by the product as its cache)."""
        if self.mode != "qat":
            steps = coding_steps(self.neuron.coding, self.T)
            counters.record(self, spikes=spikes, neuron_steps=steps * x.numel(), float_ops=2 * x.numel(), act_reads=x.numel() if values_read else 0)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
