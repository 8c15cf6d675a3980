"""The fast path of the ``snn-fused`` mode: closed forms of the neurons' spike counts, and the caches behind them.

The ``snn`` mode of every operator steps the neurons of ``neuron.py``; its ``snn-fused`` mode
calls this module instead. Each piece is tested equal, bit for bit, to the stepping it replaces:

- ``spike_count_closed_form``, ``eiif_counts``, ``first_spike_time``: an EI-IF neuron with r >= 1
  under a constant input (eq. 6-10) fires on its first k steps (tests/test_neuron.py, test_quant.py);
- ``coded_counts``, ``coded_spikes``, ``coded_matmul_tallies``, ``coded_multiply_tallies``: the count, the
  spikes and the B.1 counters of every spike coding (rate, bitwise, multilevel) (tests/test_coding.py);
- ``folded_weight``: Synapsis's W * s_static, kept while its sources are unchanged (test_synapsis.py);
- ``StaircaseClosedForm``: the staircase neurons of B.2.2 as a threshold search, served by an exact
  bucket table (``lookup.py``) (test_silu.py, test_lookup.py, test_gpt2.py);
- ``matmul_tallies``, ``multiply_tallies``: the counters of the time-stepped B.1 products, from the
  spike counts (test_matmul.py, test_spiking_ops.py); ``line_histogram``, ``firing_prefix`` and
  ``query_tallies``: the same
  for one decoded query against cached keys or values, without a histogram over the whole cache
  (test_coded_cache.py).

The caches: ``remembered`` keeps a value on its owner until a source tensor is replaced or written
in place (stage 3 changes thresholds in place; a model may move to another device); the staircase
tables are kept per dtype and device (their thresholds are fixed by the fit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import nn

import models.spiking.counters as counters

from .checks import check_finite, check_time_steps
from .lookup import BucketLookup
from .quant import quantize_counts

V = TypeVar("V")


def remembered(owner: object, slot: str, sources: Iterable[torch.Tensor], compute: Callable[[], V], *extra: object) -> V:
    """``compute()``, kept in ``owner.__dict__[slot]`` while every source tensor is the same one, unmodified."""
    key = tuple((id(t), t.data_ptr(), t._version) for t in sources) + extra
    cached = owner.__dict__.get(slot)
    if cached is None or cached[0] != key:
        cached = (key, compute())
        owner.__dict__[slot] = cached
    return cached[1]


def append_along(old: torch.Tensor, new: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.cat([old, new], dim)`` for a cache that grows by a few tokens per decode step, in amortized O(new):
    a result is a view of a buffer with room to spare, and the next append writes into that room when ``old`` is the
    buffer's latest view (else, e.g. a second continuation of one cache, it copies as cat does). Earlier views never
    see later writes: those land past their end."""
    dim = dim % old.dim()
    grown = getattr(old, "_append_buffer", None)
    size, extra = old.shape[dim], new.shape[dim]
    if grown is not None:
        buffer, tip = grown
        if tip[0] == size and size + extra <= buffer.shape[dim] and old.dtype == new.dtype and new.shape[:dim] == old.shape[:dim]:
            buffer.narrow(dim, size, extra).copy_(new)
            tip[0] = size + extra
            out = buffer.narrow(dim, 0, size + extra)
            out._append_buffer = (buffer, tip)
            return out
    shape = list(old.shape)
    shape[dim] = 2 * (size + extra) + 16
    buffer = old.new_empty(torch.Size(shape), dtype=torch.promote_types(old.dtype, new.dtype))
    buffer.narrow(dim, 0, size).copy_(old)
    buffer.narrow(dim, size, extra).copy_(new)
    out = buffer.narrow(dim, 0, size + extra)
    out._append_buffer = (buffer, [size + extra])
    return out


# ---------------------------------------------------------------- EI-IF counts (eq. 6-10)


