"""Products of two spiking activations (BrainGPT appendix B.1): SNNMatmul, SNNMultiply, SpikingAttentionValues.

Both operands are spike-coded by EI-IF neurons, a with one scale per row (token), b per column
(matmul) or per token (elementwise), so a . b = (s_a s_b) (n_a . n_b) with integer counts n.
The time-stepped mode (``snn``) accumulates, at every step t, the increment of B.1

    A_t = A_{t-1} + S_a,t . b_t + a_t . S_b,t - a_t . b_t,   S_x,t = sum_{tau <= t} x_tau,

whose sum over t is S_a,T . S_b,T = n_a . n_b. Every term is integer-valued, so the sum is exact
(in float64 when the bound T_a T_b K reaches float32's 2^24) and equals the closed form
(``snn-fused``: the product of the counts) bit for bit; ``qat`` is the same product with
straight-through gradients. "." is the matrix product in SNNMatmul (attention scores) and the
elementwise one in SNNMultiply (SwiGLU's silu(gate) * up). The activation-weight product of
B.1 is ``Synapsis``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

import models.spiking.counters as counters
import models.spiking.observe as observe

from .checks import OPERATOR_MODES, check_finite, check_mode
from .encode import SpikeCoding, SpikeEncoder, spike_code
from .fast import matmul_tallies, multiply_tallies
from .neuron import EIIFNeuron
from .quant import QuantSpec, Quantizer

FLOAT32_EXACT = 2**24


class Geometry(NamedTuple):
    """Fan-out of one spike of a and of b, length of the inner sum, and entries of the output."""

    fan_out_a: int
    fan_out_b: int
    inner: int
    out_numel: int


class ActivationProduct(SpikeCoding, nn.Module):
    """Base of the B.1 products: ``product`` says what "." is; ``qa``/``qb`` code a and b, their neurons spike."""

    def __init__(self, spec_a: QuantSpec, spec_b: QuantSpec, mode: str, b_features: int | None = None, b_dim: int = -1) -> None:
        super().__init__()
        self.mode = check_mode(mode, OPERATOR_MODES)
        self.qa = Quantizer(spec_a, dim=-1)
        self.qb = Quantizer(spec_b, num_features=b_features, dim=b_dim)
        self.a_neuron = EIIFNeuron()
        self.b_neuron = EIIFNeuron()

    @property
    def coding_steps(self) -> int:
        return self.qa.T

    def product(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_operands(self, a: torch.Tensor, b: torch.Tensor) -> None:
        check_finite(a, "a")
        check_finite(b, "b")

    def geometry(self, a: torch.Tensor, b: torch.Tensor) -> Geometry:
        raise NotImplementedError

    def coincident(self, at: torch.Tensor, bt: torch.Tensor) -> int:
        """Spike pairs the a_t . b_t term of one step accumulates."""
        raise NotImplementedError

    def closed_form_tallies(self, na: torch.Tensor, nb: torch.Tensor) -> tuple[int, int]:
        """(spikes, ACs) the time-stepped mode counts, from the spike counts (``fast.py``)."""
        raise NotImplementedError

    def _accumulator(self, a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
        bound = self.qa.T * self.qb.T * self.geometry(a, b).inner
        return torch.float64 if a.dtype == torch.float64 or bound >= FLOAT32_EXACT else torch.float32

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.check_operands(a, b)
        if self.mode == "snn":
            out = a.new_empty(0)
            for out in self.iter_steps(a, b):
                pass
            return out
        sa, sb = self.qa.scale_for(a), self.qb.scale_for(b)
        acc = self._accumulator(a, b)
        na, _ = spike_code(self, self.a_neuron, a, sa, self.qa.T, self.mode, tally=False)  # the tallies give the totals
        nb, _ = spike_code(self, self.b_neuron, b, sb, self.qb.T, self.mode, tally=False)
        product = self.product(na.to(acc), nb.to(acc)).to(a.dtype)  # a fresh tensor: scaled in place when no gradient is taken
        out = product.mul_(sa * sb) if self.mode != "qat" else product * (sa * sb)
        if counters.counting():
            if self.mode == "qat":
                self._record_counts(a, b, 0, counters.nonzero(na) * self.geometry(a, b).fan_out_a)
            else:
                self._record_counts(a, b, *self.closed_form_tallies(na, nb))
        return out

    @torch.no_grad()
    def iter_steps(self, a: torch.Tensor, b: torch.Tensor) -> Iterator[torch.Tensor]:
        """Time-stepped B.1: yields the accumulated product s_a s_b A_t after every step t."""
        self.check_operands(a, b)
        sa, sb = self.qa.scale_for(a), self.qb.scale_for(b)
        va, vb = a / sa, b / sb
        Ta, Tb = self.qa.T, self.qb.T
        acc = self._accumulator(a, b)
        sum_a = torch.zeros_like(va, dtype=acc)
        sum_b = torch.zeros_like(vb, dtype=acc)
        A: torch.Tensor | None = None
        scale = sa * sb
        self.a_neuron.reset()
        self.b_neuron.reset()
        a_train, b_train = self.a_neuron.iter_constant(va, Ta), self.b_neuron.iter_constant(vb, Tb)
        spikes = acs = 0
        fan_a, fan_b = self.geometry(a, b)[:2]
        for t in range(max(Ta, Tb)):
            at = (next(a_train) if t < Ta else torch.zeros_like(va)).to(acc)
            bt = (next(b_train) if t < Tb else torch.zeros_like(vb)).to(acc)
            sum_a += at
            sum_b += bt
            increment = self.product(sum_a, bt) + self.product(at, sum_b) - self.product(at, bt)
            A = torch.zeros_like(increment) if A is None else A
            A += increment
            if counters.counting():
                nz_a, nz_b = counters.nonzero(at), counters.nonzero(bt)
                spikes += nz_a + nz_b
                acs += nz_b * fan_b + nz_a * fan_a + self.coincident(at, bt)
            yield A.to(a.dtype) * scale
        self.a_neuron.reset()
        self.b_neuron.reset()
        if observe.observing():
            observe.encoded(self, va, sum_a, Ta, sa)
            observe.encoded(self, vb, sum_b, Tb, sb)
        if counters.counting():
            self._record_counts(a, b, spikes, acs)

    def _record_counts(self, a: torch.Tensor, b: torch.Tensor, spikes: int, synops: int) -> None:
        """One call's counts; ``synops`` are MACs in mode qat and ACs in the spiking modes."""
        g = self.geometry(a, b)
        dense = g.out_numel * g.inner
        float_ops = 2 * (a.numel() + b.numel()) + 2 * g.out_numel  # two absmax, two x/s, s_a s_b, product * scale
        if self.mode == "qat":
            counters.record(self, Effective_MACs=synops, Dense=dense, float_ops=float_ops)
            return
        counters.record(
            self,
            spikes=spikes,
            neuron_steps=self.qa.T * a.numel() + self.qb.T * b.numel(),
            Effective_ACs=synops,
            Dense=3 * max(self.qa.T, self.qb.T) * dense,
            float_ops=float_ops,
        )

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


