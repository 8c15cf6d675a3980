"""The accuracy / time-steps / energy frontier of a pretrained model (``snnbench frontier``).

For each bit width b (T = 2^(b-1) - 1 time steps) two SNNs of the same float model:
- ``ptq``: post-training conversion, stage 2 alone (calibrate on training text, convert);
- ``finetuned``: stage 1 first, the quantization-aware fine-tuning with distillation of
  ``snnbench train --init`` (the best finished one, ``harness/finetuned.py``), then the lossless swap;
each before and after stage 3 (STDP-inspired time-step optimization, which shortens every synapse's
time window). Each row holds held-out perplexity on every evaluation text (a WikiText sample and PTB
by default, never the training text), spikes and synaptic operations per token, the mean time window,
and the estimated energy per token under each preset (arithmetic only, as ``harness/energy``
prices it) and under each memory preset (arithmetic + memory traffic, a low-high range, the ANN at fp32 and
the SNN with b-bit weights and activations: ``harness/energy/memory.py``); the float model is the reference
row. All rows read the same tokens.

Writes to ``--out``: ``rows/<row>.json`` as each row finishes (a killed run resumes at the next row,
with the same settings only: ``manifest.json``), then ``frontier.csv``, ``frontier.md`` and
``frontier.png`` (perplexity against energy per token, one panel per preset, time steps as labels).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from models.arch.spiking_config import SpikingConfig
from models.calibrate import calibration_batches
from models.convert import convert, swap_mode
from models.load import LoadedModel, load_checkpoint, load_model
from models.perplexity import token_perplexity
from models.spiking.checks import check_bits, max_level
from models.train.stdp import STDPConfig, mean_time_window, optimize_time_steps
from tasks.builders.tokenizers import check_corpus
from tasks.corpus import text_ids
from tasks.fetch import use_data_dir
from tasks.files import atomic_write_json, atomic_write_text, check_writable

from ..devices import check_device
from ..energy import EnergyPreset, estimate, first_sequences
from ..energy.counting import cache_elements, count_model
from ..energy.synops import select_presets
from ..energy.memory import MemoryPreset, Variant, load_memory_presets, memory_estimate, precision
from ..evaluation.identity import model_identity, open_run
from ..finetuned import FineTuned, best_finetuned
from ..runs import read_json
from ..report.render import to_markdown

LEADING = ("row", "bits", "time_steps", "mean_window", "source")


@dataclass(frozen=True)
class FrontierPlan:
    """Everything ``snnbench frontier`` will do, checked before any model is loaded."""

    model: str
    bits: tuple[int, ...]
    presets: tuple[EnergyPreset, ...]
    memory: tuple[MemoryPreset, ...]
    eval_data: tuple[str, ...]
    eval_tokens: int
    window: int
    counted_windows: int
    calibration_data: str
    calibration_tokens: int
    granularity: str
    stdp: STDPConfig | None
    finetuned: dict[int, Path]  # explicit --finetuned checkpoints by bit width
    out: Path
    device: str = "cpu"


def parse_bits(text: str) -> tuple[int, ...]:
    """``"8,6,5,4"`` -> (8, 6, 5, 4), each a valid bit width; a one-line error otherwise."""
    try:
        bits = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--bits expects bit widths separated by commas (e.g. 8,6,5,4), got {text!r}") from None
    if not bits:
        raise ValueError("--bits names no bit width; e.g. --bits 8,6,5,4")
    for b in bits:
        check_bits(b, "--bits")
    return bits


def plan_frontier(args) -> FrontierPlan:
    """Every flag checked, the fine-tuned checkpoints' configs read, --out checked writable; no model is loaded."""
    bits = parse_bits(args.bits)
    presets = select_presets(args.energy_presets, args.energy_presets_file)
    device = check_device(args.device)
    for flag, value, least in (("--eval-tokens", args.eval_tokens, args.window), ("--calibration-tokens", args.calibration_tokens, args.window),
                               ("--window", args.window, 2), ("--counted-windows", args.counted_windows, 1), ("--stdp-steps", args.stdp_steps, 0)):
        if value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    finetuned = {}
    for folder in args.finetuned or []:
        b = _checkpoint_bits(Path(folder))
        if b not in bits:
            raise ValueError(f"--finetuned {folder}: a {b}-bit model, and --bits {args.bits} does not include {b}")
        finetuned[b] = Path(folder)
    use_data_dir(args.data_dir)
    for corpus, split in [(d, "test") for d in args.eval_data.split(",") if d] + [(args.calibration_data, "train")]:
        check_corpus(corpus, (split,))
    if not [d for d in args.eval_data.split(",") if d]:
        raise ValueError("--eval-data names no corpus; e.g. --eval-data wikitext,ptb")
    stdp = STDPConfig(steps=args.stdp_steps) if args.stdp_steps else None
    out = check_writable(args.out or f"results/frontier/{Path(args.model).name}", "--out")
    memory = load_memory_presets()
    return FrontierPlan(args.model, bits, tuple(presets), tuple(memory.values()), tuple(d for d in args.eval_data.split(",") if d), args.eval_tokens,
                        args.window, args.counted_windows, args.calibration_data, args.calibration_tokens, args.granularity, stdp, finetuned, out, device)


