"""Spike coding: turn a float input into integer counts with an EI-IF neuron, in any mode.

``spike_code`` is the one place where operators code their inputs: ``qat`` rounds with the
quantizer and a straight-through gradient; ``snn`` steps the neuron (``neuron.py``) through the
steps of its ``coding`` (rate T, bitwise ceil(log2(T+1)), multilevel 1) under the constant input
current x / s, n = sum_k w_k S(k); ``snn-fused`` takes the neuron's closed form (``fast.py``). All
three give the same counts n (x ~= s n), whatever the coding; the coding decides the spikes.
It also feeds the encoding observers (conversion audit). ``SpikeEncoder`` is the module form, for operands that are coded on their own.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch
from torch import nn

import models.spiking.counters as counters
import models.spiking.kernels as kernels
import models.spiking.observe as observe

from .checks import OPERATOR_MODES, check_finite, check_mode, coding_steps
from .fast import coded_counts, coded_spikes, counts_are_quantized, remembered
from .neuron import EIIFNeuron
from .quant import MIN_FACTOR, QuantSpec, Quantizer, _RoundSTE


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


class FusedCode(NamedTuple):
    """``fused_code``'s result: the counts, the two parts of the scale (x ~= token static n) and the spikes."""

    n: torch.Tensor
    token: torch.Tensor
    static: torch.Tensor | None
    spikes: int


FLOAT32_EXACT = 2**24  # integers up to here are exact in float32: sums of counts below it need no float64


@lru_cache(maxsize=64)
def steps_tensor(steps: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """T as a 0-d tensor, the divisor of a per-token scale in the kernels (a tensor, so no compiler turns the
    division into a multiplication by 1/T), kept per (T, dtype, device)."""
    return torch.tensor(float(steps), dtype=dtype, device=device)


class _SharedCode:
    """The last ``fused_code(..., shared=True)``: layers that read one input with equal quantizers (a Llama's q, k and
    v projections, calibrated on the same activations; gate and up) get one coding. Holds its input, so the key
    (the tensor itself, its version, the settings, the factor's and clip's values) cannot match another tensor."""

    entry: tuple | None = None

    @classmethod
    def find(cls, key: tuple, factor: torch.Tensor | None, clip: torch.Tensor) -> tuple | None:
        if cls.entry is None:
            return None
        (x, *rest), (old_factor, old_clip), result = cls.entry
        if x is not key[0] or tuple(rest) != key[1:] or (old_factor is None) != (factor is None):
            return None
        if not (old_clip is clip or torch.equal(old_clip, clip)) or (factor is not None and not (old_factor is factor or torch.equal(old_factor, factor))):
            return None
        return result


def coding_constants(quant: Quantizer, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(the smoothing factor |f| kept above MIN_FACTOR, or None where not smoothed; the clip) of ``quant`` in x's
    dtype, as the quantizer computes them, kept until one of them changes: a decode step codes about 400 tiny
    tensors, and these few ops each were a fifth of the coding's time there."""
    smoothed = quant.spec.granularity == "smoothed"
    if smoothed and x.shape[-1] != quant.num_features:
        quant._check_calibrated(x)  # the quantizer's one-line error

    def compute() -> tuple[torch.Tensor | None, torch.Tensor]:
        if smoothed:
            quant._check_calibrated(x)
        factor = quant.factor.detach().abs().clamp_min(MIN_FACTOR).to(x.dtype) if smoothed else None
        return factor, quant.clip_value().detach().to(x.dtype)

    sources = (quant.clip, quant.calibrated, quant.factor) if smoothed else (quant.clip,)
    return remembered(quant, "_coding_constants", sources, compute, x.dtype, x.device)


def fused_code(
    neuron: EIIFNeuron, quant: Quantizer, x: torch.Tensor, time_steps: int,
    mult: torch.Tensor | None = None, tally: bool = True, shared: bool = False, dequantize: bool = False,
) -> FusedCode | None:
    """``snn-fused`` coding of x' = x * mult (mult None: x) with a per-token quantizer in one fused pass
    (``kernels.token_counts``): the counts ``spike_code(module, neuron, x', quant.scale_for(x'), T, "snn-fused")``
    gives, bit for bit, with the spikes when counting (``tally``). None where the chain does not apply (a static
    scale, a neuron whose counts are not the quantizer's, the conversion audit observing, a non-finite x'): the
    caller then codes op by op, which raises the reference's error for a non-finite input. ``shared``: the caller
    does not write into the result, which may then serve the next caller of the same input and settings.
    ``dequantize``: the result's ``n`` is n times the scale (token x static), the value the counts stand for."""
    if observe.observing() or not quant.spec.dynamic or not x.is_floating_point():
        return None
    if not counts_are_quantized(neuron, x.dtype, time_steps):
        return None
    factor, clip = coding_constants(quant, x)
    counting = counters.counting() and tally
    rate_rows = counting and neuron.coding == "rate" and x.shape[quant.dim] * time_steps < FLOAT32_EXACT
    key = (x, x._version, mult is None, time_steps, quant.T, quant.dim, neuron.coding, rate_rows, dequantize)
    found = _SharedCode.find(key, factor, clip) if shared and mult is None else None
    if found is None:
        with torch.no_grad():
            found = kernels.backend(x.device).chains["token_counts"](
                x.detach(), mult, factor, clip, steps_tensor(quant.T, x.dtype, x.device), time_steps, quant.dim, rate_rows, dequantize,
            )
        if shared and mult is None:
            _SharedCode.entry = (key, (factor, clip), found)
    n, token, vmax, rows = found
    if not bool(torch.isfinite(vmax).all()):
        return None
    fired = 0
    if counting:
        if rows is None and dequantize:
            return None  # the spikes of another coding need the counts themselves
        fired = int(rows.sum(dtype=torch.float64)) if rows is not None else coded_spikes(n, neuron.coding, time_steps)
    return FusedCode(n, token, factor, fired)


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
