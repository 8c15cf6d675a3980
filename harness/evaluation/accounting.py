"""Per-forward accounting inside the lm-eval adapter: time, measured energy and counted operations.

Every model forward is measured on its own (``Accounting.forward_pass``): the energy meters
(NVML, RAPL) are read at its start and end, and the op counters' totals are diffed. The
forward's figures are split among the tasks of the requests in it in proportion to their
tokens, so a report can give joules and SynOps per token and per task. Measured joules are kept per meter source; estimated figures are computed
later from the counted operations, never mixed with measured ones.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from models.spiking.counters import OpCounter, OpStats


@dataclass
class TaskCost:
    """What one task cost: tokens, forwards, seconds, counted operations and energy per meter source.

    ``idle_joules[source]`` is the idle power of a measured source times the seconds it measured,
    so ``measured_joules[s] - idle_joules[s]`` is the energy above idle (both are reported).
    """

    tokens: int = 0
    forwards: int = 0
    seconds: float = 0.0
    ops: OpStats = field(default_factory=OpStats)
    measured_joules: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    estimated_joules: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    idle_joules: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def merge(self, other: "TaskCost") -> "TaskCost":
        """The sum of two costs (e.g. two ranks' shares of a task)."""
        out = TaskCost(self.tokens + other.tokens, self.forwards + other.forwards, self.seconds + other.seconds, self.ops + other.ops)
        for name in ("measured_joules", "estimated_joules", "idle_joules"):
            target = getattr(out, name)
            for part in (getattr(self, name), getattr(other, name)):
                for source, joules in part.items():
                    target[source] += joules
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "forwards": self.forwards, "seconds": self.seconds, "ops": self.ops.as_dict(),
                "measured_joules": dict(self.measured_joules), "estimated_joules": dict(self.estimated_joules),
                "idle_joules": dict(self.idle_joules)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskCost":
        ops = OpStats(**{k: v for k, v in d["ops"].items() if k in OpStats.__dataclass_fields__})
        out = cls(d["tokens"], d["forwards"], d["seconds"], ops)
        for name in ("measured_joules", "estimated_joules", "idle_joules"):
            getattr(out, name).update(d.get(name, {}))
        return out


def _scaled(stats: OpStats, share: float) -> OpStats:
    return OpStats(**{k: round(v * share) if isinstance(v, int) else v for k, v in stats.__dict__.items()})


class Accounting:
    """The adapter's forwards, each measured: ``meters`` are read around every forward, ops counted when ``count_ops``."""

    def __init__(self, model: nn.Module, meters: list[Any] | None = None, count_ops: bool = True) -> None:
        self.model = model
        self.meters = list(meters or [])
        self.count_ops = count_ops
        self.tasks: dict[str, TaskCost] = defaultdict(TaskCost)
        self._counter: OpCounter | None = None
        self.notes: list[str] = []

    def counter(self) -> OpCounter | None:
        """The op counter of this accounting (started on first use), or None when ops are not counted."""
        return self._ensure_counter() if self.count_ops else None

    def _ensure_counter(self) -> OpCounter:
        if self._counter is None:
            self._counter = OpCounter(self.model).__enter__()
        return self._counter

    def close(self) -> None:
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None
        for meter in self.meters:
            meter.close()

    @contextmanager
    def forward_pass(self, tasks: list[str], tokens: list[int]) -> Iterator[None]:
        """One forward: ``tasks[i]`` spent ``tokens[i]`` tokens of it."""
        counter = self._ensure_counter() if self.count_ops else None
        before = counter.total() if counter is not None else None
        for meter in self.meters:
            meter.start()
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        readings = [meter.stop() for meter in self.meters]
        ops = counter.total() - before if counter is not None else OpStats()
        total = sum(tokens)
        for task, n in zip(tasks, tokens):
            share = n / total if total else 1.0 / len(tasks)
            cost = self.tasks[task]
            cost.tokens += n
            cost.forwards += 1
            cost.seconds += seconds * share
            cost.ops = cost.ops + _scaled(ops, share)
            for reading in readings:
                if reading.joules is not None:
                    target = cost.measured_joules if reading.kind == "measured" else cost.estimated_joules
                    target[reading.source] += reading.joules * share
                    if reading.idle_watts is not None and reading.kind == "measured":
                        cost.idle_joules[reading.source] += reading.idle_watts * reading.seconds * share

    def totals(self) -> TaskCost:
        out = TaskCost()
        for cost in self.tasks.values():
            out = out.merge(cost)
        return out
