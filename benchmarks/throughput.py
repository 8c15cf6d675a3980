"""Benchmarks 1 and 2: evaluation throughput of the adapter (ann against lm-eval's HFLM, snn-fused against ann)."""

from __future__ import annotations

from typing import Any

from .table import Goal, Row, Side
from .timing import paired_ratios, paired_times, summarize, timed
from .workload import Context, instances


def _run_requests(lm: Any, kind: str, reqs: list) -> list:
    if kind in ("arc", "arc0"):
        return lm.loglikelihood(reqs, disable_tqdm=True)
    return lm.loglikelihood_rolling(reqs, disable_tqdm=True)


def _max_diff(a: list, b: list) -> float:
    fa = [x[0] if isinstance(x, tuple) else x for x in a]
    fb = [x[0] if isinstance(x, tuple) else x for x in b]
    return max(abs(x - y) for x, y in zip(fa, fb))


KIND_LABEL = {"arc": "ARC-like loglikelihood", "rolling": "rolling perplexity", "arc0": "0-shot ARC-like loglikelihood"}


def _throughput_row(ctx: Context, row_id: str, title: str, kind: str, ours_lm: Any, ours_label: str, ref_lm: Any, ref_label: str,
                    goal: Goal | None) -> Row:
    reqs = ctx.requests()[kind]
    tokens = ctx.request_tokens(ours_lm, kind)
    results: dict[str, list] = {}

    def side(lm: Any, name: str):
        def run():
            results[name] = _run_requests(lm, kind, reqs)
        return timed(run)

    t_ours, t_ref = paired_times(side(ours_lm, "ours"), side(ref_lm, "ref"), ctx.repeats)
    row = Row(row_id, f"{title}, {KIND_LABEL[kind]}", Side(ours_label, "tok/s", summarize([tokens / t for t in t_ours])),
              Side(ref_label, "tok/s", summarize([tokens / t for t in t_ref])), summarize(paired_ratios(t_ref, t_ours)),
              "speed", "speed ratio", goal)
    row.notes.append(f"{len(reqs)} requests, {tokens:,} request tokens, batch size {ctx.batch_size}, max length {ctx.sizes.max_length}; "
                     f"max |log-likelihood difference| {_max_diff(results['ours'], results['ref']):.3g}")
    return row


def adapter_vs_hflm(ctx: Context) -> list[Row]:
    """1: the adapter in ann mode against lm-eval's HFLM on the same weights."""
    ours, hflm = ctx.adapter("ann"), ctx.hflm()
    goal = Goal(">=", 1.0, ">= 1.0x (goal 1.3x)", stretch=1.3)
    rows = [_throughput_row(ctx, f"1{s}", "adapter ann vs HFLM", kind, ours, "adapter ann", hflm, "HFLM", goal)
            for s, kind in (("a", "arc"), ("b", "rolling"))]
    rows[0].notes.append(f"HFLM: transformers LlamaForCausalLM float32, attention {ctx._cache.get('hf_attention')}, same weights")
    return rows


def spiking_vs_float(ctx: Context) -> list[Row]:
    """2: the adapter in snn-fused mode against itself in ann mode."""
    ann, fused = ctx.adapter("ann"), ctx.adapter("snn-fused")
    goal = Goal(">=", 0.8, ">= 0.8x")
    rows = [_throughput_row(ctx, f"2{s}", "adapter snn-fused vs ann", kind, fused, "snn-fused", ann, "ann", goal)
            for s, kind in (("a", "arc"), ("b", "rolling"), ("c", "arc0"))]
    for row in rows:
        row.notes[-1] = row.notes[-1].split("; max |")[0] + "; log-likelihoods differ by design (quantized model)"
    rows[0].notes.append(f"snn-fused model: {ctx._cache.get('spiking_calibration')}")
    for letter, kind, counted in (("d", "generate", True), ("e", "generate", False), ("f", "generate_long", True), ("g", "generate_long", False)):
        rows += [_generation_row(ctx, f"2{letter}{batch}", batch, goal, kind, counted) for batch in ctx.sizes.gen_batches]
    return rows


def _generation_row(ctx: Context, row_id: str, batch_size: int, goal: Goal, kind: str = "generate", counted: bool = True) -> Row:
    """Greedy generation at ``batch_size`` after short or long prompts (``kind``): generated tokens per second, op counters
    on (as ``snnbench eval`` runs, ``counted``) or off."""
    reqs = ctx.requests()[kind]
    sides = {mode: ctx.counted_adapter(mode, batch_size, counted) for mode in ("snn-fused", "ann")}
    generated: dict[str, int] = {}
    # untimed: one short batch of this size through both sides, so that a first compile of the snn-fused kernels for
    # its shapes (cached on disk afterwards; the run's total is in the kernels line) is not in the time
    warm = instances("generate_until", [(r.args[0][:200], {**r.args[1], "max_gen_toks": 2}) for r in reqs[:batch_size]], "bench_warm_up")
    for lm in sides.values():
        lm.generate_until(warm, disable_tqdm=True)

    def side(mode: str):
        def run():
            lm = sides[mode]
            generated[mode] = sum(len(lm.tok_encode(text)) for text in lm.generate_until(reqs, disable_tqdm=True))
        return timed(run)

    try:
        t_snn, t_ann = paired_times(side("snn-fused"), side("ann"), ctx.repeats, warmup=False)  # long calls: no warm-up
    finally:
        for lm in sides.values():  # the op counters stop here: a counter left active would count every later benchmark
            lm.accounting.close()
    speeds = {mode: [max(1, generated[mode]) / t for t in times] for mode, times in (("snn-fused", t_snn), ("ann", t_ann))}
    prompts = "long prompts" if kind == "generate_long" else "short prompts"
    row = Row(row_id, f"adapter snn-fused vs ann, greedy generation at batch {batch_size}, {prompts}, counters {'on' if counted else 'off'}",
              Side("snn-fused", "tok/s", summarize(speeds["snn-fused"])), Side("ann", "tok/s", summarize(speeds["ann"])),
              summarize(paired_ratios(speeds["snn-fused"], speeds["ann"])), "speed", "speed ratio", goal)
    prompt_tokens = ctx.request_tokens(sides["ann"], kind)
    row.notes.append(f"{len(reqs)} prompts, {prompt_tokens:,} prompt tokens, up to {ctx.sizes.gen_tokens} new tokens each "
                     f"(generated: ann {generated['ann']}, snn-fused {generated['snn-fused']}), batch size {batch_size}, op counters "
                     f"{'on as in snnbench eval' if counted else 'off'}; tokens/s counts generated tokens (prefill included in the time)")
    return row
