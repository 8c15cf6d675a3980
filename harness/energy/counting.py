"""Operations counted over a few forwards of a model, priced under energy presets; per-module counts for the
memory-aware estimate (``Counted``, ``count_model``: prefill or one decode step) and the key/value cache a model keeps.

The estimate ``snnbench stdp``, ``ablate``, ``braingpt-ablate`` and the instrumentation benchmark
give: run the model on the first few sequences of a test text under an op counter, then
ACs x E_AC + MACs x E_MAC + float ops x E_float per preset (``synops.estimate``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Counted:
    """Per-module counts of ``tokens`` tokens, as ``OpCounter.totals`` gives them."""

    per_module: dict[str, OpStats]
    tokens: int

    def total(self) -> OpStats:
        return sum(self.per_module.values(), OpStats())

    def as_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "per_module": {k: v.as_dict() for k, v in self.per_module.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Counted":
        names = OpStats.__dataclass_fields__
        return cls({k: OpStats(**{f: int(x) for f, x in v.items() if f in names}) for k, v in d["per_module"].items()}, int(d["tokens"]))


def count_model(model: nn.Module, batch: torch.Tensor, phase: str = "prefill") -> Counted:
    """Per-module counts of ``model`` (no gradients) on ``batch``: ``prefill``, every token of every row at once; ``decode``,
    the last token of each row generated after the others were prefilled uncounted (its key/value cache read)."""
    batch = batch.to(next(model.parameters()).device)
    with torch.no_grad():
        if phase == "prefill":
            with OpCounter(model) as counter:
                model(batch)
            return Counted(dict(counter.totals), batch.numel())
        _, cache = model(batch[:, :-1], use_cache=True)
        with OpCounter(model) as counter:
            model(batch[:, -1:], cache=cache, use_cache=True)
        return Counted(dict(counter.totals), batch.shape[0])


def cache_elements(model: nn.Module, context: int) -> int:
    """Keys and values one sequence of ``context`` tokens keeps (layers x 2 x kv heads x head dim x context); 0 if unknown."""
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if not (layers and heads and hidden):
        return 0
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return layers * 2 * kv_heads * head_dim * context