def spike_count_closed_form(
    x: torch.Tensor,
    time_steps: int,
    theta_base: torch.Tensor | float = 0.5,
    alpha: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Signed spike count of a memoryless (r >= 1) EI-IF neuron under constant input ``x``.

    The count is #{t < T : |x| >= theta(t)} with the sign of x. theta(t) is non-decreasing,
    so the spikes are the first k steps; k is estimated from (|x| - theta_base) / alpha and
    then corrected with the very comparison the time-stepped neuron makes, which makes the
    result equal to the simulation bit for bit, whatever the rounding of the estimate.
    """
    T = check_time_steps(time_steps)
    theta_base = torch.as_tensor(theta_base, dtype=x.dtype, device=x.device)
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    u = x.abs()
    safe_alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    estimate = torch.floor((u - theta_base) / safe_alpha) + 1
    estimate = torch.where(alpha > 0, estimate, torch.where(u >= theta_base, float(T), 0.0))
    k = torch.nan_to_num(estimate, nan=0.0, posinf=float(T), neginf=0.0).clamp(0, T)
    for _ in range(2):  # theta(k) = theta_base + alpha k: the expression the neuron evaluates (``neuron.threshold_at``)
        k = k + ((k < T) & (u >= theta_base + alpha * k)).to(x.dtype)
        k = k - ((k > 0) & (u < theta_base + alpha * (k - 1))).to(x.dtype)
    return torch.where(x < 0, -k, k)


def eiif_counts(neuron: nn.Module, x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """``neuron.run_constant(x, T).sum(0)`` of an ``EIIFNeuron`` without stepping (needs r >= 1 for every neuron).

    With the conversion parameters (theta_base 0.5, alpha 1) in float32/float64 the count is
    round half away from zero clamped to [-T, T] (``quantize_counts``). Both facts about the
    neuron's buffers are remembered until a buffer changes (no device sync per call).
    """
    check_finite(x, "x")
    if rate_counts_are_quantized(neuron, x.dtype, time_steps):
        return quantize_counts(x, time_steps)
    return spike_count_closed_form(x, time_steps, neuron.theta_base.to(x.dtype), neuron.alpha.to(x.dtype))


def rate_counts_are_quantized(neuron: nn.Module, dtype: torch.dtype, time_steps: int) -> bool:
    """True when ``eiif_counts`` of a rate-coded neuron is ``quantize_counts`` (the conversion parameters, float32 or
    float64, T < 2^22); a one-line ValueError when the neuron has no closed form (r < 1 somewhere) or T < 1."""
    if not remembered(neuron, "_fast_memoryless", (neuron.r,), lambda: neuron.memoryless):
        raise ValueError("count_closed_form needs r >= 1 for every neuron (a leaky membrane has no closed form); use run_constant")
    check_time_steps(time_steps)
    return (
        dtype in (torch.float32, torch.float64)
        and time_steps < 2**22
        and remembered(neuron, "_fast_conversion", (neuron.theta_base, neuron.alpha), lambda: neuron.conversion_parameters)
    )


def counts_are_quantized(neuron: nn.Module, dtype: torch.dtype, time_steps: int) -> bool:
    """True when ``coded_counts(neuron, x, T)`` is ``quantize_counts(x, T)`` for x of ``dtype`` (every coding with the
    conversion parameters), so a fused kernel may compute it; the errors ``coded_counts`` raises otherwise."""
    if neuron.coding == "rate":
        return rate_counts_are_quantized(neuron, dtype, time_steps)
    neuron.check_coding_parameters()
    check_time_steps(time_steps)
    return True


def coded_counts(neuron: nn.Module, x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """The count sum_k w_k S(k) an ``EIIFNeuron`` of its ``coding`` emits under constant ``x`` without stepping: rate
    ``eiif_counts``; bitwise and multilevel code the quantizer's count, ``quantize_counts(x, T)`` (the neuron checks it
    has the conversion parameters; the stepped code equals it bit for bit wherever T and the digit thresholds w - 0.5
    are representable, i.e. in float32 and float64 for every T of a <= 16-bit quantizer)."""
    if neuron.coding == "rate":
        return eiif_counts(neuron, x, time_steps)
    check_finite(x, "x")
    neuron.check_coding_parameters()
    return quantize_counts(x, check_time_steps(time_steps))


def popcount(counts: torch.Tensor) -> torch.Tensor:
    """Nonzero binary digits of |n| per entry (int32) of integer-valued counts with |n| < 2^16 (every count of a
    <= 16-bit quantizer): the SWAR bit count, summing bit pairs, then nibbles, bytes and the two bytes."""
    m = counts.detach().abs().to(torch.int32)
    m = m - ((m >> 1) & 0x5555)
    m = (m & 0x3333) + ((m >> 2) & 0x3333)
    m = (m + (m >> 4)) & 0x0F0F
    return (m + (m >> 8)) & 0x1F


def spikes_per_entry(counts: torch.Tensor, coding: str) -> torch.Tensor:
    """Spikes (int) each entry of the counts n emits in ``coding``: rate |n|, bitwise popcount(|n|), multilevel [n != 0]."""
    if coding == "bitwise":
        return popcount(counts)
    if coding == "multilevel":
        return (counts != 0).to(torch.int32)
    return counts.detach().abs().to(torch.int64)


def coded_spikes(counts: torch.Tensor, coding: str, time_steps: int) -> int:
    """Spikes that code the counts n (|n| <= T) in ``coding``: rate sum |n|, bitwise sum popcount(|n|), multilevel #{n != 0}."""
    if coding == "rate":
        return counters.abs_sum(counts, bound=time_steps)
    if coding == "multilevel":
        return counters.nonzero(counts)
    if time_steps >= 2**16:
        raise ValueError(f"bitwise spike counts need T < 2^16, got T={time_steps}")
    return int(popcount(counts).sum())


