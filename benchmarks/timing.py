"""Timing two sides fairly: interleaved repeats, alternating order, one warm-up each; min / median / max."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """min / median / max of a sample (and the sample itself)."""
    if not values:
        raise ValueError("summarize needs at least one value")
    vals = [float(v) for v in values]
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals), "values": vals}


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-repeat ratios n_i / d_i of two sides timed in the same repeat."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(f"paired_ratios needs two samples of the same nonzero length, got {len(numerators)} and {len(denominators)}")
    return [n / d if d else math.inf for n, d in zip(numerators, denominators)]


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    """A timer: calls ``fn`` once and returns its wall seconds."""

    def run() -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    return run


def per_call(fn: Callable[[], Any], min_seconds: float, max_calls: int = 1_000_000) -> Callable[[], float]:
    """A timer: calls ``fn`` until ``min_seconds`` have passed (at least once); returns seconds per call."""

    def run() -> float:
        calls, started = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds or calls >= max_calls:
                return elapsed / calls

    return run


def no_grad_per_call(fn: Callable[[], Any], min_seconds: float) -> Callable[[], float]:
    """``per_call`` of ``fn`` run without gradients."""

    def run() -> None:
        with torch.no_grad():
            fn()

    return per_call(run, min_seconds)


def paired_times(ours: Callable[[], float], reference: Callable[[], float], repeats: int, warmup: bool = True) -> tuple[list[float], list[float]]:
    """Run two timers ``repeats`` times, interleaved, alternating which goes first (drift and
    caches hit both sides alike); one untimed warm-up call of each first."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup:
        ours()
        reference()
    a: list[float] = []
    b: list[float] = []
    for r in range(repeats):
        if r % 2 == 0:
            a.append(ours())
            b.append(reference())
        else:
            b.append(reference())
            a.append(ours())
    return a, b
