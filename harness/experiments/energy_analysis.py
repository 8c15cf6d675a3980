"""Energy that holds up (``snnbench energy``): arithmetic-only and memory-aware estimates, iso-precision ANN
baselines, three spike codings and the break-even, for one pretrained model at one bit width.

Counted on the same tokens (the first windows of a held-out text), in two phases (prefill: every token
of a window at once; decode: the last token generated after the rest, reading the key/value cache):
the float model (its counts price the ANN at fp32, fp16 and b-bit integers: the iso-precision baseline
of Yan et al. 2024), the SNN at b bits once per spike coding (rate, bitwise, multilevel: the same
counts n, other spike trains). Each variant is priced under every memory preset (``harness/energy/memory.toml``): the
arithmetic alone and arithmetic + memory as a low-high range, per token; for the SNN, the break-even
window T* and spike rate r* against the iso-precision ANN (``harness/energy/breakeven.py``).

Writes to ``--out``: ``counts/<variant>.json`` as each count finishes (a killed run resumes there;
other settings are refused: ``manifest.json``), ``energy-analysis.csv``, ``energy.md`` (the table and one
sentence per preset) and ``breakeven.png`` (energy per token against T, ANN lines, the models marked).
Every figure is estimated, never measured.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from models.arch.spiking_config import SpikingConfig
from models.calibrate import calibration_batches
from models.convert import convert, swap_mode, with_coding
from models.load import LoadedModel, load_checkpoint, load_model
from models.spiking.checks import CODINGS, check_bits, coding_steps, max_level
from tasks.builders.tokenizers import check_corpus
from tasks.corpus import text_ids
from tasks.fetch import use_data_dir
from tasks.files import atomic_write_json, atomic_write_text, check_writable

from ..devices import check_device
from ..energy import first_sequences
from ..energy.counting import Counted, cache_elements, count_model
from ..energy.breakeven import linear, verdict
from ..energy.memory import MemoryEstimate, MemoryPreset, Variant, load_memory_presets, memory_estimate, precision
from ..evaluation.identity import model_identity, open_run
from ..finetuned import best_finetuned, check_started_from
from ..report.render import to_markdown
from ..runs import read_json

PHASES = ("prefill", "decode")  # every token of a window at once; one generated token after a full window


@dataclass(frozen=True)
class EnergyPlan:
    """Everything ``snnbench energy`` will do, checked before any model is loaded."""

    model: str
    bits: int
    codings: tuple[str, ...]
    presets: tuple[MemoryPreset, ...]
    snn_from: str  # a checkpoint, "auto" (best fine-tuning at these bits, else conversion) or "none" (conversion)
    count_data: str
    window: int
    counted_windows: int
    calibration_data: str
    calibration_tokens: int
    granularity: str
    out: Path
    device: str = "cpu"


def parse_list(text: str, flag: str, known: Sequence[str]) -> tuple[str, ...]:
    """A comma-separated list of names from ``known``; a one-line error naming the unknown ones."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"{flag} {text!r}: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}")
    return names


def plan_energy(args) -> EnergyPlan:
    """Every flag checked, the data checked present, --out checked writable; no model is loaded."""
    bits = check_bits(args.bits, "--bits")
    codings = parse_list(args.codings, "--codings", CODINGS)
    known = load_memory_presets(args.memory_presets_file)
    presets = parse_list(args.memory_presets, "--memory-presets", list(known)) if args.memory_presets else tuple(known)
    for flag, value, least in (("--window", args.window, 2), ("--counted-windows", args.counted_windows, 1),
                               ("--calibration-tokens", args.calibration_tokens, args.window)):
        if value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    if args.snn_from not in ("auto", "none"):
        check_snn_from(Path(args.snn_from), bits)
    use_data_dir(args.data_dir)
    check_corpus(args.count_data, ("test",))
    check_corpus(args.calibration_data, ("train",))
    device = check_device(args.device)
    out = check_writable(args.out or f"results/energy/{Path(args.model).name}-b{bits}", "--out")
    return EnergyPlan(args.model, bits, codings, tuple(known[n] for n in presets), args.snn_from, args.count_data, args.window,
                      args.counted_windows, args.calibration_data, args.calibration_tokens, args.granularity, out, device)


def settings(plan: EnergyPlan, identity: dict[str, str], snn: dict[str, Any]) -> dict[str, Any]:
    """What makes two energy runs the same run (counts of other settings are never mixed)."""
    return {"model": identity, "bits": plan.bits, "snn": snn, "count_data": plan.count_data, "window": plan.window,
            "counted_windows": plan.counted_windows,
            "calibration": {"data": plan.calibration_data, "tokens": plan.calibration_tokens, "granularity": plan.granularity}}