def _checkpoint_bits(folder: Path) -> int:
    """The bit width of a fine-tuned checkpoint folder, from its config.json alone."""
    from models.load import read_config

    if not folder.is_dir():
        raise ValueError(f"--finetuned {folder}: no such folder; give the checkpoint folder of a snnbench train --init run")
    spiking = read_config(folder).get("spiking", {})
    if spiking.get("mode", "ann") == "ann":
        raise ValueError(f"--finetuned {folder}: a float model; give the checkpoint of a snnbench train --init run (mode qat)")
    return int(spiking.get("bits", 8))


def settings(plan: FrontierPlan, identity: dict[str, str], finetuned: dict[int, FineTuned]) -> dict[str, Any]:
    """What makes two frontier runs the same run (rows of other settings are never mixed)."""
    return {
        "model": identity, "bits": list(plan.bits), "presets": [p.as_dict() for p in plan.presets],
        "memory_presets": [p.as_settings() for p in plan.memory], "eval_data": list(plan.eval_data),
        "eval_tokens": plan.eval_tokens, "window": plan.window, "counted_windows": plan.counted_windows,
        "calibration": {"data": plan.calibration_data, "tokens": plan.calibration_tokens, "granularity": plan.granularity},
        "stdp": asdict(plan.stdp) if plan.stdp else None,
        "finetuned": {str(b): model_identity(run.checkpoint, str(run.checkpoint)) for b, run in sorted(finetuned.items())},
    }


def _finetuned(plan: FrontierPlan, identity: dict[str, str], say: Callable[[str], None]) -> dict[int, FineTuned]:
    """The fine-tuned model of each bit width: the one given with --finetuned, else the best finished run found."""
    found = {}
    for b in plan.bits:
        if b in plan.finetuned:
            found[b] = FineTuned(plan.finetuned[b], b, max_level(b), math.nan, 0, math.nan)
        elif (run := best_finetuned(identity, b)) is not None:
            found[b] = run
        say(f"  {b} bits: fine-tuned model {found[b].checkpoint if b in found else 'none (snnbench train --init ... --bits %d makes one)' % b}")
    return found


