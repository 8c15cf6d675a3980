"""The differential readout shared by SNNSoftmax (B.3), the spiking sigmoid (B.2.1) and the norms (B.4).

Each operator keeps an accumulated input X_t = X_{t-1} + I_t and emits the differential output

    Y_t = f(X_t) - f(X_{t-1}),   f(X_{-1}) := 0,

so the outputs received up to step t sum to f(X_t) and, after the last step, to f(X). The
operator's readout is that state f(X_last). Inputs arrive either as a stream of accumulated
values (``integrate``, e.g. the steps of SNNMatmul) or as a float tensor that an input
quantizer spike-codes with an EI-IF neuron (X_t = s * sum_{tau <= t} S_tau). Without an
input quantizer a float tensor enters as one pulse at t = 0.

``DifferentialOp`` is the base; f is the subclass's ``fn``: softmax (``softmax.py``), sigmoid
(``sigmoid.py``), RMSNorm and LayerNorm (``norms.py``). Modes: ``snn`` steps the input neuron and
integrates (the reference), ``snn-fused`` evaluates f once on the closed-form counts (``fast.py``
through ``spike_code``), ``qat`` on the quantized input. The first two agree bit for bit: the last
accumulated input is s * n in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

import models.spiking.counters as counters
import models.spiking.observe as observe

from .checks import OPERATOR_MODES, check_finite, check_mode, coding_steps
from .encode import SpikeCoding, fused_code, spike_code
from .neuron import EIIFNeuron
from .quant import QuantSpec, Quantizer

StepListener = Callable[[int, torch.Tensor], None]


class DifferentialOp(SpikeCoding, nn.Module):
    """Base of the differential operators; subclasses define ``fn`` and its float cost per element."""

    float_ops_per_element = 1

    def __init__(self, input_spec: QuantSpec | None = None, mode: str = "snn-fused", num_features: int | None = None) -> None:
        super().__init__()
        self.mode = check_mode(mode, OPERATOR_MODES)
        self.input_quant = Quantizer(input_spec, num_features=num_features) if input_spec is not None else None
        self.neuron = EIIFNeuron()

    @property
    def coding_steps(self) -> int:
        return self.input_quant.T if self.input_quant is not None else 0

    @property
    def calibrated_input(self) -> Quantizer | None:
        return self.input_quant

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        check_finite(x, "x")
        self.check_shape(x)

    def check_shape(self, x: torch.Tensor) -> None:
        """The input's shape fits the operator (a one-line ValueError otherwise)."""

    def forward(self, x: torch.Tensor, on_step: StepListener | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` (softmax only): False where an input must be ignored (e.g. future tokens)."""
        q = self.input_quant
        if q is not None and self.mode == "snn-fused":
            self.check_shape(x)
            fused = fused_code(self.neuron, q, x, q.T, dequantize=True)  # one pass, finite x checked on the way (``kernels.py``)
            if fused is not None:
                out = self.fn(fused.n, mask)  # n s
                steps = coding_steps(self.neuron.coding, q.T)
                self._record_counts(x, evaluations=steps, spikes=fused.spikes, neuron_steps=steps * x.numel())
                return out
        self.check_input(x)
        if q is None:
            if self.mode == "snn":
                return self.integrate([x], on_step, mask=mask)
            out = self.fn(x, mask)
            self._record_counts(x, evaluations=1)
            return out
        s = q.scale_for(x)
        if self.mode == "snn":
            return self._forward_spiking(x, s, q.T, on_step, mask)
        n, fired = spike_code(self, self.neuron, x, s, q.T, self.mode)
        out = self.fn(n.mul_(s) if self.mode == "snn-fused" and not observe.observing() else n * s, mask)  # n is fresh
        if self.mode == "qat":
            self._record_counts(x, evaluations=1)
        else:
            steps = coding_steps(self.neuron.coding, q.T)  # the stepped mode evaluates f once per step of the coding
            self._record_counts(x, evaluations=steps, spikes=fired, neuron_steps=steps * x.numel())
        return out

    @torch.no_grad()
    def _forward_spiking(
        self, x: torch.Tensor, s: torch.Tensor, T: int, on_step: StepListener | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        v = x / s
        self.neuron.reset()
        fired = 0
        total = torch.zeros_like(v)

        def accumulated_inputs() -> Iterable[torch.Tensor]:
            nonlocal total, fired
            for weight, spikes in self.neuron.iter_weighted(v, T):  # X_t = s sum_{k <= t} w_k S_k
                if counters.counting():
                    fired += counters.nonzero(spikes)
                total = total + (spikes if weight == 1 else spikes * weight)
                yield total * s

        out = self.integrate(accumulated_inputs(), on_step, record=False, mask=mask)
        self.neuron.reset()
        if observe.observing():
            observe.encoded(self, v, total, T, s)
        steps = coding_steps(self.neuron.coding, T)
        self._record_counts(x, evaluations=steps, spikes=fired, neuron_steps=steps * x.numel())
        return out

    @torch.no_grad()
    def integrate(
        self,
        accumulated: Iterable[torch.Tensor],
        on_step: StepListener | None = None,
        record: bool = True,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the operator over a stream of accumulated inputs X_0, X_1, ...; returns f(X_last).

        ``on_step(t, Y_t)`` receives each differential output.
        """
        previous: torch.Tensor | None = None
        steps = 0
        x_last: torch.Tensor | None = None
        for x_t in accumulated:
            self.check_input(x_t)
            current = self.fn(x_t, mask)
            if on_step is not None:
                on_step(steps, current if previous is None else current - previous)
            previous, x_last = current, x_t
            steps += 1
        if previous is None or x_last is None:
            raise ValueError("accumulated must yield at least one time step")
        if record:
            self._record_counts(x_last, evaluations=steps)
        return previous

    def _record_counts(self, x: torch.Tensor, evaluations: int, spikes: int = 0, neuron_steps: int = 0) -> None:
        """One call: the input neuron's spikes, and f evaluated ``evaluations`` times (plus the coding's float work)."""
        if counters.counting():
            encode = 3 * x.numel() if self.input_quant is not None else 0  # absmax, x/s, n*s
            counters.record(
                self,
                spikes=spikes,
                neuron_steps=neuron_steps,
                float_ops=encode + evaluations * self.float_ops_per_element * x.numel(),
                act_reads=x.numel(),
                act_writes=x.numel(),
                **self._parameter_reads(x),
            )

    def _parameter_reads(self, x: torch.Tensor) -> dict[str, int]:
        """Per-channel parameters (a norm's weight and bias) read with every element, once per evaluation."""
        per_element = sum(1 for p in (getattr(self, "weight", None), getattr(self, "bias", None)) if isinstance(p, torch.Tensor))
        return dict(weight_reads=per_element * x.numel(), step_reads=per_element * x.numel())

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
