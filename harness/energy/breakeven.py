"""Break-even of an SNN against an ANN: the time window T and the spike rate at which they cost the same.

A memory-aware estimate (``memory.py``) splits the SNN's energy per token into parts that are
fixed (float work, activations, weights read once per token), parts that grow with the time
steps (membranes, bitmaps, per-step weight reads) and parts that grow with the spikes (ACs,
address events, per-event weight reads):

    E(T, r) = F + (T / T0) S + (T / T0)(r / r0) P

measured at the model's window T0 and spike rate r0 (spikes per neuron time step). Spikes
grow with T at a fixed rate, so both S and P scale with T. The break-evens against an ANN's
E_ann solve E = E_ann in closed form:

    T*  = T0 (E_ann - F) / (S + P)              (at the measured spike rate)
    r*  = r0 (E_ann - F - S) / P                (at the measured window)

T* <= 0 or r* <= 0: the fixed part alone costs more than the ANN (the SNN never wins);
r* >= 1: it wins at any spike rate a neuron can have (one spike per step).
Each figure comes as a pair, under the preset's low and high prices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .memory import MemoryEstimate


@dataclass(frozen=True)
class Linear:
    """Energy per token of one SNN estimate under one bound: fixed, per-step and per-spike parts (J/token) at T0, r0."""

    fixed: float
    steps: float
    spikes: float
    T0: float
    rate0: float

    def at_steps(self, T: float | np.ndarray) -> float | np.ndarray:
        """E(T) at the measured spike rate."""
        return self.fixed + (T / self.T0) * (self.steps + self.spikes)

    def breakeven_steps(self, ann: float) -> float:
        """T* with E(T*) = ``ann`` (nan when nothing grows with T)."""
        growing = self.steps + self.spikes
        return self.T0 * (ann - self.fixed) / growing if growing > 0 else math.nan

    def breakeven_rate(self, ann: float) -> float:
        """r* with E(r*) = ``ann`` at T0 (nan without spikes to scale)."""
        return self.rate0 * (ann - self.fixed - self.steps) / self.spikes if self.spikes > 0 and self.rate0 > 0 else math.nan


def linear(estimate: MemoryEstimate, T0: float, spikes: float, neuron_steps: float) -> tuple[Linear, Linear]:
    """(low, high) linear forms of ``estimate`` per token; ``spikes``/``neuron_steps`` of the same counts give r0."""
    parts = estimate.by_scaling()
    tokens = estimate.tokens
    rate0 = spikes / neuron_steps if neuron_steps else 0.0
    return tuple(  # type: ignore[return-value]
        Linear(parts["fixed"][i] / tokens, parts["steps"][i] / tokens, parts["spikes"][i] / tokens, T0, rate0) for i in (0, 1)
    )


def verdict(snn: tuple[float, float], ann: tuple[float, float]) -> str:
    """Whether the SNN costs at most what the ANN costs under both price bounds (low with low, high with high), neither, or one."""
    wins = [s <= a for s, a in zip(snn, ann)]
    return "wins" if all(wins) else "loses" if not any(wins) else "depends"


def curve(form: Linear, steps: np.ndarray) -> np.ndarray:
    """E(T) on the grid ``steps``: the line the plot draws."""
    return np.asarray(form.at_steps(np.asarray(steps, dtype=float)), dtype=float)


def crossing(steps: np.ndarray, energy: np.ndarray, ann: float) -> float:
    """Where the drawn line ``energy(steps)`` crosses ``ann`` (linear interpolation between grid points; nan if it does not)."""
    diff = np.asarray(energy, dtype=float) - ann
    for i in range(len(steps) - 1):
        if diff[i] == 0:
            return float(steps[i])
        if diff[i] * diff[i + 1] < 0:
            return float(steps[i] + (steps[i + 1] - steps[i]) * (-diff[i]) / (diff[i + 1] - diff[i]))
    return float(steps[-1]) if diff[-1] == 0 else math.nan
