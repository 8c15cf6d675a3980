"""Operations counted over a few forwards of a model, priced under energy presets.

The estimate ``snnbench stdp``, ``ablate``, ``braingpt-ablate`` and the instrumentation benchmark
give: run the model on the first few sequences of a test text under an op counter, then
ACs x E_AC + MACs x E_MAC + float ops x E_float per preset (``synops.estimate``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from models.spiking.counters import OpCounter, OpStats

from .synops import EnergyPreset, SynOpsEstimate, estimate


@dataclass(frozen=True)
class OpCost:
    """Counted operations of ``tokens`` tokens and their estimated energy under each preset (in the order given)."""

    ops: OpStats
    tokens: int
    estimates: tuple[SynOpsEstimate, ...] = ()

    def per_token(self, figure: str) -> float:
        """``figure`` of the counted operations (``spikes``, ``synops``, ``float_ops`` ...) per token."""
        return getattr(self.ops, figure) / self.tokens

    @property
    def joules_per_token(self) -> float:
        """Estimated joules per token under the first preset."""
        return self.estimates[0].joules / self.tokens


def price(ops: OpStats, tokens: int, presets: Sequence[EnergyPreset] = ()) -> OpCost:
    """``ops`` (of ``tokens`` tokens) with their estimated energy under each of ``presets``."""
    return OpCost(ops, tokens, tuple(estimate(ops, preset) for preset in presets))


def first_sequences(ids: Sequence[int] | torch.Tensor, length: int, most: int = 4) -> torch.Tensor:
    """The first ``most`` whole sequences of ``length`` tokens of ``ids`` (fewer when it is shorter), shape (rows, length)."""
    rows = min(most, len(ids) // length)
    return torch.as_tensor(ids[: rows * length]).view(rows, length)


def count_forwards(model: nn.Module, batches: Iterable[torch.Tensor], presets: Sequence[EnergyPreset] = (),
                   device: torch.device | str | None = None) -> OpCost:
    """Run ``model`` (no gradients) on each batch of token ids under an op counter: the operations, tokens and their price.
    The batches go to ``device``, by default where the model is."""
    tokens = 0
    device = device if device is not None else next(model.parameters()).device
    with OpCounter(model) as counter, torch.no_grad():
        for ids in batches:
            model(ids.to(device))
            tokens += ids.numel()
    return price(counter.total(), tokens, presets)