def run_energy(plan: EnergyPlan, say: Callable[[str], None], data_dir: str | None = None) -> tuple[pd.DataFrame, Path]:
    """Count (or keep the counts of an interrupted run of the same settings), price, write the tables and the plot."""
    use_data_dir(data_dir)
    started = time.perf_counter()
    loaded: LoadedModel = load_model(plan.model)
    if loaded.model.mode != "ann":
        raise ValueError(f"--model {plan.model}: a model in mode {loaded.model.mode}; the energy analysis starts from the float model")
    if loaded.tokenizer is None:
        raise ValueError(f"--model {plan.model}: has no tokenizer to read {plan.count_data} with")
    loaded.model.to(plan.device)
    identity = model_identity(loaded.source, loaded.name)
    snn_checkpoint = _snn_checkpoint(plan, identity)
    snn = ({"source": "fine-tuned", **model_identity(snn_checkpoint, str(snn_checkpoint))} if snn_checkpoint
           else {"source": "calibrated conversion"})
    say(f"  SNN at {plan.bits} bits: {snn_checkpoint or 'calibrated conversion (no fine-tuning found or asked for)'}")
    lock = open_run(plan.out, settings(plan, identity, snn), {"command": "energy", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                    what="energy run")
    try:
        ids = text_ids(loaded.tokenizer, plan.count_data, "test", plan.window * plan.counted_windows)
        batch = first_sequences(ids, plan.window, plan.counted_windows)
        spiking_model: list[nn.Module] = []

        def build_snn() -> nn.Module:
            if not spiking_model:
                spiking_model.append(_snn(plan, loaded, snn_checkpoint))
            return spiking_model[0]

        counts: dict[str, dict[str, Counted]] = {}
        for phase in PHASES:
            prefix = "" if phase == "prefill" else f"{phase}-"
            counts[phase] = {"ann": _counted(plan, f"{prefix}ann", lambda phase=phase: count_model(loaded.model, batch, phase), say)}
            for coding in plan.codings:
                counts[phase][coding] = _counted(plan, f"{prefix}snn-{coding}",
                                                 lambda coding=coding, phase=phase: _count_coded(build_snn(), coding, batch, phase), say)
    finally:
        lock.release()
    parameters = sum(p.numel() for p in loaded.model.parameters())
    table = pd.concat([price_variants(counts[phase], plan.presets, plan.bits, parameters, cache_elements(loaded.model, plan.window))
                       .assign(phase=phase) for phase in PHASES], ignore_index=True).assign(model=loaded.name)
    write_energy(table, plan, loaded.name, snn, time.perf_counter() - started)
    return table, plan.out


def check_snn_from(folder: Path, bits: int) -> dict[str, Any]:
    """``--snn-from``'s config, read alone: a quantization-aware checkpoint at ``bits``; one-line errors otherwise."""
    from models.load import read_config

    if not folder.is_dir():
        raise ValueError(f"--snn-from {folder}: no such checkpoint folder; give a snnbench train --init run's checkpoint, auto or none")
    config = read_config(folder)
    spiking = config.get("spiking", {})
    if spiking.get("mode", "ann") == "ann":
        raise ValueError(f"--snn-from {folder}: a float model; give the checkpoint of a snnbench train --init run (mode qat)")
    if int(spiking.get("bits", 8)) != bits:
        raise ValueError(f"--snn-from {folder}: a {spiking.get('bits', 8)}-bit model, not {bits} bits; pass --bits {spiking.get('bits', 8)}")
    return config


def _snn_checkpoint(plan: EnergyPlan, identity: dict[str, str]) -> Path | None:
    """The fine-tuned checkpoint the SNN comes from (checked to start from --model), or None for a calibrated conversion."""
    if plan.snn_from == "none":
        return None
    if plan.snn_from == "auto":
        best = best_finetuned(identity, plan.bits)
        return best.checkpoint if best is not None else None
    check_started_from(plan.snn_from, check_snn_from(Path(plan.snn_from), plan.bits), identity, plan.model)
    return Path(plan.snn_from)


def _snn(plan: EnergyPlan, loaded: LoadedModel, checkpoint: Path | None) -> nn.Module:
    """The SNN at ``plan.bits``: the fine-tuned checkpoint swapped to snn-fused, or a calibrated conversion."""
    if checkpoint is not None:
        model = load_checkpoint(checkpoint).model.to(plan.device)  # its bits checked: check_snn_from, best_finetuned
        return swap_mode(model, model.spiking.with_mode("snn-fused"))
    calibration_ids = text_ids(loaded.tokenizer, plan.calibration_data, "train", plan.calibration_tokens)
    spiking = SpikingConfig(bits=plan.bits, linear_granularity=plan.granularity, norm_granularity=plan.granularity)
    return convert(loaded.model, calibration_batches(calibration_ids, plan.window, 2), spiking).snn


def _count_coded(model: nn.Module, coding: str, batch: torch.Tensor, phase: str) -> Counted:
    """The counts of ``model`` with its neurons in spike ``coding`` (the outputs are the same in every coding)."""
    with_coding(model, coding)
    return count_model(model, batch, phase)


def _counted(plan: EnergyPlan, name: str, count: Callable[[], Counted], say: Callable[[str], None]) -> Counted:
    """``counts/<name>.json`` of an interrupted run of the same settings, else counted now and written atomically."""
    path = plan.out / "counts" / f"{name}.json"
    if path.exists():
        say(f"  {name:<16} counts kept from an earlier run of these settings")
        return Counted.from_dict(read_json(path))
    started = time.perf_counter()
    counted = count()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, counted.as_dict())
    total = counted.total()
    say(f"  {name:<16} counted {counted.tokens} tokens in {time.perf_counter() - started:.0f} s: "
        f"{total.spikes / counted.tokens:,.0f} spikes/token, {total.synops / counted.tokens:,.0f} synops/token")
    return counted


