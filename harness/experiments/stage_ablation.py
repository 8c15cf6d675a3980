"""``snnbench ablate``: a grid over the pipeline's stages, time steps, bits and spiking operators.

Starting from a float checkpoint (trained with ``--mode ann``) and, optionally, a QAT checkpoint
of the same architecture on the same corpus, every cell builds one spiking model and measures
its test perplexity and estimated energy per token on the same tokens:

- stage: ``ann`` (float, no conversion), ``ann->snn`` (calibrated conversion of the float model),
  ``qat->snn`` (the lossless swap of the QAT model), and each SNN with stage 3 (STDP) on;
- time steps: bits 4..8 (T = 7 .. 127) for the converted models;
- spiking operators: each operator kind kept float in turn (the rest spiking).
Writes ``ablation.csv`` (one row per cell), ``ablation.md`` and ``ablation.png`` atomically.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from models.arch.spiking_config import OPERATOR_KINDS, SpikingConfig
from models.spiking.checks import check_bits
from models.convert import convert, swap_mode
from models.load import LoadedModel, load_checkpoint
from models.perplexity import token_perplexity
from models.train.data import global_batch, token_stream
from models.train.stdp import STDPConfig, mean_time_window, optimize_time_steps
from tasks.fetch import use_data_dir
from tasks.files import atomic_write_text, check_writable

from ..devices import check_device
from ..energy import EnergyPreset, count_forwards, first_sequences
from ..energy.synops import select_presets
from ..report import plots
from ..report.render import to_markdown

COUNTED_SEQUENCES = 4  # context windows of the test text whose operations are counted per cell


@dataclass
class Cell:
    stage: str
    bits: int
    keep_float: tuple[str, ...] = ()
    stdp: bool = False


def grid(has_qat: bool, bits: list[int], kinds: list[str]) -> list[Cell]:
    cells = [Cell("ann", 0)]
    sources = ["ann->snn"] + (["qat->snn"] if has_qat else [])
    for source in sources:
        for b in bits:
            cells.append(Cell(source, b))
        cells.append(Cell(source, 8, stdp=True))
    for kind in kinds:
        cells.append(Cell(sources[-1], 8, keep_float=(kind,)))
    return cells


def _checkpoints(args: argparse.Namespace) -> tuple[LoadedModel, LoadedModel | None]:
    """The float checkpoint and the optional QAT one, each checked to be in its mode."""
    ann = load_checkpoint(args.ann)
    qat = load_checkpoint(args.qat) if args.qat else None
    if ann.model.mode != "ann":
        raise ValueError(f"--ann {args.ann}: holds a model in mode {ann.model.mode}; give a float (ann) checkpoint")
    if qat is not None and qat.model.mode != "qat":
        raise ValueError(f"--qat {args.qat}: holds a model in mode {qat.model.mode}; give a QAT checkpoint")
    return ann, qat


def _cell_model(cell: Cell, ann: LoadedModel, qat: LoadedModel | None, calibration: list, granularity: str):
    """The model of one cell: the float one, its calibrated conversion, or the QAT one swapped to spiking operators."""
    if cell.stage == "ann":
        return ann.model
    if cell.stage == "ann->snn":
        spiking = SpikingConfig(bits=cell.bits or 8, keep_float=cell.keep_float, linear_granularity=granularity, norm_granularity=granularity)
        return convert(ann.model, calibration, spiking).snn
    base = swap_mode(qat.model, qat.model.spiking.with_mode("qat", bits=cell.bits, time_steps=None, keep_float=cell.keep_float))
    return swap_mode(base, base.spiking.with_mode("snn-fused"))


@dataclass(frozen=True)
class AblationPlan:
    """The checked flags of ``snnbench ablate``."""

    bits: list[int]
    kinds: list[str]
    preset: EnergyPreset
    device: str
    out: Path


def plan_ablation(args: argparse.Namespace) -> AblationPlan:
    """Every flag checked (one-line errors naming it) and --out checked writable, before any checkpoint is read."""
    try:
        bits = [check_bits(int(b), "--bits") for b in args.bits.split(",") if b.strip()]
    except ValueError as err:
        raise ValueError(str(err) if "--bits" in str(err) else f"--bits expects bit widths separated by commas (e.g. 4,6,8), got {args.bits!r}") from None
    kinds = [k.strip() for text in ([args.keep_float] if isinstance(args.keep_float, str) else args.keep_float or []) for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in OPERATOR_KINDS]
    if unknown or not bits:
        raise ValueError(f"--keep-float: unknown operator kinds {unknown}; known: {', '.join(OPERATOR_KINDS)}" if unknown else "--bits names no bit width")
    for flag, value, least in (("--window", args.window, 2), ("--eval-tokens", args.eval_tokens, args.window), ("--stdp-steps", args.stdp_steps, 0)):
        if value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    (preset,) = select_presets(args.energy_presets, args.energy_presets_file, one=True)
    return AblationPlan(bits, kinds, preset, check_device(args.device), check_writable(args.out, "--out"))


def run_stage_ablation(args: argparse.Namespace, say: Callable[[str], None]) -> tuple[Path, float]:
    """Every cell of the grid measured; the tables and the time-step plot written. Returns (folder, seconds)."""
    plan = plan_ablation(args)
    use_data_dir(args.data_dir)
    started = time.perf_counter()
    ann, qat = _checkpoints(args)
    for loaded in (ann, qat):
        if loaded is not None:
            loaded.model.to(plan.device)
    tokenizer = ann.tokenizer
    test = token_stream(tokenizer, args.data, "test")[: args.eval_tokens].tolist()
    train = token_stream(tokenizer, args.data, "train")
    calibration = [global_batch(train, args.window, 8, 11, s)[:, :-1] for s in range(2)]
    counted = first_sequences(test, args.window, COUNTED_SEQUENCES)
    preset, kinds, bits = plan.preset, plan.kinds, plan.bits
    rows: list[dict[str, Any]] = []
    for cell in grid(qat is not None, bits, kinds):
        model = _cell_model(cell, ann, qat, calibration, args.granularity)
        time_window = None
        if cell.stdp:
            time_window = mean_time_window(optimize_time_steps(model, calibration, STDPConfig(steps=args.stdp_steps)), after=True)
        ppl = token_perplexity(model, test, context_window=args.window, batch_size=16, desc=f"{cell.stage} b{cell.bits}")["perplexity"]
        cost = count_forwards(model, [counted], [preset])
        rows.append({
            "stage": cell.stage + (" + stdp" if cell.stdp else ""),
            "bits": cell.bits or None,
            "time_steps": (2 ** (cell.bits - 1) - 1) if cell.bits else None,
            "mean_window_after_stdp": time_window,
            "float_operators": ",".join(cell.keep_float) or ("all" if cell.stage == "ann" else "none"),
            "perplexity": ppl,
            "spikes_per_token": cost.per_token("spikes"),
            "synops_per_token": cost.per_token("synops"),
            "joules_per_token": cost.joules_per_token,
            "energy_source": f"synops:{preset.name} (estimated)",
        })
        say(f"  {rows[-1]['stage']:<16} bits {cell.bits or '-':<3} float {rows[-1]['float_operators']:<10} perplexity {ppl:9.2f}  "
            f"{rows[-1]['joules_per_token']:.3e} J/token")
    out = plan.out
    _write(pd.DataFrame(rows), out, f"Ablation on {args.data} ({len(test)} test tokens)")
    return out, time.perf_counter() - started


def _write(table: pd.DataFrame, out: Path, title: str) -> None:
    """``ablation.csv``, ``ablation.md`` and the time-step sweep of the last converted stage, ``ablation.png``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ablation.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "ablation.md", to_markdown([("h2", title), ("table", table)]))
    sweep = table[(table["float_operators"] == "none") & (~table["stage"].str.contains("stdp")) & table["bits"].notna()]
    last = sweep["stage"].iloc[-1] if len(sweep) else None
    if last is not None:
        plots.sweep(sweep[sweep["stage"] == last], "time_steps", out / "ablation.png", f"{last}: time-step sweep")
