"""Benchmark 3: what exact simulation costs: each spiking operator time-stepped (``snn``) against its closed form."""

from __future__ import annotations

from collections.abc import Callable

import torch

from models.arch.spiking_config import SpikingConfig
from models.spiking import SNNMatmul, SNNMultiply, SNNRMSNorm, SNNSiLU, SNNSoftmax, Synapsis

from .table import Row, Side
from .timing import no_grad_per_call, paired_ratios, paired_times, summarize
from .workload import QUICK, Context, Sizes


def _operator_pairs(sizes: Sizes, tiny: bool) -> list[tuple[str, Callable[[str], torch.nn.Module], tuple[torch.Tensor, ...]]]:
    """(kind, factory(mode), inputs) at SmolLM2-135M's dimensions (or tiny ones with --quick)."""
    d, f, heads, hd = (576, 1536, 9, 64) if not tiny else (64, 128, 2, 32)
    L = sizes.op_tokens
    spiking = SpikingConfig(bits=8)
    spec = spiking.spec("token", "linear")
    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    weights = torch.randn(f, d, generator=gen) * d**-0.5
    norm_weight = 1 + 0.1 * torch.randn(d, generator=gen)

    def synapsis(mode: str) -> torch.nn.Module:
        s = Synapsis(d, f, bias=False, pre=spec, post=None, mode=mode)
        s.weight.data.copy_(weights)
        return s

    def norm(mode: str) -> torch.nn.Module:
        n = SNNRMSNorm(d, 1e-5, input_spec=spec, mode=mode)
        n.weight.data.copy_(norm_weight)
        return n

    return [
        (f"Synapsis {d}->{f}", synapsis, (randn(1, L, d),)),
        (f"SNNMatmul QK^T {heads}x{L}x{hd}", lambda p: SNNMatmul(spec, spec, mode=p), (randn(1, heads, L, hd), randn(1, heads, hd, L))),
        (f"SNNSoftmax {heads}x{L}x{L}", lambda p: SNNSoftmax(-1, input_spec=spec, mode=p), (randn(1, heads, L, L, scale=3.0),)),
        (f"SNNSiLU {L}x{f}", lambda p: SNNSiLU(spiking.T, 8.0, mode=p), (randn(1, L, f, scale=3.0),)),
        (f"SNNMultiply {L}x{f}", lambda p: SNNMultiply(spec, spec, mode=p), (randn(1, L, f), randn(1, L, f))),
        (f"SNNRMSNorm {d}", norm, (randn(1, L, d, scale=2.0),)),
    ]


def stepped_vs_fused(ctx: Context) -> list[Row]:
    """3: each spiking operator time-stepped (snn) against its closed form (snn-fused), same inputs, outputs compared."""
    T = SpikingConfig(bits=8).T
    rows = []
    for i, (kind, factory, inputs) in enumerate(_operator_pairs(ctx.sizes, ctx.tiny or ctx.sizes is QUICK)):
        stepped, fused = factory("snn").eval(), factory("snn-fused").eval()
        with torch.no_grad():
            equal = torch.equal(stepped(*inputs), fused(*inputs))

        def call(op: torch.nn.Module, inputs: tuple[torch.Tensor, ...] = inputs):
            return no_grad_per_call(lambda: op(*inputs), ctx.sizes.op_min_seconds)

        t_snn, t_fused = paired_times(call(stepped), call(fused), ctx.repeats)
        row = Row(f"3{'abcdefgh'[i]}", f"{kind}, T={T}", Side("snn", "ms/call", summarize([t * 1e3 for t in t_snn])),
                  Side("snn-fused", "ms/call", summarize([t * 1e3 for t in t_fused])), summarize(paired_ratios(t_snn, t_fused)),
                  "slowdown", "time snn / snn-fused")
        row.notes.append(f"outputs of the two paths {'bit-identical' if equal else 'DIFFERENT'}; inputs {', '.join(str(tuple(x.shape)) for x in inputs)}")
        rows.append(row)
    return rows