class Measure:
    """Perplexity on every evaluation text and counted operations priced under every preset, on the same tokens for every model."""

    def __init__(self, plan: FrontierPlan, tokenizer, parameters: int, cache_elements: int) -> None:
        self.plan = plan
        self.parameters, self.cache_elements = parameters, cache_elements
        self.texts = {name: text_ids(tokenizer, name, "test", plan.eval_tokens) for name in plan.eval_data}
        first = self.texts[plan.eval_data[0]]
        self.counted = first_sequences(first, plan.window, plan.counted_windows)

    def __call__(self, model, label: str, bits: int | None) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, ids in self.texts.items():
            result = token_perplexity(model, ids, context_window=self.plan.window, desc=f"{label} {name}")
            row[f"perplexity_{name}"] = result["perplexity"]
            row[f"tokens_{name}"] = result["tokens"]
        counted = count_model(model, self.counted)
        total, tokens = counted.total(), counted.tokens
        row["spikes_per_token"] = total.spikes / tokens
        row["synops_per_token"] = total.synops / tokens
        row["macs_per_token"] = total.Effective_MACs / tokens
        for preset in self.plan.presets:
            row[f"mj_per_token_{preset.name}"] = 1e3 * estimate(total, preset).joules / tokens
        variant = Variant("ANN fp32", precision("fp32")) if bits is None else Variant(f"SNN int{bits}", precision(f"int{bits}"), spiking=True)
        for preset in self.plan.memory:
            low, high = memory_estimate(counted.per_module, preset, variant, self.parameters, tokens, self.cache_elements).per_token()
            row[f"mj_per_token_memory:{preset.name}_low"], row[f"mj_per_token_memory:{preset.name}_high"] = 1e3 * low, 1e3 * high
        row["energy_kind"] = ("estimated (arithmetic only: " + ", ".join(f"synops:{p.name}" for p in self.plan.presets)
                              + "; arithmetic + memory, low-high: " + ", ".join(f"memory:{p.name}" for p in self.plan.memory) + ")")
        row["counted_tokens"] = tokens
        return row


def _mean_window(model) -> float | None:
    windows = [int(m.window) for m in model.modules() if hasattr(m, "window") and torch.is_tensor(getattr(m, "window"))]
    return sum(windows) / len(windows) if windows else None


def run_frontier(plan: FrontierPlan, say: Callable[[str], None], data_dir: str | None = None) -> tuple[pd.DataFrame, Path]:
    """Every row measured (finished rows of an interrupted run with the same settings are kept), then the tables and plot."""
    use_data_dir(data_dir)
    started = time.perf_counter()
    loaded: LoadedModel = load_model(plan.model)
    if loaded.model.mode != "ann":
        raise ValueError(f"--model {plan.model}: a model in mode {loaded.model.mode}; the frontier starts from the float model")
    loaded.model.to(plan.device)
    if loaded.tokenizer is None:
        raise ValueError(f"--model {plan.model}: has no tokenizer to read the evaluation text with")
    identity = model_identity(loaded.source, loaded.name)
    finetuned = _finetuned(plan, identity, say)
    lock = open_run(plan.out, settings(plan, identity, finetuned), {"command": "frontier", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                    what="frontier run")
    try:
        rows = _rows(plan, loaded, finetuned, say)
    finally:
        lock.release()
    table = pd.DataFrame(rows)
    leading = [c for c in LEADING if c in table]
    table = table[leading + sorted(c for c in table if c not in leading)]  # the same order whether a row was made now or kept
    write_frontier(table, plan, loaded.name, time.perf_counter() - started)
    return table, plan.out


def _rows(plan: FrontierPlan, loaded: LoadedModel, finetuned: dict[int, FineTuned], say: Callable[[str], None]) -> list[dict[str, Any]]:
    parameters = sum(p.numel() for p in loaded.model.parameters())
    measure = Measure(plan, loaded.tokenizer, parameters, cache_elements(loaded.model, plan.window))
    calibration_ids = text_ids(loaded.tokenizer, plan.calibration_data, "train", plan.calibration_tokens)
    calibration = calibration_batches(calibration_ids, plan.window, 2)
    stdp_batches = calibration_batches(calibration_ids, plan.window, 4)
    rows = [_row(plan, "ann", lambda: {"model": loaded.model, "bits": None, "time_steps": None, "source": "float model"}, measure, say)]
    for b in plan.bits:
        spiking = SpikingConfig(bits=b, linear_granularity=plan.granularity, norm_granularity=plan.granularity)

        def ptq(b=b, spiking=spiking):
            return {"model": convert(loaded.model, calibration, spiking).snn, "bits": b, "time_steps": spiking.T, "source": "calibrated conversion"}

        def tuned(b=b):
            run = finetuned[b]
            model = load_checkpoint(run.checkpoint).model.to(plan.device)
            return {"model": swap_mode(model, model.spiking.with_mode("snn-fused")), "bits": b, "time_steps": model.spiking.T, "source": str(run.checkpoint)}

        for source, build in (("ptq", ptq), ("finetuned", tuned)):
            if source == "finetuned" and b not in finetuned:
                continue
            rows.append(_row(plan, f"b{b}-{source}", build, measure, say))
            if plan.stdp is not None:
                rows.append(_row(plan, f"b{b}-{source}-stdp", lambda build=build: _with_stdp(build(), plan.stdp, stdp_batches), measure, say))
    return rows


def _with_stdp(built: dict[str, Any], config: STDPConfig, batches: list[torch.Tensor]) -> dict[str, Any]:
    reports = optimize_time_steps(built["model"], batches, config)
    return {**built, "mean_window_after_stdp": mean_time_window(reports, after=True), "source": built["source"] + " + stage 3"}


def _row(plan: FrontierPlan, name: str, build: Callable[[], dict[str, Any]], measure: Measure, say: Callable[[str], None]) -> dict[str, Any]:
    """One row: read from ``rows/<name>.json`` when a previous run of these settings finished it, else built and measured."""
    path = plan.out / "rows" / f"{name}.json"
    if path.exists():
        row = read_json(path)
        say(f"  {name:<18} kept from the interrupted run")
        return row
    started = time.perf_counter()
    built = build()
    model = built.pop("model")
    row = {"row": name, **built, "mean_window": _mean_window(model), **measure(model, name, built["bits"]), "seconds": time.perf_counter() - started}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, row)
    first = plan.eval_data[0]
    say(f"  {name:<18} perplexity {first} {row[f'perplexity_{first}']:9.3f}  spikes/token {row['spikes_per_token']:12,.0f}  "
        + "  ".join(f"{p.name} {row[f'mj_per_token_{p.name}']:.3f} mJ/token" for p in plan.presets[:2]))
    return row