def coded_matmul_tallies(na: torch.Tensor, nb: torch.Tensor, coding: str) -> tuple[int, int]:
    """(spikes, spike pairs) of the stepped SNNMatmul of a bitwise or multilevel code from the counts n_a (..., M, K),
    n_b (..., K, N): every spike of a_mk meets every spike of b_kn once, so with c = ``spikes_per_entry`` the pairs are
    sum_mkn c_a,mk c_b,kn = sum over (pc_a @ pc_b) = sum_k (sum_m c_a,mk)(sum_n c_b,kn) (ACs bitwise, MACs multilevel)."""
    ca, cb = spikes_per_entry(na, coding), spikes_per_entry(nb, coding)
    pairs = int((ca.sum(-2, dtype=torch.int64) * cb.sum(-1, dtype=torch.int64)).sum())
    return int(ca.sum()) + int(cb.sum()), pairs


def coded_multiply_tallies(na: torch.Tensor, nb: torch.Tensor, coding: str) -> tuple[int, int]:
    """(spikes, spike pairs) of the stepped SNNMultiply of a bitwise or multilevel code: entry i's spikes of a meet
    its spikes of b, pairs = sum c_a c_b (pc_a * pc_b bitwise: ACs; [n_a != 0][n_b != 0] multilevel: MACs)."""
    ca, cb = spikes_per_entry(na, coding), spikes_per_entry(nb, coding)
    return int(ca.sum()) + int(cb.sum()), int((ca.to(torch.int64) * cb).sum())


def first_spike_time(count: torch.Tensor) -> torch.Tensor:
    """First-spike time of a memoryless neuron given its closed-form count: 0 if it fires, else -1."""
    return torch.where(count != 0, 0, -1).to(torch.int64)


# ---------------------------------------------------------------- Synapsis (eq. 4)


def folded_weight(layer: nn.Module, static: torch.Tensor | None) -> torch.Tensor:
    """A Synapsis's W * s_static, kept while the weight and the pre-synaptic quantizer's static tensors are unchanged
    (a decode step would otherwise pay a full pass over W for one token; the price is a second copy of W)."""
    if static is None:
        return layer.weight
    sources = [layer.weight] + [t for t in (getattr(layer.pre, "factor", None), layer.pre.scale) if t is not None]
    return remembered(layer, "_fast_folded_weight", sources, lambda: layer.weight * static, static.dtype, static.device)


# ---------------------------------------------------------------- staircase neurons (B.2.2)


