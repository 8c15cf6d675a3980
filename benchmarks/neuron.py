"""Benchmark 7: the spiking core (``EIIFNeuron``) against SpikingJelly's multi-step IF neuron, when it is installed."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import torch

from models.spiking import EIIFNeuron

from .table import Row, Side
from .timing import no_grad_per_call, paired_ratios, paired_times, summarize
from .workload import Context


def spikingjelly_if() -> tuple[Any, str]:
    """(a factory of SpikingJelly's multi-step IF neuron, its version) or (None, why not)."""
    try:
        from spikingjelly.activation_based import neuron  # optional: not a dependency
    except Exception as err:  # noqa: BLE001 - any import failure is a reason to report
        return None, f"spikingjelly not importable ({type(err).__name__}: {err}); `pip install spikingjelly` to compare"
    try:
        version = metadata.version("spikingjelly")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return (lambda: neuron.IFNode(step_mode="m")), version


def spiking_core_vs_spikingjelly(ctx: Context) -> list[Row]:
    """7: the EI-IF neuron against SpikingJelly's multi-step IF neuron, same tensors and T."""
    T, N = ctx.sizes.neuron_T, ctx.sizes.neuron_N
    gen = torch.Generator().manual_seed(ctx.seed)
    currents = torch.randn(T, N, generator=gen)
    constant = torch.randn(N, generator=gen) * (T / 4)
    constant_seq = constant.expand(T, N).contiguous()
    ours = EIIFNeuron()
    factory, version = spikingjelly_if()

    def ours_multi() -> None:
        ours.reset()
        ours.multi_step(currents)

    def ours_constant() -> None:
        ours.reset()
        ours.run_constant(constant, T)

    def ours_closed() -> None:
        ours.count_closed_form(constant, T)

    cases = [("a", "multi_step on [T, N] currents", ours_multi, currents),
             ("b", "run_constant (T steps of a constant current)", ours_constant, constant_seq),
             ("c", "count_closed_form (spike counts of a constant current)", ours_closed, constant_seq)]
    rows = []
    for suffix, what, ours_fn, sj_input in cases:
        title = f"EIIFNeuron {what}, T={T}, N={N:,}"
        ours_timer = no_grad_per_call(ours_fn, ctx.sizes.op_min_seconds)
        if factory is None:
            t = [ours_timer() for _ in range(ctx.repeats)]
            rows.append(Row(f"7{suffix}", title, Side("EIIFNeuron", "ms/call", summarize([x * 1e3 for x in t])),
                            Side("SpikingJelly IFNode", "ms/call", None, note=version), None, "speed", "speed ours / SpikingJelly"))
            continue
        node = factory()

        def sj(node=node, x=sj_input) -> None:
            node.reset()
            node(x)

        t_ours, t_sj = paired_times(ours_timer, no_grad_per_call(sj, ctx.sizes.op_min_seconds), ctx.repeats)
        row = Row(f"7{suffix}", title, Side("EIIFNeuron", "ms/call", summarize([x * 1e3 for x in t_ours])),
                  Side("SpikingJelly IFNode(step_mode='m')", "ms/call", summarize([x * 1e3 for x in t_sj])),
                  summarize(paired_ratios(t_sj, t_ours)), "speed", "speed ours / SpikingJelly")
        rows.append(row)
    if factory is not None:
        rows[0].notes.append(f"spikingjelly {version}, torch CPU implementation (cupy/triton absent), hard reset, threshold 1: "
                             "binary spikes, while EI-IF is ternary with an adaptive threshold; same tensors, same T")
    else:
        rows[0].notes.append(version)
    return rows