def variants(bits: int, codings: Sequence[str]) -> list[tuple[str, Variant]]:
    """(counts key, variant): the ANN at fp32, fp16 and int-b; the SNN at int-b under each coding."""
    intb = precision(f"int{bits}")
    out = [("ann", Variant("ANN fp32", precision("fp32"))), ("ann", Variant("ANN fp16", precision("fp16"))),
           ("ann", Variant(f"ANN int{bits}", intb))]
    return out + [(c, Variant(f"SNN {c} (int{bits})", intb, spiking=True, coding=c)) for c in codings]


def price_variants(counts: dict[str, Counted], presets: Sequence[MemoryPreset], bits: int, parameters: int, cache: int) -> pd.DataFrame:
    """One row per preset x variant: arithmetic-only and memory-aware J/token (low-high), spikes, steps, break-evens."""
    T = max_level(bits)
    rows = []
    for preset in presets:
        priced: dict[str, MemoryEstimate] = {}
        for key, variant in variants(bits, [c for c in CODINGS if c in counts]):
            c = counts[key]
            priced[variant.label] = memory_estimate(c.per_module, preset, variant, parameters, c.tokens, cache)
        ann_int = priced[f"ANN int{bits}"]
        ann_fp32 = priced["ANN fp32"]
        for key, variant in variants(bits, [c for c in CODINGS if c in counts]):
            e, c = priced[variant.label], counts[key]
            total = c.total()
            row: dict[str, Any] = {
                "preset": preset.name, "variant": variant.label, "precision": variant.data.name, "coding": variant.coding if variant.spiking else "",
                "arithmetic_j_per_token": e.arithmetic_only / e.tokens,
                "memory_j_per_token_low": e.per_token()[0], "memory_j_per_token_high": e.per_token()[1],
                **{f"{part}_share_high": e.component(part)[1] / e.high for part in ("arithmetic", "weights", "cache", "membrane", "spikes", "activations")},
                "weights_in": e.where.weights_where, "tokens": e.tokens,
                "spikes_per_token": total.spikes / c.tokens, "neuron_steps_per_token": total.neuron_steps / c.tokens,
                "time_steps": coding_steps(variant.coding, T) if variant.spiking else math.nan,
                "kind": "estimated", "source": e.source, "assumptions": preset.assumptions(),
            }
            if variant.spiking:
                forms = linear(e, row["time_steps"], total.spikes, total.neuron_steps)
                for ann_label, ann in ((f"int{bits}", ann_int), ("fp32", ann_fp32)):
                    ann_per_token = ann.per_token()
                    # T* only where T is free: a bitwise or multilevel code's steps are fixed by the bit width
                    tstar = tuple(f.breakeven_steps(a) if variant.coding == "rate" else math.nan for f, a in zip(forms, ann_per_token))
                    rstar = tuple(f.breakeven_rate(a) for f, a in zip(forms, ann_per_token))
                    row.update({f"breakeven_T_vs_{ann_label}_low": tstar[0], f"breakeven_T_vs_{ann_label}_high": tstar[1],
                                f"breakeven_rate_vs_{ann_label}_low": rstar[0], f"breakeven_rate_vs_{ann_label}_high": rstar[1],
                                f"verdict_vs_{ann_label}": verdict(e.per_token(), ann_per_token)})
                row["spike_rate"] = forms[0].rate0
                for bound, form in zip(("low", "high"), forms):  # E(T, r) = fixed + (T/T0) steps + (T/T0)(r/r0) spikes, J/token
                    row.update({f"fixed_j_{bound}": form.fixed, f"steps_j_{bound}": form.steps, f"spikes_j_{bound}": form.spikes})
            rows.append(row)
    return pd.DataFrame(rows)


