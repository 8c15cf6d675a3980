"""Tidy tables of a run folder (pandas), rebuilt from its finished tasks.

- ``metrics.csv``: one row per model x mode x task x metric x filter: the value, lm-eval's
  standard error and the number of documents. No cost columns: a task's cost is not repeated
  on each of its metric rows.
- ``cost.csv``: one row per model x mode x leaf task x figure: ``kind`` (counted, timed,
  measured, estimated), ``source`` (the counters, the clock, a meter, a preset), ``quantity``,
  ``unit`` and ``value``, with the task's tokens and the value per token. Rows are leaf tasks
  only (a group's cost is the sum of its members' rows), so any sum over rows is correct.
- ``energy.csv``: one row per model x mode x leaf task x energy source: joules, and for meters
  with a measured idle power the idle share and the joules above idle, both labelled; a memory-aware
  estimate (``memory:<preset>``) gives its range in ``joules_low`` / ``joules_high`` (``joules`` is its middle).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.files import atomic_write_text

from ..runs import read_json

SKIP_KEYS = {"alias", "name", "sample_len", "sample_count", " "}
COUNTED = {"spikes": "spikes", "neuron_steps": "neuron steps", "Effective_ACs": "ops", "Effective_MACs": "ops", "Dense": "ops", "float_ops": "ops"}
RUN_FILES = ("metrics.csv", "cost.csv", "energy.csv")


def _group_members(results: dict[str, Any], task: str) -> list[str]:
    """The leaf tasks under ``task`` (itself if it is a leaf)."""
    members = results.get("group_subtasks", {}).get(task)
    if not members:
        return [task]
    out = []
    for m in members:
        out.extend(_group_members(results, m))
    return out


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _documents(results: dict[str, Any], task: str) -> float:
    """Documents behind ``task``'s metrics: lm-eval's effective sample count, summed over a group's members."""
    n_samples = results.get("n-samples", {})
    counts = [(n_samples.get(m) or {}).get("effective") for m in _group_members(results, task)]
    counts = [c for c in counts if isinstance(c, int)]
    return float(sum(counts)) if counts else math.nan


def metric_rows(results: dict[str, Any], common: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task x metric x filter of an lm-eval results dict."""
    rows = []
    for task, values in results.get("results", {}).items():
        for key, value in values.items():
            if key in SKIP_KEYS or "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            rows.append({**common, "task": task, "alias": str(values.get("alias", task)).strip(), "metric": metric, "filter": filt,
                         "value": float(value), "stderr": _number(values.get(f"{metric}_stderr,{filt}")), "documents": _documents(results, task)})
    return rows


COST_KEYS = ("tokens", "seconds", "ops", "measured", "estimated")


def _cost_of(cost: Any, path: Path) -> dict[str, dict[str, Any]]:
    """Leaf task -> its cost entry; a one-line error when the file is not a cost record."""
    subtasks = cost.get("subtasks") if isinstance(cost, dict) else None
    if isinstance(subtasks, dict) and not subtasks and isinstance(cost.get("total"), dict):
        subtasks = {cost.get("task", path.parent.name): cost["total"]}
    if not isinstance(subtasks, dict):
        raise ValueError(f"{path}: not a cost record (no 'subtasks'); delete it to run that task again")
    for leaf, entry in subtasks.items():
        missing = [k for k in COST_KEYS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise ValueError(f"{path}: the cost of {leaf} lacks {', '.join(missing)}; delete the file to run that task again")
    return subtasks


def cost_rows(leaf: str, entry: dict[str, Any], common: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure of one leaf task's cost entry, one row each."""
    tokens = entry["tokens"]
    base = {**common, "task": leaf, "tokens": tokens}

    def row(kind: str, source: str, quantity: str, unit: str, value: float) -> dict[str, Any]:
        return {**base, "kind": kind, "source": source, "quantity": quantity, "unit": unit, "value": value,
                "per_token": value / tokens if tokens and value is not None else math.nan}

    rows = [row("timed", "wall clock (model forwards)", "seconds", "s", entry["seconds"])]
    rows += [row("counted", "op counters", name, unit, entry["ops"].get(name, 0)) for name, unit in COUNTED.items()]
    for kind in ("measured", "estimated"):
        for e in entry[kind]:
            rows.append(row(kind, e["source"], "energy", "J", _number(e.get("joules"))))
            if "joules_low" in e:  # a range: its ends beside the middle
                rows.append(row(kind, e["source"], "energy, low end", "J", _number(e.get("joules_low"))))
                rows.append(row(kind, e["source"], "energy, high end", "J", _number(e.get("joules_high"))))
            if "joules_above_idle" in e:
                rows.append(row(kind, e["source"], "idle energy", "J", _number(e.get("idle_joules"))))
                rows.append(row(kind, e["source"], "energy above idle", "J", _number(e.get("joules_above_idle"))))
    return rows


def energy_rows(leaf: str, entry: dict[str, Any], common: dict[str, Any]) -> list[dict[str, Any]]:
    """The energy figures of one leaf task, one row per kind x source."""
    tokens = entry["tokens"]
    rows = []
    for kind in ("measured", "estimated"):
        for e in entry[kind]:
            joules = _number(e.get("joules"))
            above = _number(e.get("joules_above_idle"))
            rows.append({**common, "task": leaf, "kind": kind, "source": e["source"], "joules": joules,
                         "joules_low": _number(e.get("joules_low")), "joules_high": _number(e.get("joules_high")),
                         "idle_joules": _number(e.get("idle_joules")), "joules_above_idle": above, "tokens": tokens,
                         "joules_per_token": joules / tokens if tokens else math.nan,
                         "joules_above_idle_per_token": above / tokens if tokens else math.nan,
                         "attributed": e.get("attributed", "")})
    return rows


def collect(root: Path, model: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(metric rows, cost rows, energy rows) of every finished task of the run folder ``root``."""
    metrics, costs, energy = [], [], []
    for cost_path in sorted(root.glob("*/*/cost.json")):
        mode, suite_task = cost_path.parent.parent.name, cost_path.parent.name
        common = {"model": model, "mode": mode, "suite_task": suite_task}
        results = read_json(cost_path.parent / "results.json")
        if not isinstance(results, dict):
            raise ValueError(f"{cost_path.parent / 'results.json'}: not lm-eval results; delete {cost_path} to run that task again")
        metrics.extend(metric_rows(results, common))
        for leaf, entry in sorted(_cost_of(read_json(cost_path), cost_path).items()):
            costs.extend(cost_rows(leaf, entry, common))
            energy.extend(energy_rows(leaf, entry, common))
    return metrics, costs, energy


def write_tables(root: Path, model: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rebuild ``metrics.csv``, ``cost.csv`` and ``energy.csv`` of a run folder from its finished tasks."""
    frames = tuple(pd.DataFrame(rows) for rows in collect(root, model))
    for name, frame in zip(RUN_FILES, frames):
        atomic_write_text(root / name, frame.to_csv(index=False))
    return frames  # type: ignore[return-value]
