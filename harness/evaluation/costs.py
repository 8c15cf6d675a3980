"""A task's cost as the JSON record of its ``cost.json``: counted operations, and energy kept apart by kind.

Every rank's costs of a task are merged first (``merge_ranks``); the record then gives the task's
total and each leaf task's share, each with its measured entries (a meter read around every
forward, or once per task for CodeCarbon, split by forward time) and its estimated ones (counted
operations x each preset, arithmetic + memory traffic under each memory preset as a low-high range,
CodeCarbon's TDP fallback), each entry naming its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.spiking.counters import OpStats

from ..energy import EnergyPreset, EnergyReading, estimate
from ..energy.memory import MemoryPreset, Variant, memory_estimate
from .accounting import TaskCost


@dataclass(frozen=True)
class MemoryPricing:
    """What the memory-aware estimate of a mode needs: the presets, what is priced (the ANN at its float format, the SNN
    at b-bit integers), the model's parameters and the largest key/value cache one sequence keeps."""

    presets: tuple[MemoryPreset, ...]
    variant: Variant
    parameters: int
    cache_elements: int

    def entries(self, ops: OpStats, tokens: int) -> list[dict[str, Any]]:
        """One estimated entry per preset: the range's middle as ``joules``, the range, the assumptions."""
        if tokens < 1:
            return []
        out = []
        for preset in self.presets:
            e = memory_estimate({"all operators": ops}, preset, self.variant, self.parameters, tokens, self.cache_elements)
            described = e.as_dict()
            out.append({"source": e.source, "joules": (e.low + e.high) / 2, "joules_low": e.low, "joules_high": e.high,
                        "attributed": f"counted operations x memory preset ({self.variant.label}; joules: the middle of the range)",
                        "assumptions": preset.assumptions(), "components": described["components"],
                        "weights": described["weights"], "cache": described["cache"]})
        return out


def cost_record(cost: TaskCost, presets: list[EnergyPreset], task_readings: list[dict[str, Any]] | None = None,
                memory: MemoryPricing | None = None) -> dict[str, Any]:
    """A cost as JSON: counted operations, and energy kept apart by kind, each entry with its source."""
    measured = []
    for source, joules in cost.measured_joules.items():
        entry: dict[str, Any] = {"source": source, "joules": joules, "attributed": "per forward, by token share"}
        if source in cost.idle_joules:
            entry.update(idle_joules=cost.idle_joules[source], joules_above_idle=joules - cost.idle_joules[source])
        measured.append(entry)
    estimated = [{"source": k, "joules": v, "attributed": "per forward, by token share"} for k, v in cost.estimated_joules.items()]
    for reading in task_readings or []:
        (measured if reading["kind"] == "measured" else estimated).append({k: v for k, v in reading.items() if k != "kind"})
    for preset in presets:
        e = estimate(cost.ops, preset)
        estimated.append({"source": e.source, "joules": e.joules, "attributed": "counted operations x preset",
                          "parts": {k: v for k, v in e.as_dict().items() if k not in ("joules", "source", "kind", "citation")}})
    if memory is not None:
        estimated.extend(memory.entries(cost.ops, cost.tokens))
    return {"tokens": cost.tokens, "forwards": cost.forwards, "seconds": cost.seconds, "ops": cost.ops.as_dict(),
            "measured": measured, "estimated": estimated}


def split_reading(reading: EnergyReading, share: float) -> dict[str, Any] | None:
    """A per-task meter reading (CodeCarbon) as a cost entry, ``share`` of it; None without joules."""
    if reading.joules is None:
        return None
    return {"kind": reading.kind, "source": reading.source, "joules": reading.joules * share, "seconds": reading.seconds * share,
            "attributed": "one window per task" + (f", {share:.4g} of it by forward time" if share != 1 else ""),
            "details": {k: v for k, v in reading.details.items() if "joules" not in k}}


def merge_ranks(ranks: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, TaskCost], dict[str, dict[str, Any]]]:
    """(leaf task -> cost, module -> op counts) summed over every rank's (costs, op counts by module)."""
    costs: dict[str, TaskCost] = {}
    module_totals: dict[str, dict[str, Any]] = {}
    for rank_costs, rank_modules in ranks:
        for name, cost in rank_costs.items():
            costs[name] = costs[name].merge(TaskCost.from_dict(cost)) if name in costs else TaskCost.from_dict(cost)
        for name, stats in rank_modules.items():
            module_totals[name] = {k: module_totals.get(name, {}).get(k, 0) + v for k, v in stats.items() if k != "activation_sparsity"}
    return costs, module_totals


def task_record(task: Any, wall: float, processes: int, costs: dict[str, TaskCost], module_totals: dict[str, dict[str, Any]],
                readings: list[EnergyReading], presets: list[EnergyPreset], memory: MemoryPricing | None = None) -> dict[str, Any]:
    """The cost.json record of ``task`` (a ``SuiteTask``): its total and each leaf task's cost."""
    total = TaskCost()
    for cost in costs.values():
        total = total.merge(cost)
    if module_totals:  # the exact count (shares of mixed batches are rounded per task)
        total.ops = sum((OpStats(**s) for s in module_totals.values()), OpStats())
    forward_seconds = sum(c.seconds for c in costs.values()) or 1.0
    subtasks = {name: cost_record(cost, presets, [r for r in (split_reading(x, cost.seconds / forward_seconds) for x in readings) if r], memory)
                for name, cost in costs.items()}
    return {"task": task.task, "num_fewshot": task.num_fewshot, "wall_seconds": wall, "processes": processes,
            "total": cost_record(total, presets, [r for r in (split_reading(x, 1.0) for x in readings) if r], memory), "subtasks": subtasks}