class SNNMatmul(ActivationProduct):
    """Spike-coded a @ b, a (..., M, K) and b (..., K, N). Modes ``qat``, ``snn``, ``snn-fused``.

    ``b_features`` is needed only when b uses a static per-channel (per-column) scale.
    """

    def __init__(
        self, spec_a: QuantSpec = QuantSpec(), spec_b: QuantSpec = QuantSpec(), mode: str = "snn-fused", b_features: int | None = None
    ) -> None:
        super().__init__(spec_a, spec_b, mode, b_features, b_dim=-2)

    def product(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x @ y

    def check_operands(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().check_operands(a, b)
        if a.dim() < 2 or b.dim() < 2:
            raise ValueError(f"a and b must be at least 2-D, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"a (..., M, K) and b (..., K, N) must share K: a has K={a.shape[-1]}, b has K={b.shape[-2]}"
            )
        if a.shape[:-2] != b.shape[:-2]:
            raise ValueError(f"a and b must have the same batch dimensions, got {tuple(a.shape[:-2])} and {tuple(b.shape[:-2])}")

    def geometry(self, a: torch.Tensor, b: torch.Tensor) -> Geometry:
        M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
        return Geometry(N, M, K, a.numel() // K * N if K else 0)

    def coincident(self, at: torch.Tensor, bt: torch.Tensor) -> int:
        """Pairs in column k of a_t and row k of b_t, summed over k."""
        return int((((at != 0).sum(-2)) * (bt != 0).sum(-1)).sum())

    def closed_form_tallies(self, na: torch.Tensor, nb: torch.Tensor) -> tuple[int, int]:
        return matmul_tallies(na, nb, self.qa.T, self.qb.T)


class SNNMultiply(ActivationProduct):
    """Spike-coded a * b (elementwise, same shapes), one scale per token for each operand. Modes ``qat``, ``snn``, ``snn-fused``."""

    def __init__(self, spec_a: QuantSpec = QuantSpec(), spec_b: QuantSpec = QuantSpec(), mode: str = "snn-fused") -> None:
        super().__init__(spec_a, spec_b, mode)

    def product(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * y

    def check_operands(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().check_operands(a, b)
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")

    def geometry(self, a: torch.Tensor, b: torch.Tensor) -> Geometry:
        return Geometry(1, 1, 1, a.numel())

    def coincident(self, at: torch.Tensor, bt: torch.Tensor) -> int:
        return counters.nonzero(at * bt)

    def closed_form_tallies(self, na: torch.Tensor, nb: torch.Tensor) -> tuple[int, int]:
        return multiply_tallies(na, nb, self.qa.T, self.qb.T)


class SpikingAttentionValues(nn.Module):
    """Attention-weighted values P . V, both operands spike-coded.

    V gets one scale per token (a scale per channel over tokens would let future tokens change
    past outputs). A per-token scale of V sits inside the sum over tokens, so it is folded into
    the attention weights first: P . V = (P diag(s_v)) . n_v. P' = P diag(s_v) is then coded with
    one scale per query row, and the product of the two count matrices is an exact SNNMatmul.
    """

    def __init__(self, spec: QuantSpec, mode: str = "snn-fused") -> None:
        super().__init__()
        self.mode = check_mode(mode, OPERATOR_MODES)
        self.values = SpikeEncoder(spec, mode)
        integer = QuantSpec(bits=spec.bits, time_steps=spec.T, granularity="integer")
        self.matmul = SNNMatmul(spec, integer, mode=mode)

    def forward(self, probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``probs`` (..., M, N) attention weights, ``v`` (..., N, D) values."""
        n_v, s_v = self.values(v)
        folded = probs * s_v.transpose(-1, -2)
        if counters.counting():
            self._record_counts(folded)
        return self.matmul(folded, n_v)

    def _record_counts(self, folded: torch.Tensor) -> None:
        counters.record(self, float_ops=folded.numel())  # the folding of s_v into P

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