def _range(low: float, high: float, scale: float = 1e3) -> str:
    return f"{low * scale:.3g}-{high * scale:.3g}" if not math.isclose(low, high, rel_tol=5e-3) else f"{low * scale:.3g}"


def sentences(table: pd.DataFrame, bits: int) -> list[str]:
    """One sentence per preset (and phase): whether each coding of the SNN wins against the iso-precision and the fp32 ANN."""
    out = []
    for key, rows in table.groupby(["preset", "phase"] if "phase" in table else ["preset"], sort=False):
        preset, phase = (key[0], f", {key[1]}" if len(key) > 1 else "")
        snn = rows[rows["coding"] != ""]
        parts = []
        for _, r in snn.iterrows():
            parts.append(f"{r['coding']} {_say(r[f'verdict_vs_int{bits}'])} against int{bits} and {_say(r['verdict_vs_fp32'])} against fp32")
        out.append(f"**{preset}**{phase} ({rows.iloc[0]['assumptions']}): the SNN " + "; ".join(parts) + ".")
    return out


def _say(v: str) -> str:
    return {"wins": "wins", "loses": "loses", "depends": "wins or loses depending on the price bound"}[v]


def write_energy(table: pd.DataFrame, plan: EnergyPlan, model_name: str, snn: dict[str, Any], seconds: float) -> None:
    """``energy.csv``, ``energy.md`` (the table and one sentence per preset) and ``breakeven.png``."""
    from ..report import plots

    atomic_write_text(plan.out / "energy-analysis.csv", table.to_csv(index=False, float_format="%.10g"))
    shown = pd.DataFrame({
        "phase": table["phase"], "preset": table["preset"], "variant": table["variant"],
        "arithmetic mJ/token": [f"{v * 1e3:.3g}" for v in table["arithmetic_j_per_token"]],
        "memory-aware mJ/token (low-high)": [_range(lo, hi) for lo, hi in zip(table["memory_j_per_token_low"], table["memory_j_per_token_high"])],
        "T": ["" if math.isnan(t) else f"{t:.0f}" for t in table["time_steps"]],
        "spikes/token": [f"{s:,.0f}" if c else "" for s, c in zip(table["spikes_per_token"], table["coding"])],
        "spike rate": [f"{r:.3g}" if c else "" for r, c in zip(table.get("spike_rate", [math.nan] * len(table)), table["coding"])],
        f"break-even spike rate vs int{plan.bits} (low / high prices)": [_breakeven(table, i, f"breakeven_rate_vs_int{plan.bits}", rate=True)
                                                                         for i in range(len(table))],
        f"break-even T vs int{plan.bits} (low / high prices)": [_breakeven(table, i, f"breakeven_T_vs_int{plan.bits}") for i in range(len(table))],
    })
    plot = plots.breakeven(table, plan.out / "breakeven.png", plan.bits, model_name)
    lines = [
        f"## Energy of {model_name} at {plan.bits} bits: ANN baselines and SNN codings", "",
        f"SNN: {snn['source']}{' ' + snn.get('path', '') if snn.get('path') else ''}. Counted on {plan.counted_windows} windows of {plan.window} "
        f"tokens of the {plan.count_data} test split: prefill (all their tokens at once, per token) and decode (their last token generated "
        "after the others, per generated token: the key/value cache is read). Every figure is **estimated** "
        "(Horowitz 45 nm arithmetic per precision; memory per preset), never measured. The SNN's weights and activations are "
        f"int{plan.bits} (iso-precision with the int{plan.bits} ANN); the spike rate is spikes per neuron time step; break-evens are "
        f"against the int{plan.bits} ANN under the same bound.", "",
        to_markdown([("table", shown)]), "",
        *[f"- {s}" for s in sentences(table, plan.bits)], "",
        f"![break-even](breakeven.png)\n\n{plot}" if plot else "No break-even plot: it draws the rate coding over T, and --codings had no rate.",
        "", f"{seconds:.0f} s.",
    ]
    atomic_write_text(plan.out / "energy.md", "\n".join(lines) + "\n")


def _breakeven(table: pd.DataFrame, i: int, column: str, rate: bool = False) -> str:
    """``low / high`` of a break-even column for the table: "never" at or below 0 (the SNN's fixed part alone costs more),
    "any" for a spike rate above 1 (it wins at every rate a neuron can have)."""
    if not table["coding"].iloc[i]:
        return ""

    def say(v: float) -> str:
        return "-" if math.isnan(v) else "never" if v <= 0 else "any" if rate and v > 1 else f"{v:.3g}"

    return f"{say(table[f'{column}_low'].iloc[i])} / {say(table[f'{column}_high'].iloc[i])}"
