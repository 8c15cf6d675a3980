"""Benchmark 5: model FLOP utilization of the ``ann`` forward: analytic FLOPs against the measured fp32 matmul peak."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .table import Goal, Row, Side
from .timing import paired_ratios, per_call, summarize, timed
from .workload import Context


def llama_matmul_params(config: Any) -> int:
    """Weights that multiply activations in a Llama forward: the 7 projections of every layer and
    the language-model head (the embedding is a lookup, norms and biases are not matmuls)."""
    d, f, hd = config.hidden_size, config.intermediate_size, config.dims_per_head
    q_out, kv_out = config.num_attention_heads * hd, config.num_key_value_heads * hd
    per_layer = d * q_out + 2 * d * kv_out + q_out * d + 3 * d * f
    return config.num_hidden_layers * per_layer + d * config.vocab_size


def llama_forward_flops(config: Any, batch: int, seq_len: int) -> dict[str, int]:
    """Analytic FLOPs of one forward over ``batch`` sequences of ``seq_len`` tokens (no cache):
    2 x params-in-matmuls x tokens, plus attention 4 x L^2 x (heads x head_dim) per layer
    (QK^T and P.V, 2 FLOPs per multiply-add, the full L x L square as is customary)."""
    tokens = batch * seq_len
    dense = 2 * llama_matmul_params(config) * tokens
    attention = config.num_hidden_layers * 4 * batch * seq_len**2 * config.num_attention_heads * config.dims_per_head
    return {"dense": dense, "attention": attention, "total": dense + attention}


def matmul_peak_timer(n: int, min_seconds: float) -> Callable[[], float]:
    """A timer returning the fp32 GFLOP/s of an n x n torch.matmul loop (the machine's practical peak)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    seconds = per_call(lambda: torch.matmul(a, b, out=out), min_seconds)
    return lambda: 2 * n**3 / seconds() / 1e9


def model_flop_utilization(ctx: Context) -> list[Row]:
    """5: analytic FLOPs of the ann forward per second, against the fp32 matmul peak measured in the same run."""
    model = ctx.loaded.model
    config = model.config
    if model.mode != "ann":
        raise ValueError(f"MFU is measured on the ann forward; the model is in mode {model.mode!r}")
    peak = matmul_peak_timer(ctx.sizes.peak_n, max(ctx.sizes.op_min_seconds, 0.2))
    rows = []
    for i, length in enumerate(ctx.sizes.mfu_lengths):
        if length > config.max_position_embeddings:
            ctx.notes.append(f"5: {length} tokens skipped, beyond the model's {config.max_position_embeddings} positions")
            continue
        gen = torch.Generator().manual_seed(ctx.seed + length)
        ids = torch.randint(0, config.vocab_size, (1, length), generator=gen)
        flops = llama_forward_flops(config, 1, length)

        def forward() -> None:
            with torch.no_grad():
                model(ids)

        forward_timer = timed(forward)
        forward_timer()  # warm-up
        peak()
        achieved, peaks = [], []
        for _ in range(ctx.repeats):
            peaks.append(peak())
            achieved.append(flops["total"] / forward_timer() / 1e9)
        row = Row(f"5{'abcdefgh'[i]}", f"MFU of the ann forward, 1 x {length} tokens",
                  Side("achieved", "GFLOP/s", summarize(achieved)), Side(f"fp32 matmul peak (n={ctx.sizes.peak_n})", "GFLOP/s", summarize(peaks)),
                  summarize(paired_ratios(achieved, peaks)), "fraction", "MFU = achieved / peak", Goal(">=", 0.40, ">= 40%"))
        row.notes.append(f"{flops['total'] / 1e9:.4g} GFLOP per forward ({flops['dense'] / 1e9:.4g} in dense matmuls incl. lm_head, "
                         f"{flops['attention'] / 1e9:.4g} in attention)")
        rows.append(row)
    return rows
