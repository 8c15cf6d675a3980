"""Differential spiking operators: SNNSoftmax (B.3), spiking sigmoid (B.2.1), SNNRMSNorm and SNNLayerNorm (B.4).

Each keeps an accumulated input X_t = X_{t-1} + I_t and emits the differential output

    Y_t = f(X_t) - f(X_{t-1}),   f(X_{-1}) := 0,

so the outputs received up to step t sum to f(X_t) and, after the last step, to f(X). The
operator's readout is that state f(X_last). Inputs arrive either as a stream of accumulated
values (``integrate``, e.g. the steps of SNNMatmul) or as a float tensor that an input
quantizer spike-codes with an EI-IF neuron (X_t = s * sum_{tau <= t} S_tau). Without an
input quantizer a float tensor enters as one pulse at t = 0.

The paper's sigmoid neuron (B.2.1) is a leaky V_t = lambda V_{t-1} + I_t with output
sigma(V_t); with lambda = 1 and the differential readout above its outputs sum to
sigma(x) exactly, which is the form used here. B.4 writes a mean-subtracting norm; RMSNorm
has no mean, so f is x / sqrt(mean(x^2) + eps) * gamma, as in Llama; SNNLayerNorm is B.4 as
written, with the mean (GPT-2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from . import counters, observe
from .checks import check_finite, check_last_dim, check_path
from .neuron import EIIFNeuron
from .encode import spike_code
from .quant import QuantSpec, Quantizer

StepListener = Callable[[int, torch.Tensor], None]


class DifferentialOp(nn.Module):
    """Base of the differential operators; subclasses define ``fn`` and its float cost per element."""

    float_ops_per_element = 1

    def __init__(self, input_spec: QuantSpec | None = None, path: str = "snn-fused", num_features: int | None = None) -> None:
        super().__init__()
        self.path = check_path(path, ("qat", "snn", "snn-fused"))
        self.input_quant = Quantizer(input_spec, num_features=num_features) if input_spec is not None else None
        self.neuron = EIIFNeuron()

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        check_finite(x, "x")

    def forward(self, x: torch.Tensor, on_step: StepListener | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` (softmax only): False where an input must be ignored (e.g. future tokens)."""
        self.check_input(x)
        q = self.input_quant
        if q is None:
            if self.path == "snn":
                return self.integrate([x], on_step, mask=mask)
            out = self.fn(x, mask)
            self._record(x, evaluations=1, spikes=0, neuron_steps=0)
            return out
        s = q.scale_for(x)
        if self.path == "snn":
            return self._forward_spiking(x, s, q.T, on_step, mask)
        n, fired = spike_code(self, self.neuron, x, s, q.T, self.path)
        out = self.fn(n.mul_(s) if self.path == "snn-fused" and not observe.observing() else n * s, mask)  # n is fresh
        if self.path == "qat":
            self._record(x, evaluations=1, spikes=0, neuron_steps=0)
        else:
            self._record(x, evaluations=q.T, spikes=fired, neuron_steps=q.T * x.numel())
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
            for _ in range(T):
                spikes = self.neuron.single_step(v)
                if counters.counting():
                    fired += counters.nonzero(spikes)
                total = total + spikes
                yield total * s

        out = self.integrate(accumulated_inputs(), on_step, record=False, mask=mask)
        self.neuron.reset()
        if observe.observing():
            observe.encoded(self, v, total, T, s)
        self._record(x, evaluations=T, spikes=fired, neuron_steps=T * x.numel())
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
            self._record(x_last, evaluations=steps, spikes=0, neuron_steps=0)
        return previous

    def _record(self, x: torch.Tensor, evaluations: int, spikes: int, neuron_steps: int) -> None:
        if counters.counting():
            encode = 3 * x.numel() if self.input_quant is not None else 0  # absmax, x/s, n*s
            counters.record(
                self,
                spikes=spikes,
                neuron_steps=neuron_steps,
                float_ops=encode + evaluations * self.float_ops_per_element * x.numel(),
            )

    def extra_repr(self) -> str:
        return f"path={self.path}"


class SNNSoftmax(DifferentialOp):
    """Softmax over ``dim`` with the differential output of B.3."""

    float_ops_per_element = 5  # max, subtract, exp, sum, divide

    def __init__(self, dim: int = -1, input_spec: QuantSpec | None = None, path: str = "snn-fused") -> None:
        super().__init__(input_spec, path)
        self.dim = dim

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = x.masked_fill(~mask, torch.finfo(x.dtype).min)
        return torch.softmax(x, dim=self.dim)


class SpikingSigmoid(DifferentialOp):
    """Sigmoid neuron of B.2.1 (lambda = 1) with the differential readout."""

    float_ops_per_element = 4  # negate, exp, add, divide

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(x)


class SNNRMSNorm(DifferentialOp):
    """RMSNorm (B.4 without the mean): y = gamma * x / sqrt(mean(x^2) + eps), on accumulated input."""

    float_ops_per_element = 5  # square, mean, rsqrt, scale, gamma

    def __init__(
        self, dim: int, eps: float = 1e-6, input_spec: QuantSpec | None = None, path: str = "snn-fused"
    ) -> None:
        super().__init__(input_spec, path, num_features=dim)
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def check_input(self, x: torch.Tensor) -> None:
        check_finite(x, "x")
        check_last_dim(x, self.dim, "x", "the normalized dimension")

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}, path={self.path}"


class SNNLayerNorm(DifferentialOp):
    """LayerNorm (B.4, with the mean): y = gamma * (x - mean(x)) / sqrt(var(x) + eps) + beta, on accumulated input."""

    float_ops_per_element = 7  # mean, subtract, square, mean, rsqrt, scale, gamma/beta

    def __init__(
        self, dim: int, eps: float = 1e-5, input_spec: QuantSpec | None = None, path: str = "snn-fused"
    ) -> None:
        super().__init__(input_spec, path, num_features=dim)
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def check_input(self, x: torch.Tensor) -> None:
        check_finite(x, "x")
        check_last_dim(x, self.dim, "x", "the normalized dimension")

    def fn(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}, path={self.path}"
