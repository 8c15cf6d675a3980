"""Products of two spiking activations (BrainGPT appendix B.1): SNNMatmul, SNNMultiply, SpikingAttentionValues.

Both operands are spike-coded by EI-IF neurons, a with one scale per row (token), b per column
(matmul) or per token (elementwise), so a . b = (s_a s_b) (n_a . n_b) with integer counts n.
The time-stepped mode (``snn``) accumulates, at every step t, the increment of B.1

    A_t = A_{t-1} + S_a,t . b_t + a_t . S_b,t - a_t . b_t,   S_x,t = sum_{tau <= t} x_tau,

whose sum over t is S_a,T . S_b,T = n_a . n_b. Every term is integer-valued, so the sum is exact
(in float64 when the bound T_a T_b K reaches float32's 2^24) and equals the closed form
(``snn-fused``: the product of the counts) bit for bit; ``qat`` is the same product with
straight-through gradients. That is the ``rate`` coding of the neurons; in the ``bitwise`` and
``multilevel`` codings (``neuron.py``) the neurons emit weighted digit planes a_i, b_j (weights
w_i, w_j; multilevel: one graded plane each) and the stepped mode adds w_i w_j (a_i . b_j) for every
pair, again integer-valued and exact, again equal to the product of the counts. "." is the
matrix product in SNNMatmul (attention scores) and the elementwise one in SNNMultiply (SwiGLU's
silu(gate) * up). The activation-weight product of B.1 is ``Synapsis``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

import models.spiking.counters as counters
import models.spiking.kernels as kernels
import models.spiking.observe as observe

from .checks import OPERATOR_MODES, check_finite, check_mode, coding_steps
from .encode import FLOAT32_EXACT, SpikeCoding, SpikeEncoder, fused_code, spike_code
from .fast import (
    coded_matmul_tallies,
    coded_multiply_tallies,
    coded_spikes,
    matmul_tallies,
    multiply_tallies,
    query_tallies,
)
from .neuron import EIIFNeuron, step_weights
from .quant import QuantSpec, Quantizer, combine_scales
from .tally import CodedTally

EAGER_GATHER = 2**20  # entries of a up to which the eager kernels count from b's tally by a materialized gather


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

    @property
    def coding(self) -> str:
        """The spike coding of both operands (one coding: the planes of a and b pair up)."""
        if self.a_neuron.coding != self.b_neuron.coding:
            raise ValueError(
                f"{type(self).__name__} codes a and b in one coding, got {self.a_neuron.coding} and {self.b_neuron.coding}; "
                "set both with set_coding(model, coding)"
            )
        return self.a_neuron.coding

    def product(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_operands(self, a: torch.Tensor, b: torch.Tensor) -> None:
        check_finite(a, "a")
        check_finite(b, "b")
        self.check_shapes(a, b)

    def check_shapes(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """The operands' shapes fit the product (a one-line ValueError otherwise)."""

    def geometry(self, a: torch.Tensor, b: torch.Tensor) -> Geometry:
        raise NotImplementedError

    def coincident(self, at: torch.Tensor, bt: torch.Tensor) -> int:
        """Spike pairs the a_t . b_t term of one step accumulates."""
        raise NotImplementedError

    def closed_form_tallies(self, na: torch.Tensor, nb: torch.Tensor) -> tuple[int, int]:
        """(spikes, synops) the time-stepped mode counts, from the spike counts (``fast.py``)."""
        raise NotImplementedError

    def _accumulator(self, a: torch.Tensor, b: torch.Tensor) -> torch.dtype:
        bound = self.qa.T * self.qb.T * self.geometry(a, b).inner
        return torch.float64 if a.dtype == torch.float64 or bound >= FLOAT32_EXACT else torch.float32

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.mode == "snn":
            self.check_operands(a, b)
            out = a.new_empty(0)
            for out in self.iter_steps(a, b):
                pass
            return out
        self.check_shapes(a, b)
        acc = self._accumulator(a, b)
        na, sa = self._code(self.qa, self.a_neuron, a, "a")  # the tallies give the spike totals
        nb, sb = self._code(self.qb, self.b_neuron, b, "b")
        product = self.product(na.to(acc), nb.to(acc)).to(a.dtype)  # a fresh tensor: scaled in place when no gradient is taken
        out = product.mul_(sa * sb) if self.mode != "qat" else product * (sa * sb)
        if counters.counting():
            if self.mode == "qat":
                self._record_counts(a, b, 0, counters.nonzero(na) * self.geometry(a, b).fan_out_a)
            else:
                self._record_counts(a, b, *self.closed_form_tallies(na, nb))
        return out

    def _code(self, quant: Quantizer, neuron: EIIFNeuron, x: torch.Tensor, name: str, mult: torch.Tensor | None = None,
              mode: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, s) of the operand x * mult (mult None: x) in ``mode`` (default the operator's), without a spike total:
        one fused pass in ``snn-fused`` where it applies (``encode.fused_code``), else op by op."""
        mode = mode or self.mode
        fused = fused_code(neuron, quant, x, quant.T, mult=mult, tally=False) if mode == "snn-fused" else None
        if fused is not None:
            return fused.n, combine_scales(fused.token, fused.static, x)
        x = x if mult is None else x * mult
        check_finite(x, name)
        s = quant.scale_for(x)
        return spike_code(self, neuron, x, s, quant.T, mode, tally=False)[0], s

    def code_b(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_b, s_b), b's spike counts and scale as ``forward`` codes them in ``snn-fused`` (no counting): with a
        per-token scale each token's code is its own, so a decoder codes a key once, when it enters the cache."""
        return self._code(self.qb, self.b_neuron, b, "b", mode="snn-fused")

    def forward_coded(
        self, a: torch.Tensor, nb: torch.Tensor, sb: torch.Tensor, b_tally: "CodedTally | None" = None,
        a_mult: torch.Tensor | None = None, mask_bias: torch.Tensor | None = None, b_heads: int = 1,
    ) -> torch.Tensor:
        """``forward(a * a_mult, b)`` in ``snn-fused`` with b given as its code (``code_b``): the same output, the same
        counts. ``b_tally``: b's kept firing histograms, so one query row is counted without a pass over all of b.
        ``mask_bias``: added to the output (0 where a key may be seen, -inf where not, ``mask_bias``): a softmax of the
        result equals ``SNNSoftmax`` under the mask, bit for bit.
        ``b_heads``: grouped-query attention without repeating the cache: a (B, kv heads, group x M, K) holds the rows
        of the ``b_heads`` query heads that share each kv head of b (B, kv heads, K, N); counted as the reference
        counts b repeated once per query head (every figure but b's spikes is the same either way)."""
        out, tallies = self.coded_block(a, nb, sb, b_tally, a_mult, mask_bias)
        if tallies is not None:
            self.record_coded(a, nb, b_tally, tallies, blocks=1, b_heads=b_heads)
        return out

    def coded_block(
        self, a: torch.Tensor, nb: torch.Tensor, sb: torch.Tensor, b_tally: "CodedTally | None" = None,
        a_mult: torch.Tensor | None = None, mask_bias: torch.Tensor | None = None, whole_b: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[int, int] | None]:
        """``forward_coded`` on a block of a's rows, recording nothing: (output, the block's (spikes, synops) when
        counting, else None). Blocks' tallies add up, but for b's spikes, which each block counts (``record_coded``).
        ``whole_b``: the codes of all of b when ``nb`` is the part a block needs (the first columns, or the first rows
        with a as many columns, the rest of a being zeros): the tallies are those of the block against all of b."""
        na, sa = self._code(self.qa, self.a_neuron, a, "a", mult=a_mult, mode="snn-fused")
        acc = self._accumulator(a, nb)  # exact either way: any inner length below the bound sums integers exactly in float32
        product = self.product(na.to(acc), nb.to(acc)).to(a.dtype)
        with torch.no_grad():  # p (s_a s_b) without an s_a s_b matrix, masked
            out, check = kernels.backend(a.device).chains["scaled_scores"](product, sa, sb, mask_bias)
        if not bool(torch.isfinite(check).all()):
            check_finite(product.mul_(sa * sb), "a . b")
        if not counters.counting():
            return out, None
        return out, self._block_tallies(na, nb if whole_b is None else whole_b, b_tally)

    def _block_tallies(self, na: torch.Tensor, nb: torch.Tensor, b_tally: "CodedTally | None") -> tuple[int, int]:
        """(spikes, synops) of a block's codes na against all of b (nb); na may cover only b's first rows (K), the
        rest of its columns being zero counts, which fire nothing and meet nothing."""
        backend = kernels.backend(na.device)
        chain = backend.chains["prefix_pairs"] if backend.name == "compiled" else None  # eager: a few query rows only
        if b_tally is not None and self.coding == "rate" and (chain is not None or na.numel() <= EAGER_GATHER):  # rate histograms
            prefix = b_tally.prefix(self.qb.T)
            return query_tallies(na, prefix[..., : na.shape[-1], :], b_tally.spikes(), nb.shape[-1], self.qa.T, self.qb.T, chain)
        if na.shape[-1] < nb.shape[-2]:
            na = torch.nn.functional.pad(na, (0, nb.shape[-2] - na.shape[-1]))
        return self.closed_form_tallies(na, nb)

    def record_coded(self, a: torch.Tensor, nb: torch.Tensor, b_tally: "CodedTally | None", tallies: tuple[int, int], blocks: int,
                     b_heads: int = 1) -> None:
        """Record one ``forward_coded`` call from the summed tallies of its ``blocks`` row blocks (a: the whole a, or a
        tensor of its shape): b's spikes counted once per query head (``b_heads`` per kv head), not once per block."""
        spikes, synops = tallies
        if blocks != b_heads:
            b_spikes = b_tally.spikes() if b_tally is not None and self.coding == "rate" else coded_spikes(nb, self.coding, self.qb.T)
            spikes += (b_heads - blocks) * b_spikes
        if b_heads > 1:
            nb = nb.unsqueeze(-3).expand(*nb.shape[:-2], b_heads, *nb.shape[-2:])  # its size, as repeated per query head
        self._record_counts(a, nb, spikes, synops)

    @torch.no_grad()
    def iter_steps(self, a: torch.Tensor, b: torch.Tensor) -> Iterator[torch.Tensor]:
        """Time-stepped B.1: yields the accumulated product s_a s_b A_t after every step t (rate coding;
        ``_iter_coded_steps`` for the others)."""
        self.check_operands(a, b)
        if self.coding != "rate":
            yield from self._iter_coded_steps(a, b)
            return
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
        self._finish_steps(a, b, (va, sum_a, Ta, sa), (vb, sum_b, Tb, sb), spikes, acs)

    def _finish_steps(self, a: torch.Tensor, b: torch.Tensor, coded_a: tuple, coded_b: tuple, spikes: int, synops: int) -> None:
        """After the last step: the neurons reset, each operand's (input current, count, T, scale) to the observers,
        the call's spikes and synaptic operations to the counters."""
        self.a_neuron.reset()
        self.b_neuron.reset()
        if observe.observing():
            for v, n, T, s in (coded_a, coded_b):
                observe.encoded(self, v, n, T, s)
        if counters.counting():
            self._record_counts(a, b, spikes, synops)

    def _iter_coded_steps(self, a: torch.Tensor, b: torch.Tensor) -> Iterator[torch.Tensor]:
        """Stepped product of bitwise or multilevel codes: the neurons emit, in lockstep, the planes a_i and b_j worth
        w_i and w_j (``step_weights``); at step t every pair that has met by then (max(i, j) = t) adds w_i w_j (a_i . b_j)
        to A, so after the last step A = (sum_i w_i a_i) . (sum_j w_j b_j) = n_a . n_b, integer-valued and exact in
        the accumulator (|A| <= T_a T_b K at every step: the digits of one entry share its sign). Yields s_a s_b A_t
        after every step; counts the spikes and the spike pairs that meet (bitwise: ACs; multilevel: MACs)."""
        sa, sb = self.qa.scale_for(a), self.qb.scale_for(b)
        va, vb = a / sa, b / sb
        Ta, Tb = self.qa.T, self.qb.T
        wa, wb = step_weights(self.coding, Ta), step_weights(self.coding, Tb)
        acc = self._accumulator(a, b)
        sum_a = torch.zeros_like(va, dtype=acc)
        sum_b = torch.zeros_like(vb, dtype=acc)
        planes_a: list[torch.Tensor] = []
        planes_b: list[torch.Tensor] = []
        A: torch.Tensor | None = None
        scale = sa * sb
        self.a_neuron.reset()
        self.b_neuron.reset()
        a_train, b_train = self.a_neuron.iter_constant(va, Ta), self.b_neuron.iter_constant(vb, Tb)
        spikes = pairs = 0
        for t in range(max(len(wa), len(wb))):
            for train, planes, weights, total in ((a_train, planes_a, wa, sum_a), (b_train, planes_b, wb, sum_b)):
                if t < len(weights):
                    planes.append(next(train).to(acc))
                    total.add_(planes[-1], alpha=weights[t])
                    if counters.counting():
                        spikes += counters.nonzero(planes[-1])
            met = [(t, j) for j in range(len(planes_b))] if t < len(wa) else []
            met += [(i, t) for i in range(min(t, len(planes_a)))] if t < len(wb) else []
            for i, j in met:
                term = self.product(planes_a[i], planes_b[j])
                A = term.mul_(wa[i] * wb[j]) if A is None else A.add_(term, alpha=wa[i] * wb[j])
                if counters.counting():
                    pairs += self.coincident(planes_a[i], planes_b[j])
            yield A.to(a.dtype) * scale
        self._finish_steps(a, b, (va, sum_a, Ta, sa), (vb, sum_b, Tb, sb), spikes, pairs)

    def _record_counts(self, a: torch.Tensor, b: torch.Tensor, spikes: int, synops: int) -> None:
        """One call's counts; ``synops`` are MACs in mode qat and in the multilevel coding (a graded spike multiplies),
        ACs in the rate and bitwise codings. Dense: rate 3 products per step (B.1's increment) over max(T_a, T_b) steps,
        bitwise one product per pair of digit planes (K_a K_b), multilevel one product."""
        g = self.geometry(a, b)
        dense = g.out_numel * g.inner
        float_ops = 2 * (a.numel() + b.numel()) + 2 * g.out_numel  # two absmax, two x/s, s_a s_b, product * scale
        if self.mode == "qat":
            counters.record(self, Effective_MACs=synops, Dense=dense, float_ops=float_ops, **self._memory_traffic(a, b, 1))
            return
        coding = self.coding
        Ka, Kb = coding_steps(coding, self.qa.T), coding_steps(coding, self.qb.T)
        dense_products = {"rate": 3 * max(Ka, Kb), "bitwise": Ka * Kb, "multilevel": 1}[coding]
        acs, macs = (0, synops) if coding == "multilevel" else (synops, 0)
        counters.record(
            self,
            spikes=spikes,
            neuron_steps=Ka * a.numel() + Kb * b.numel(),
            Effective_ACs=acs,
            Effective_MACs=macs,
            Dense=dense_products * dense,
            float_ops=float_ops,
            **self._memory_traffic(a, b, max(Ka, Kb)),
        )

    def _memory_traffic(self, a: torch.Tensor, b: torch.Tensor, steps: int) -> dict[str, int]:
        """Elements moved by one call (``counters.py``): a matmul reads a and writes its product; its b, cached keys or
        values, is counted by the attention block, which knows the kv heads and the mask (``blocks.SoftmaxAttention``)."""
        return dict(act_reads=a.numel(), act_writes=self.geometry(a, b).out_numel)

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

    def check_shapes(self, a: torch.Tensor, b: torch.Tensor) -> None:
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
        if self.coding != "rate":
            return coded_matmul_tallies(na, nb, self.coding)
        return matmul_tallies(na, nb, self.qa.T, self.qb.T)


class SNNMultiply(ActivationProduct):
    """Spike-coded a * b (elementwise, same shapes), one scale per token for each operand. Modes ``qat``, ``snn``, ``snn-fused``."""

    def __init__(self, spec_a: QuantSpec = QuantSpec(), spec_b: QuantSpec = QuantSpec(), mode: str = "snn-fused") -> None:
        super().__init__(spec_a, spec_b, mode)

    def product(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * y

    def check_shapes(self, a: torch.Tensor, b: torch.Tensor) -> None:
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")

    def geometry(self, a: torch.Tensor, b: torch.Tensor) -> Geometry:
        return Geometry(1, 1, 1, a.numel())

    def coincident(self, at: torch.Tensor, bt: torch.Tensor) -> int:
        return counters.nonzero(at * bt)

    def _memory_traffic(self, a: torch.Tensor, b: torch.Tensor, steps: int) -> dict[str, int]:
        """Both operands are activations, read once; the product written once."""
        return dict(act_reads=a.numel() + b.numel(), act_writes=a.numel())

    def closed_form_tallies(self, na: torch.Tensor, nb: torch.Tensor) -> tuple[int, int]:
        if self.coding != "rate":
            return coded_multiply_tallies(na, nb, self.coding)
        backend = kernels.backend(na.device)
        return multiply_tallies(na, nb, self.qa.T, self.qb.T, backend.chains["multiply_pairs"] if backend.name == "compiled" else None)


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

    def code_values(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_v, s_v) as ``forward`` codes v in ``snn-fused`` (no counting): one code per token, reusable by a decoder."""
        fused = fused_code(self.values.neuron, self.values.quant, v, self.values.T, tally=False)
        if fused is not None:
            return fused.n, combine_scales(fused.token, fused.static, v)
        check_finite(v, "v")
        s = self.values.quant.scale_for(v)
        n, _ = spike_code(self.values, self.values.neuron, v, s, self.values.T, "snn-fused", tally=False)
        return n, s

    def forward_coded(
        self, probs: torch.Tensor, n_v: torch.Tensor, s_v: torch.Tensor, v_tally: "CodedTally | None" = None, v_heads: int = 1,
    ) -> torch.Tensor:
        """``forward(probs, v)`` in ``snn-fused`` with v given as its code (``code_values``): the same output, the same counts.
        ``v_tally``: v's kept firing histograms (per kv head), for counting one query row. ``v_heads``: the query heads
        sharing each kv head of v, probs (B, kv heads, group x M, N) (``SNNMatmul.forward_coded``'s ``b_heads``)."""
        out, tallies = self.coded_block(probs, n_v, s_v, v_tally)
        if tallies is not None:
            self.record_coded(probs, n_v, v_tally, tallies, blocks=1, v_heads=v_heads)
        return out

    def coded_block(self, probs: torch.Tensor, n_v: torch.Tensor, s_v: torch.Tensor, v_tally: "CodedTally | None" = None,
                    whole_values: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int] | None]:
        """``forward_coded`` on a block of rows of probs, recording nothing (``SNNMatmul.coded_block``). ``whole_values``:
        all of v's codes when probs, n_v and s_v hold only the first keys (the rest of the rows' probabilities are 0)."""
        # P diag(s_v) is coded as it is formed (``encode.fused_code``), never kept
        s_v = s_v.transpose(-1, -2)  # (B, kv heads, 1, N): every query row of a group takes its kv head's scales
        ones = torch.ones((), dtype=probs.dtype, device=probs.device)
        return self.matmul.coded_block(probs, n_v, ones, v_tally, a_mult=s_v, whole_b=whole_values)

    def record_coded(self, probs: torch.Tensor, n_v: torch.Tensor, v_tally: "CodedTally | None", tallies: tuple[int, int], blocks: int,
                     v_heads: int = 1) -> None:
        """Record one ``forward_coded`` call from its blocks' summed tallies (probs: the whole probs, or a tensor of its shape)."""
        coding = self.values.neuron.coding
        if v_tally is not None and coding == "rate":  # the tallies keep rate histograms
            spikes = v_tally.spikes() * (n_v.shape[1] * v_heads // v_tally.spikes_total.shape[1])
        else:
            spikes = coded_spikes(n_v, coding, self.values.T) * v_heads
        counted = n_v if v_heads == 1 else n_v.unsqueeze(-3).expand(*n_v.shape[:-2], v_heads, *n_v.shape[-2:])
        self.values._record_counts(counted, spikes, values_read=False)
        self._record_counts(probs)
        self.matmul.record_coded(probs, n_v, v_tally, tallies, blocks, b_heads=v_heads)

    def _record_counts(self, probs: torch.Tensor) -> None:
        counters.record(self, float_ops=probs.numel())  # the folding of s_v into P

    def extra_repr(self) -> str:
        return f"mode={self.mode}"

