"""Exact lookup of a piecewise-constant function of x through uniform buckets.

A staircase neuron's closed form (B.2.2) is a threshold search: which of T thresholds lie
below x. A binary search per element (``torch.searchsorted``) is the slowest part of a
spiking forward pass on CPU. When the function only changes at known breakpoints
p_1 < ... < p_m, one multiply and one gather give the same answer:

    b(x) = clamp(floor((x - p_1) * m_inv), 0, B - 1)

is monotone in x in floating point (every step is), so a breakpoint in a lower bucket is
<= x and one in a higher bucket is > x. With at most one breakpoint per bucket, the value
is ``right[b] if x >= bp[b] else left[b]``: exact, whatever the rounding of b.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import models.spiking.kernels as kernels

Reference = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


class BucketLookup:
    """Tables for ``fn`` (piecewise constant, right-continuous steps at ``breakpoints``) in one dtype.

    ``fn`` maps a 1-D tensor to a tuple of same-shape tensors (e.g. output and spike count);
    it is evaluated only at the breakpoints and one point below them, so it may be slow.
    ``build`` returns None when no bucket count up to ``max_buckets`` separates the breakpoints.
    """

    def __init__(self, low: torch.Tensor, inv_width: torch.Tensor, buckets: int, bp: torch.Tensor, left: tuple, right: tuple) -> None:
        self.low, self.inv_width, self.buckets = low, inv_width, buckets
        self.bp, self.left, self.right = bp, left, right

    @staticmethod
    def bucket_of(x: torch.Tensor, low: torch.Tensor, inv_width: torch.Tensor, buckets: int) -> torch.Tensor:
        return (x - low).mul_(inv_width).floor_().clamp_(0, buckets - 1).long()

    @classmethod
    def build(cls, fn: Reference, breakpoints: torch.Tensor, max_buckets: int = 1 << 16) -> "BucketLookup | None":
        points = torch.unique(breakpoints)  # sorted, in the dtype the lookup will serve
        if points.numel() == 0 or not bool(torch.isfinite(points).all()):
            return None
        low, high = points[0], points[-1]
        below = torch.full((1,), torch.finfo(points.dtype).min, dtype=points.dtype, device=points.device)
        at_points = fn(points)
        before_first = fn(below)
        span = float(high - low) or 1.0  # one breakpoint: any width separates it
        buckets = max(16, 2 * points.numel())
        while buckets <= max_buckets:
            inv_width = torch.tensor(buckets / span, dtype=points.dtype, device=points.device)
            where = cls.bucket_of(points, low, inv_width, buckets)
            if bool((where[1:] > where[:-1]).all()):
                return cls._tables(points, where, low, inv_width, buckets, at_points, before_first)
            buckets *= 2
        return None

    @classmethod
    def _tables(cls, points, where, low, inv_width, buckets, at_points, before_first) -> "BucketLookup":
        inf = torch.tensor(float("inf"), dtype=points.dtype, device=points.device)
        bp = inf.expand(buckets).clone()
        bp[where] = points
        # the state in force at the start of bucket b: that of the last breakpoint in a bucket < b
        owner = torch.full((buckets,), -1, dtype=torch.long, device=points.device)
        owner[where] = torch.arange(points.numel(), device=points.device)
        last_at_or_before = torch.cummax(owner, 0).values  # index of the last breakpoint in buckets <= b
        last_before = torch.cat([last_at_or_before.new_full((1,), -1), last_at_or_before[:-1]])
        left, right = [], []
        for at, first in zip(at_points, before_first):
            table = torch.cat([first.reshape(1), at])  # index 0: before every breakpoint
            left.append(table[last_before + 1])
            right.append(table[last_at_or_before + 1])
        return cls(low, inv_width, buckets, bp, tuple(left), tuple(right))

    def __call__(self, x: torch.Tensor, outputs: int | None = None) -> tuple[torch.Tensor, ...]:
        """The tables' values at x (same shape as x); ``outputs`` limits how many are looked up."""
        b = self.bucket_of(x, self.low, self.inv_width, self.buckets)
        above = x >= self.bp[b]
        n = len(self.left) if outputs is None else outputs
        return tuple(torch.where(above, right[b], left[b]) for left, right in zip(self.left[:n], self.right[:n]))

    def fused(self, x: torch.Tensor, second: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The first table's value at x (and the second's summed per row, with ``second``) in one pass
        (``kernels.staircase_lookup``, the same operations as ``__call__``), with max |x| per row (finite iff x is)."""
        chain = kernels.backend(x.device).chains["staircase_lookup"]
        tables = (self.left[1], self.right[1]) if second else (None, None)
        return chain(x, self.low, self.inv_width, self.buckets, self.bp, self.left[0], self.right[0], *tables)
