"""The kept firing statistics of a decoder's coded keys and values (``CodedTally``), so that the B.1 counters of
one query row against the cache need no pass over the whole cache (``fast.query_tallies``)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .fast import append_along, firing_prefix, line_histogram


class CodedTally(NamedTuple):
    """The kept firing statistics of a coded operand b, per kv head (not repeated over query heads), so that one
    query row is counted without a pass over all of b. b's lines are its rows (the product's inner dimension):

    - keys (lines = head dims, entries = tokens, growing): ``histogram`` of |n| per line, summed over tokens;
    - values (lines = tokens, growing, entries = head dims): ``rows``, each line's ``firing_prefix``, kept once
      per token.
    ``spikes_total``: sum |n| per (batch, kv head)."""

    histogram: torch.Tensor | None  # (batch, kv heads, lines, T + 1)
    rows: torch.Tensor | None  # (batch, kv heads, lines, T + 1)
    entries: int
    spikes_total: torch.Tensor  # (batch, kv heads)

    @classmethod
    def of_keys(cls, nk: torch.Tensor, T: int) -> "CodedTally":
        """The tally of coded keys k^T (batch, kv heads, dims, tokens)."""
        histogram = line_histogram(nk, T)
        return cls(histogram, None, nk.shape[-1], _magnitudes(histogram).sum(-1))

    @classmethod
    def of_values(cls, nv: torch.Tensor, T: int) -> "CodedTally":
        """The tally of coded values (batch, kv heads, tokens, dims)."""
        histogram = line_histogram(nv, T)
        return cls(None, firing_prefix(histogram, nv.shape[-1], T), nv.shape[-1], _magnitudes(histogram).sum(-1))

    def extend(self, new: "CodedTally") -> "CodedTally":
        """This tally with ``new``'s tokens appended."""
        if self.histogram is not None:
            return CodedTally(self.histogram + new.histogram, None, self.entries + new.entries, self.spikes_total + new.spikes_total)
        return CodedTally(None, append_along(self.rows, new.rows, -2), self.entries, self.spikes_total + new.spikes_total)

    def expand(self, batch: int) -> "CodedTally":
        grow = lambda x: None if x is None else x.expand(batch, *x.shape[1:])  # noqa: E731
        return CodedTally(grow(self.histogram), grow(self.rows), self.entries, grow(self.spikes_total))

    def prefix(self, T: int) -> torch.Tensor:
        return self.rows if self.rows is not None else firing_prefix(self.histogram, self.entries, T)

    def spikes(self) -> int:
        return int(self.spikes_total.sum())


def _magnitudes(histogram: torch.Tensor) -> torch.Tensor:
    """sum |n| per line from a ``line_histogram``: each magnitude j times how many entries have it."""
    return (histogram * torch.arange(histogram.shape[-1], device=histogram.device)).sum(-1)