class StaircaseClosedForm:
    """The output and spike count of a positive and a negative ``StaircaseNeuron`` (gamma = 0) without stepping.

    The neurons are read for their ``thresholds`` and ``amplitudes`` (this module imports no neuron:
    the reference does not depend on its fast path, nor the fast path on the reference's code).

    A neuron with ascending thresholds fires on its first k = #{t : |x| >= theta(t)} steps, so its
    output is the prefix sum A(0) + ... + A(k-1), accumulated in the order the steps add it.
    ``search`` finds k by binary search; ``__call__`` by an exact bucket table where one can be built.
    """

    def __init__(self, positive: nn.Module, negative: nn.Module) -> None:
        self.neurons = (positive, negative)
        self._tables: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, ...]] = {}
        self._lookups: dict[tuple[torch.dtype, torch.device], BucketLookup | None] = {}

    def tables(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(positive thresholds, prefix sums, negative thresholds, prefix sums) in the input's dtype and device."""
        key = (like.dtype, like.device)
        if key not in self._tables:
            tables = []
            for neuron in self.neurons:
                thr, amp = neuron.thresholds.to(like), neuron.amplitudes.to(like)
                prefix = [torch.zeros((), dtype=like.dtype, device=like.device)]
                for a in amp:
                    prefix.append(prefix[-1] + a)  # as the steps add it: out_t = out_{t-1} + A(t)
                tables += [thr, torch.stack(prefix)]
            self._tables[key] = tuple(tables)
        return self._tables[key]

    def search(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, spikes per element) by binary search over the thresholds (what the lookup is built from)."""
        pos_thr, pos_prefix, neg_thr, neg_prefix = self.tables(x)
        u = x.detach().abs().contiguous()
        k_pos = torch.searchsorted(pos_thr, u, right=True)
        k_neg = torch.searchsorted(neg_thr, u, right=True)
        positive = x >= 0
        out = torch.where(positive, pos_prefix[k_pos], neg_prefix[k_neg])
        return out, torch.where(positive, k_pos, k_neg)

    def lookup(self, like: torch.Tensor) -> BucketLookup | None:
        """``search`` as a bucket table (exact, see ``lookup.py``) for the input's dtype; None where it cannot be built."""
        key = (like.dtype, like.device)
        if key not in self._lookups:
            self._lookups[key] = None
            if like.is_floating_point():
                pos_thr, _, neg_thr, _ = self.tables(like)
                zero = torch.zeros(1, dtype=like.dtype, device=like.device)
                # the output changes where x reaches theta_pos, where x >= 0 switches branch, and just above -theta_neg
                negative_side = torch.nextafter(-neg_thr, torch.full_like(neg_thr, float("inf")))
                self._lookups[key] = BucketLookup.build(self.search, torch.cat([negative_side, zero, pos_thr]))
        return self._lookups[key]

    def __call__(self, x: torch.Tensor, spikes: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, spikes per element, or None without ``spikes``), by bucket lookup where possible."""
        lookup = self.lookup(x)
        if lookup is None:
            return self.search(x)
        found = lookup(x.detach(), outputs=2 if spikes else 1)
        return found[0], (found[1] if spikes else None)


# ---------------------------------------------------------------- B.1 counters


def firing_per_step(counts: torch.Tensor, T: int, by_column: bool = False) -> tuple[torch.Tensor, int]:
    """From signed integer-valued ``counts`` (..., R, C) with |n| <= T: how many entries of each row (or,
    ``by_column``, each column) have |n| > t for t < T, as (lines, T); and the total spike count sum |n|.

    A memoryless neuron fires on its first |n| steps, so these are the entries still firing at step t.
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


def matmul_tallies(na: torch.Tensor, nb: torch.Tensor, Ta: int, Tb: int) -> tuple[int, int]:
    """(spikes, ACs) of the time-stepped SNNMatmul from the counts n_a (..., M, K), n_b (..., K, N).

    At step t the a_t . b_t term pairs the entries of column k of a still firing with those of
    row k of b; both come from one histogram per line instead of a loop over t.
    """
    M, N = na.shape[-2], nb.shape[-1]
    firing_a, spikes_a = firing_per_step(na, Ta, by_column=True)  # (batch K, T_a): entries of column k still firing at t
    firing_b, spikes_b = firing_per_step(nb, Tb)
    T = min(Ta, Tb)
    pairs = int((firing_a[:, :T] * firing_b[:, :T]).sum())
    return spikes_a + spikes_b, spikes_b * M + spikes_a * N + pairs


def line_histogram(counts: torch.Tensor, T: int) -> torch.Tensor:
    """Per line of integer-valued ``counts`` (..., L, C), |n| <= T: how many of its C entries have |n| = j, j = 0..T."""
    magnitude = counts.detach().abs().to(torch.int64)
    histogram = torch.zeros(*counts.shape[:-1], T + 1, dtype=torch.int64, device=counts.device)
    return histogram.scatter_add_(-1, magnitude, torch.ones_like(magnitude))


def firing_prefix(histogram: torch.Tensor, entries: int, T: int) -> torch.Tensor:
    """From a ``line_histogram`` over ``entries`` per line: C_j = sum over t < j of the entries still firing at step t
    (|n| > t: the memoryless neuron fires on its first |n| steps), j = 0..T. A decoder keeps the histograms of its
    cached keys and values, which turns the a_t . b_t pairs of one query into a gather (``query_tallies``)."""
    firing = entries - histogram[..., :T].cumsum(-1)
    return torch.cat([torch.zeros_like(firing[..., :1]), firing.cumsum(-1)], dim=-1)


def query_tallies(
    na: torch.Tensor, b_prefix: torch.Tensor, b_spikes: int, b_columns: int, Ta: int, Tb: int, pairs_chain: Callable | None = None,
) -> tuple[int, int]:
    """``matmul_tallies`` for query rows na (B, H, M, K) against a b given by its per-line ``firing_prefix`` (lines =
    b's rows, the inner dimension; kv heads broadcast over query heads) and its spike total: for column k of a, the
    pairs are sum over t < |n_a,mk| of b's row k still firing, i.e. b_prefix[k, min(|n_a,mk|, T)]. ``pairs_chain``
    (``kernels.prefix_pairs``) sums them without materializing the gather; without it the gather's index is a tensor
    of na's size in int64 (fine for a decode step's few rows)."""
    B, H, M = na.shape[0], na.shape[1], na.shape[2]
    kv_heads = b_prefix.shape[1]
    groups = H // kv_heads
    T = min(Ta, Tb)
    na = na.detach().reshape(B, kv_heads, groups * M, -1)  # (B, kv heads, group x rows, K): heads of a group are adjacent
    if pairs_chain is not None:
        with torch.no_grad():
            pairs_t, spikes_t = pairs_chain(na, b_prefix[..., : T + 1], T)
        pairs, spikes_a = int(pairs_t), int(spikes_t)
    else:
        reach = na.abs().to(torch.int64).clamp_(max=T)
        prefix = b_prefix[..., : T + 1].unsqueeze(2).expand(-1, -1, na.shape[2], -1, -1)  # (B, kv heads, group x rows, K, T+1)
        pairs = int(prefix.gather(-1, reach.unsqueeze(-1)).sum())
        spikes_a = counters.abs_sum(na, bound=Ta)
    return spikes_a + b_spikes * groups, b_spikes * groups * M + spikes_a * b_columns + pairs


def multiply_tallies(na: torch.Tensor, nb: torch.Tensor, Ta: int, Tb: int, pairs_chain: Callable | None = None) -> tuple[int, int]:
    """(spikes, ACs) of the time-stepped SNNMultiply from the counts: entry i fires together on min(|n_a|, |n_b|) steps.
    ``pairs_chain`` (``kernels.multiply_pairs``): the three sums in one pass."""
    if pairs_chain is not None:
        with torch.no_grad():
            spikes_a, spikes_b, pairs = (int(t) for t in pairs_chain(na.detach(), nb.detach()))
    else:
        spikes_a, spikes_b = counters.abs_sum(na, bound=Ta), counters.abs_sum(nb, bound=Tb)
        pairs = counters.abs_sum(torch.minimum(na.abs(), nb.abs()))
    return spikes_a + spikes_b, spikes_a + spikes_b + pairs