def write_frontier(table: pd.DataFrame, plan: FrontierPlan, model_name: str, seconds: float) -> None:
    """``frontier.csv``, ``frontier.md`` (the table with the change against the float model) and ``frontier.png``."""
    from ..report import plots

    first = plan.eval_data[0]
    ann = table[table["row"] == "ann"].iloc[0]
    table = table.assign(**{f"vs_ann_{d}": table[f"perplexity_{d}"] / ann[f"perplexity_{d}"] - 1 for d in plan.eval_data})
    atomic_write_text(plan.out / "frontier.csv", table.to_csv(index=False, float_format="%.6g"))
    shown = ["row", "bits", "time_steps", "mean_window", *(c for d in plan.eval_data for c in (f"perplexity_{d}", f"vs_ann_{d}")),
             "spikes_per_token", *(f"mj_per_token_{p.name}" for p in plan.presets)]
    view = table[shown].copy()
    for p in plan.memory:
        low, high = table[f"mj_per_token_memory:{p.name}_low"], table[f"mj_per_token_memory:{p.name}_high"]
        view[f"mJ/token memory:{p.name}"] = [f"{lo:.3g}-{hi:.3g}" for lo, hi in zip(low, high)]
    for d in plan.eval_data:
        view[f"vs_ann_{d}"] = view[f"vs_ann_{d}"].map(lambda v: f"{100 * v:+.2f}%")
    text = to_markdown([
        ("h2", f"Frontier of {model_name}: perplexity against estimated energy per token"),
        ("p", f"{int(ann[f'tokens_{first}'])} scored tokens of {first} (test) per row; operations counted on {int(ann['counted_tokens'])} "
              f"tokens; energy estimated, never measured: arithmetic only ({', '.join(p.name for p in plan.presets)}), and arithmetic + memory "
              f"traffic as a low-high range ({', '.join(p.name for p in plan.memory)}; the SNN with b-bit weights and activations, the ANN "
              "at fp32; harness/energy/memory.toml states each preset's assumptions). "
              f"ptq: calibrated conversion; finetuned: snnbench train --init, then conversion; -stdp: after stage 3. {seconds:.0f} s."),
        ("table", view),
    ])
    atomic_write_text(plan.out / "frontier.md", text)
    plots.frontier(table, plan.out / "frontier.png", first, [p.name for p in plan.presets[:2]] + [f"memory:{p.name}" for p in plan.memory[:2]],
                   model_name)
