"""Stage 2 on a pretrained model: ANN -> QAT -> SNN, with its audit and a perplexity check (``snnbench convert``).

Writes to ``--out`` (default ``results/convert/<model>-b<bits>-T<T>``, plus ``-<coding>`` for a coding other than rate):
- ``model/``: the converted model (safetensors + config.json + tokenizer.json), loadable with
  ``--model <that folder>``; its config records the spike coding (``--coding``), which it reloads with;
- ``audit.json`` / ``audit.txt``: the per-layer audit;
- ``convert.json``: settings, perplexities (ANN, QAT, SNN) on the evaluation text, the spiking
  coverage, the worst layers and the wall time.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from models.arch.base import spiking_coverage
from models.arch.spiking_config import SpikingConfig, parse_kind_bits
from models.audit import audit_conversion, audit_table, worst_layers, write_audit
from models.calibrate import calibration_batches
from models.convert import convert
from models.load import load_model, save_checkpoint
from models.perplexity import token_perplexity
from models.spiking.checks import check_bits, check_coding, check_time_steps, max_level
from tasks.corpus import text_ids
from tasks.fetch import use_data_dir
from tasks.files import atomic_write_json, check_writable

from ..devices import check_device
from ..energy import count_forwards
from . import StageResult


@dataclass(frozen=True)
class ConversionPlan:
    """What ``snnbench convert`` will do, every flag and --out checked before any model is loaded."""

    spiking: SpikingConfig
    out: Path
    device: str


def spiking_config(args: argparse.Namespace) -> SpikingConfig:
    """The conversion's SpikingConfig from the flags, each checked with a one-line error naming it."""
    check_bits(args.bits, "--bits")
    if args.time_steps is not None:
        check_time_steps(args.time_steps, "--time-steps", upper=max_level(args.bits))
    return SpikingConfig(
        bits=args.bits,
        time_steps=args.time_steps,
        linear_granularity=args.granularity,
        norm_granularity=args.granularity,
        kind_bits=parse_kind_bits(args.kind_bits),
        coding=check_coding(args.coding, "--coding"),
    )


def check_lengths(args: argparse.Namespace) -> None:
    """--window, --audit-windows and the token counts: enough text for at least one context window each."""
    if args.window < 2:
        raise ValueError(f"--window must be >= 2, got {args.window}")
    if args.audit_windows < 1:
        raise ValueError(f"--audit-windows must be >= 1, got {args.audit_windows}")
    for flag, tokens in (("--calibration-tokens", args.calibration_tokens), ("--eval-tokens", args.eval_tokens)):
        if tokens < args.window:
            raise ValueError(f"{flag} {tokens} is less than one --window of {args.window} tokens; raise {flag} or lower --window")


def plan_conversion(args: argparse.Namespace) -> ConversionPlan:
    """Every flag and --out checked, in order; nothing is loaded."""
    spiking = spiking_config(args)
    check_lengths(args)
    device = check_device(args.device)
    coded = "" if spiking.coding == "rate" else f"-{spiking.coding}"
    return ConversionPlan(spiking, check_writable(args.out or f"results/convert/{Path(args.model).name}-b{args.bits}-T{spiking.T}{coded}", "--out"), device)


def convert_pretrained(args: argparse.Namespace, plan: ConversionPlan, say: Callable[[str], None]) -> StageResult:
    """Convert ``args.model``, measure the three perplexities, audit every layer and save the SNN; progress to ``say``.
    The result's table: the operators with the largest relative error against the float model."""
    spiking, out = plan.spiking, plan.out
    use_data_dir(args.data_dir)
    started = time.perf_counter()
    loaded = load_model(args.model)
    if loaded.tokenizer is None:
        raise ValueError(f"model {args.model!r} has no tokenizer to read the calibration text with")
    loaded.model.to(plan.device)
    say(f"converting {loaded.name} ({loaded.model.num_parameters():,} parameters) at {args.bits} bits, T={spiking.T}, {args.granularity} scales, "
        f"{spiking.coding} coding")
    calibration = text_ids(loaded.tokenizer, args.calibration_data, "train", args.calibration_tokens)
    conversion = convert(loaded.model, calibration_batches(calibration, args.window, 2), spiking)
    evaluation = text_ids(loaded.tokenizer, args.eval_data, args.eval_split, args.eval_tokens)
    perplexity = {}
    for name, model in (("ann", loaded.model), ("qat", conversion.qat), ("snn-fused", conversion.snn)):
        perplexity[name] = token_perplexity(model, evaluation, context_window=args.window, desc=f"perplexity {name}")
        say(f"  perplexity {name:<9} {perplexity[name]['perplexity']:.3f} over {perplexity[name]['tokens']} tokens of {args.eval_data}/{args.eval_split}")
    audit_ids = calibration_batches(evaluation, args.window, 1)[: args.audit_windows]
    rows = audit_conversion(loaded.model, conversion.snn, audit_ids)
    coverage = spiking_coverage(count_forwards(conversion.snn, audit_ids[:1]).ops)
    ann_ppl, snn_ppl = perplexity["ann"]["perplexity"], perplexity["snn-fused"]["perplexity"]
    summary = {
        "model": loaded.name,
        "source": loaded.source,
        "spiking": conversion.snn.spiking.to_dict(),
        "calibration": {"data": args.calibration_data, "tokens": len(calibration)},
        "evaluation": {"data": args.eval_data, "split": args.eval_split, "window": args.window},
        "perplexity": perplexity,
        "snn_vs_ann_perplexity_change": snn_ppl / ann_ppl - 1,
        "qat_equals_snn": math.isclose(perplexity["qat"]["nll"], perplexity["snn-fused"]["nll"], rel_tol=0, abs_tol=0),
        "spiking_coverage": coverage,
        "worst_layers": [r.name for r in worst_layers(rows)],
        "seconds": time.perf_counter() - started,
    }
    save_checkpoint(conversion.snn, out / "model", loaded.tokenizer, extra={"name": f"{loaded.name}-snn", "converted": summary}, special_tokens=loaded.special_tokens())
    write_audit(rows, out, extra={"model": loaded.name})
    atomic_write_json(out / "convert.json", summary)
    return StageResult(summary, audit_table(worst_layers(rows)), out)
