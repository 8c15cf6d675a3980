"""SNNMatmul for activation-activation products (BrainGPT appendix B.1).

Both operands are spike-coded: a (..., M, K) with one scale per row (token), b (..., K, N)
with one scale per column, so a @ b = (s_a s_b) * (n_a @ n_b) with integer counts n. The
time-stepped path accumulates, at every step t, the increment of B.1

    A_t = A_{t-1} + S_a,t . b_t + a_t . S_b,t - a_t . b_t,   S_x,t = sum_{tau <= t} x_tau

whose sum over t is S_a,T . S_b,T = n_a . n_b. Every term is integer-valued, so the sum is
exact (in float64 when the bound T_a T_b K exceeds float32's 2^24) and both paths agree bit
for bit. The activation-weight product of B.1 is ``Synapsis``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from . import counters, observe
from .checks import check_finite, check_path
from .neuron import EIIFNeuron
from .encode import spike_code
from .quant import QuantSpec, Quantizer

FLOAT32_EXACT = 2**24


def _accumulator_dtype(dtype: torch.dtype, bound: int) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 or bound >= FLOAT32_EXACT else torch.float32


def _firing_per_step(counts: torch.Tensor, T: int, by_column: bool = False) -> tuple[torch.Tensor, int]:
    """From signed integer-valued ``counts`` (..., R, C) with |n| <= T: how many entries of each row (or,
    ``by_column``, each column) have |n| > t for t < T, as (lines, T); and the total spike count sum |n|.

    One histogram of |n| per line (bincount over line * (T + 1) + |n|, no transposed copy);
    #{|n| > t} = entries per line - #{|n| <= t}.
    """
    R, C = counts.shape[-2], counts.shape[-1]
    batch = counts.numel() // (R * C) if counts.numel() else 0
    lines, per_line = (batch * C, R) if by_column else (batch * R, C)
    bins = lines * (T + 1)
    index_dtype = torch.int32 if bins < 2**31 else torch.int64
    keys = counts.detach().reshape(batch, R, C).to(index_dtype).abs_()
    line = torch.arange(lines, device=counts.device, dtype=index_dtype) * (T + 1)
    keys.add_(line.view(batch, 1, C) if by_column else line.view(batch, R, 1))
    hist = torch.bincount(keys.flatten(), minlength=bins).view(lines, T + 1)
    spikes = int((hist.sum(0) * torch.arange(T + 1, device=hist.device)).sum())
    return per_line - hist[:, :T].cumsum(-1), spikes


class SNNMatmul(nn.Module):
    """Spike-coded a @ b. Paths: ``qat`` (quantized, straight-through), ``snn``, ``snn-fused``.

    ``b_features`` is needed only when b uses a static per-channel (per-column) scale.
    """

    def __init__(
        self,
        spec_a: QuantSpec = QuantSpec(),
        spec_b: QuantSpec = QuantSpec(),
        path: str = "snn-fused",
        b_features: int | None = None,
    ) -> None:
        super().__init__()
        self.path = check_path(path, ("qat", "snn", "snn-fused"))
        self.qa = Quantizer(spec_a, dim=-1)
        self.qb = Quantizer(spec_b, num_features=b_features, dim=-2)
        self.a_neuron = EIIFNeuron()
        self.b_neuron = EIIFNeuron()

    def _check(self, a: torch.Tensor, b: torch.Tensor) -> None:
        check_finite(a, "a")
        check_finite(b, "b")
        if a.dim() < 2 or b.dim() < 2:
            raise ValueError(f"a and b must be at least 2-D, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"a (..., M, K) and b (..., K, N) must share K: a has K={a.shape[-1]}, b has K={b.shape[-2]}"
            )
        if a.shape[:-2] != b.shape[:-2]:
            raise ValueError(f"a and b must have the same batch dimensions, got {tuple(a.shape[:-2])} and {tuple(b.shape[:-2])}")

    def _bound(self, K: int) -> int:
        return self.qa.T * self.qb.T * K

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self._check(a, b)
        if self.path == "snn":
            out = a.new_empty(0)
            for out in self.iter_steps(a, b):
                pass
            return out
        sa, sb = self.qa.scale_for(a), self.qb.scale_for(b)
        acc = _accumulator_dtype(a.dtype, self._bound(a.shape[-1]))
        na, _ = spike_code(self, self.a_neuron, a, sa, self.qa.T, self.path, tally=False)  # the histograms give the totals
        nb, _ = spike_code(self, self.b_neuron, b, sb, self.qb.T, self.path, tally=False)
        product = (na.to(acc) @ nb.to(acc)).to(a.dtype)  # a fresh tensor: scaled in place when no gradient is taken
        out = product.mul_(sa * sb) if self.path != "qat" else product * (sa * sb)
        if counters.counting():
            if self.path == "qat":
                macs = counters.nonzero(na) * b.shape[-1]
                self._record_values(a.shape, b.shape, out.numel(), 0, macs)
            else:
                self._record_closed_form(na, nb, out)
        return out

    @torch.no_grad()
    def iter_steps(self, a: torch.Tensor, b: torch.Tensor) -> Iterator[torch.Tensor]:
        """Time-stepped B.1: yields the accumulated product s_a s_b A_t after every step t."""
        self._check(a, b)
        sa, sb = self.qa.scale_for(a), self.qb.scale_for(b)
        va, vb = a / sa, b / sb
        Ta, Tb = self.qa.T, self.qb.T
        acc = _accumulator_dtype(a.dtype, self._bound(a.shape[-1]))
        M, N = a.shape[-2], b.shape[-1]
        sum_a = torch.zeros_like(va, dtype=acc)
        sum_b = torch.zeros_like(vb, dtype=acc)
        A = torch.zeros(*a.shape[:-1], N, dtype=acc, device=a.device)
        scale = sa * sb
        self.a_neuron.reset()
        self.b_neuron.reset()
        acs = spikes = 0
        for t in range(max(Ta, Tb)):
            at = (self.a_neuron.single_step(va) if t < Ta else torch.zeros_like(va)).to(acc)
            bt = (self.b_neuron.single_step(vb) if t < Tb else torch.zeros_like(vb)).to(acc)
            sum_a += at
            sum_b += bt
            A += sum_a @ bt + at @ sum_b - at @ bt
            if counters.counting():
                nz_a, nz_b = at != 0, bt != 0
                spikes += int(nz_a.sum()) + int(nz_b.sum())
                acs += int(nz_b.sum()) * M + int(nz_a.sum()) * N
                acs += int((nz_a.sum(-2) * nz_b.sum(-1)).sum())
            yield A.to(a.dtype) * scale
        self.a_neuron.reset()
        self.b_neuron.reset()
        if observe.observing():
            observe.encoded(self, va, sum_a, Ta, sa)
            observe.encoded(self, vb, sum_b, Tb, sb)
        if counters.counting():
            self._record(a, b, spikes, acs)

    def _record_closed_form(self, na: torch.Tensor, nb: torch.Tensor, out: torch.Tensor) -> None:
        """The counts the time-stepped path would make, from the closed-form spike counts.

        Memoryless neurons fire on their first |n| steps, so at step t the spiking entries of
        a in column k are those with |n_a| > t; the a_t . b_t term pairs them with b's. Both
        tallies come from one histogram of |n| per column instead of a loop over t.
        """
        M, N = na.shape[-2], nb.shape[-1]
        firing_a, spikes_a = _firing_per_step(na, self.qa.T, by_column=True)  # (batch K, T_a): entries of column k still firing at t
        firing_b, spikes_b = _firing_per_step(nb, self.qb.T)
        T = min(self.qa.T, self.qb.T)
        pairs = int((firing_a[:, :T] * firing_b[:, :T]).sum())
        self._record_values(na.shape, nb.shape, out.numel(), spikes_a + spikes_b, spikes_b * M + spikes_a * N + pairs)

    def _record(self, a: torch.Tensor, b: torch.Tensor, spikes: int, acs: int) -> None:
        self._record_values(a.shape, b.shape, a.shape[-2] * b.numel() // b.shape[-2], spikes, acs)

    def _record_values(self, a_shape: torch.Size, b_shape: torch.Size, out_numel: int, spikes: int, acs: int) -> None:
        a_numel, b_numel = a_shape.numel(), b_shape.numel()
        M, K, N = a_shape[-2], a_shape[-1], b_shape[-1]
        batch = a_numel // (M * K)
        if self.path == "qat":
            counters.record(self, Effective_MACs=acs, Dense=batch * M * N * K, float_ops=2 * (a_numel + b_numel) + 2 * out_numel)
            return
        T = max(self.qa.T, self.qb.T)
        counters.record(
            self,
            spikes=spikes,
            neuron_steps=self.qa.T * a_numel + self.qb.T * b_numel,
            Effective_ACs=acs,
            Dense=3 * T * batch * M * N * K,
            float_ops=2 * (a_numel + b_numel) + 2 * out_numel,
        )

    def extra_repr(self) -> str:
        return f"path={self.path}"
