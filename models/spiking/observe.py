"""Encoding observers: what each operator's spike coding did to its inputs (for the conversion audit).

Wherever an operator spike-codes an input (x -> v = x / s -> counts n in [-T, T]) it calls
``encoded(module, v, n, T, scale)`` when an observer is active. The observer keeps, per
operator, running totals only: values coded, values clipped (|v| beyond T + 1/2, i.e. beyond
T * scale), the largest count (the time steps the layer actually needs: later steps are
silent) and the mean scale. Like the op counters, it costs a list check when off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .counters import Collector, module_name

_ACTIVE: list["EncodingObserver"] = []


@dataclass
class EncodingStats:
    values: int = 0
    clipped: int = 0
    max_count: int = 0
    scale_sum: float = 0.0
    scale_values: int = 0

    @property
    def clip_rate(self) -> float:
        return self.clipped / self.values if self.values else float("nan")

    @property
    def mean_scale(self) -> float:
        return self.scale_sum / self.scale_values if self.scale_values else float("nan")


def observing() -> bool:
    return bool(_ACTIVE)


def encoded(module: nn.Module, v: torch.Tensor, n: torch.Tensor, time_steps: int, scale: torch.Tensor) -> None:
    """Record one coding of ``v`` (input / scale) into counts ``n`` by ``module``."""
    name = module_name(module)
    v = v.detach()
    clipped = int((v.abs() >= time_steps + 0.5).sum())
    max_count = int(n.detach().abs().max()) if n.numel() else 0
    scale = scale.detach().float()
    for observer in _ACTIVE:
        stats = observer.stats.setdefault(name, EncodingStats())
        stats.values += v.numel()
        stats.clipped += clipped
        stats.max_count = max(stats.max_count, max_count)
        stats.scale_sum += float(scale.sum())
        stats.scale_values += scale.numel()


class EncodingObserver(Collector):
    """Collects EncodingStats per operator while active; ``model`` names operators by path."""

    active = _ACTIVE

    def __init__(self, model: nn.Module | None = None) -> None:
        super().__init__(model)
        self.stats: dict[str, EncodingStats] = {}
