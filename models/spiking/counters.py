"""Operation counters for the spiking operators, named as in NeuroBench.

Per module and per call the operators report
- ``spikes``: spikes emitted (nonzero outputs of spiking neurons, summed over time steps);
- ``neuron_steps``: neuron x time-step updates (the denominator of activation sparsity);
- ``Effective_ACs``: accumulations driven by nonzero spikes (each spike x its fan-out);
- ``Effective_MACs``: multiply-accumulates driven by nonzero float (non-spike) inputs;
- ``Dense``: the synaptic operations a dense, sparsity-unaware machine would do;
- ``float_ops``: elementwise float work outside the synapses (scaling, norms, softmax, exp),
  one per element per evaluation; kept apart so energy estimates can price it separately.

Memory traffic, in elements (the memory-aware estimate, ``harness/energy/memory.py``, prices them):
- ``weight_reads``: parameters read, once per token row (a linear layer: tokens x in x out);
- ``cache_reads``: the stationary operand of an attention product (cached keys or values), once per
  query row (no reuse across rows);
- ``step_reads``: the same weights and cached operands if they are read once per time step of the
  coding instead of once per token (equal to weight_reads + cache_reads for a one-step operator);
- ``act_reads`` / ``act_writes``: value activations (not spikes) an operator reads and writes.
Membrane potentials (one read and one write per ``neuron_steps``) and spike traffic (``spikes``
events, or ``neuron_steps`` bitmap entries) are priced from the figures above.

Counting is off unless an ``OpCounter`` is active: operators test ``counting()`` (a list
check) before computing anything, so switched off it costs nothing. Only running totals are
kept, never activations; ``on_call`` streams each call's figures to a listener.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Self

import torch
from torch import nn

_ACTIVE: list["OpCounter"] = []


@dataclass
class OpStats:
    calls: int = 0
    spikes: int = 0
    neuron_steps: int = 0
    Effective_ACs: int = 0
    Effective_MACs: int = 0
    Dense: int = 0
    float_ops: int = 0
    weight_reads: int = 0
    cache_reads: int = 0
    step_reads: int = 0
    act_reads: int = 0
    act_writes: int = 0

    def __add__(self, other: "OpStats") -> "OpStats":
        return OpStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __sub__(self, other: "OpStats") -> "OpStats":
        return OpStats(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    @property
    def synops(self) -> int:
        """Effective synaptic operations: ACs + MACs."""
        return self.Effective_ACs + self.Effective_MACs

    @property
    def activation_sparsity(self) -> float:
        """Share of neuron x time-step outputs that are zero (NeuroBench); nan without neurons."""
        if self.neuron_steps == 0:
            return float("nan")
        return 1.0 - self.spikes / self.neuron_steps

    def as_dict(self) -> dict[str, float]:
        d: dict[str, float] = dict(asdict(self))
        d["activation_sparsity"] = self.activation_sparsity
        return d


def counting() -> bool:
    """True when an OpCounter is active. Operators call this before computing any statistic."""
    return bool(_ACTIVE)


def nonzero(x: torch.Tensor) -> int:
    """Number of nonzero entries, as an exact Python int."""
    return int(torch.count_nonzero(x))


def abs_sum(x: torch.Tensor, bound: int | None = None) -> int:
    """Sum of |x| for integer-valued x, exact. With ``bound`` >= max |x| and rows short enough that a
    row's sum stays below 2^24, each row is summed in float32 (exact there) and the rows in float64;
    otherwise every element is accumulated in float64 (exact below 2^53)."""
    x = x.detach()
    if bound is not None and x.dim() >= 1 and x.shape[-1] * bound < 2**24 and x.dtype in (torch.float32, torch.float64):
        return int(torch.linalg.vector_norm(x, 1, dim=-1).sum(dtype=torch.float64))
    return int(x.abs().sum(dtype=torch.float64))


def module_name(module: nn.Module) -> str:
    """The name a collector files ``module`` under: its path in the model, else its class."""
    return getattr(module, "_counter_name", None) or type(module).__name__


def record(module: nn.Module, **figures: int) -> None:
    """Add one call's figures for ``module`` to every active counter."""
    stats = OpStats(calls=1, **{k: int(v) for k, v in figures.items()})
    name = module_name(module)
    for counter in _ACTIVE:
        counter.add(name, stats)


class Collector:
    """Base of the collectors (OpCounter, EncodingObserver): a context manager, active inside ``with``.

    With a ``model``, each of its modules is named by its path in it (``layers.0.mlp``);
    without one, modules are named by class. ``active`` is the subclass's list of active collectors.
    """

    active: list

    def __init__(self, model: nn.Module | None = None) -> None:
        self.model = model

    def __enter__(self) -> Self:
        if self.model is not None:
            for name, module in self.model.named_modules():
                module._counter_name = name or type(module).__name__
        self.active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.active.remove(self)


class OpCounter(Collector):
    """Collects OpStats per module while active. ``snapshot()``/``since()`` give the figures of a
    window (e.g. one batch) without resetting the totals; ``on_call`` streams each call's figures."""

    active = _ACTIVE

    def __init__(self, model: nn.Module | None = None, on_call: Callable[[str, OpStats], None] | None = None) -> None:
        super().__init__(model)
        self.on_call = on_call
        self.totals: dict[str, OpStats] = {}

    def add(self, name: str, stats: OpStats) -> None:
        self.totals[name] = self.totals.get(name, OpStats()) + stats
        if self.on_call is not None:
            self.on_call(name, stats)

    def total(self) -> OpStats:
        out = OpStats()
        for stats in self.totals.values():
            out = out + stats
        return out

    def snapshot(self) -> dict[str, OpStats]:
        return dict(self.totals)

    def since(self, snapshot: dict[str, OpStats]) -> dict[str, OpStats]:
        """Per-module figures accumulated after ``snapshot`` was taken."""
        return {k: v - snapshot.get(k, OpStats()) for k, v in self.totals.items() if v != snapshot.get(k)}

    def reset(self) -> None:
        self.totals.clear()
