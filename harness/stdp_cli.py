"""``snnbench stdp``: stage 3 on a trained (QAT) or converted checkpoint: per-layer T before and after,
perplexity before and after, estimated energy before and after (BrainGPT's Table 3 at our scale)."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tasks.files import check_writable

from .data_cli import use_data_dir
from .runs import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from harness.energy import EnergyPreset
    from models.train.stdp import STDPConfig

ENERGY_WINDOWS = 4  # windows of the test split whose operations the energy estimate counts (fewer if it is short)


@dataclass(frozen=True)
class Plan:
    """What ``snnbench stdp`` will do, every part checked before any data or model is loaded."""

    config: STDPConfig
    preset: EnergyPreset
    data: str
    window: int
    out: Path


def check_flags(args: argparse.Namespace) -> None:
    """One-line errors for bad numeric flags (the checkpoint is not read yet)."""
    for flag, value in (("--steps", args.steps), ("--batches", args.batches)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if args.window is not None and args.window < 2:
        raise ValueError(f"--window must be >= 2, got {args.window}")
    if not 0 < args.target_fraction <= 1:
        raise ValueError(f"--target-fraction must be in (0, 1] (a fraction of each layer's window), got {args.target_fraction}")
    for flag, value in (("--lambda-t", args.lambda_t), ("--lambda-c", args.lambda_c)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{flag} must be a finite number > 0, got {value}")


def energy_preset(name: str) -> EnergyPreset:
    """The energy preset ``name``; a one-line error listing the known ones."""
    from harness.energy import load_presets

    presets = load_presets()
    if name not in presets:
        raise ValueError(f"--energy-preset {name!r} is unknown; known: {', '.join(presets)}")
    return presets[name]


def checkpoint_settings(args: argparse.Namespace) -> tuple[str, int]:
    """(corpus, window) for the checkpoint, read from its config.json alone; one-line errors for what it lacks."""
    from models.load import TOKENIZER_FILE, read_config

    folder = Path(args.checkpoint)
    if not folder.is_dir():
        raise ValueError(f"--checkpoint {folder}: no such folder; give a checkpoint folder from snnbench train --mode qat or snnbench convert")
    saved = read_config(folder)
    if saved.get("spiking", {}).get("mode", "ann") == "ann":
        raise ValueError(f"{folder}: an ANN checkpoint; train in qat mode or convert it first (snnbench convert)")
    if not (folder / TOKENIZER_FILE).is_file():
        raise ValueError(f"{folder}: has no {TOKENIZER_FILE} to read the corpus with")
    training = saved.get("training", {}).get("config", {})
    data = args.data or training.get("data")
    if data is None:
        raise ValueError(f"{folder}: does not say which corpus it was trained on; give --data")
    window = args.window or training.get("seq_len", 64)
    if args.eval_tokens < window:
        raise ValueError(f"--eval-tokens {args.eval_tokens} is less than one window of {window} tokens; raise --eval-tokens or lower --window")
    return data, window


def plan(args: argparse.Namespace) -> Plan:
    """Check every flag, the checkpoint's config and that --out is writable; no data or model is loaded."""
    from models.train.stdp import STDPConfig

    check_flags(args)
    config = STDPConfig(steps=args.steps, target_fraction=args.target_fraction, lambda_T=args.lambda_t, lambda_C=args.lambda_c)
    preset = energy_preset(args.energy_preset)
    data, window = checkpoint_settings(args)
    out = check_writable(args.out or Path(args.checkpoint).parent / "stdp", "--out")
    return Plan(config, preset, data, window, out)


def run_stdp(args: argparse.Namespace) -> int:
    """``snnbench stdp``: plan (all checks), then measure, optimize the time steps, measure again and save."""
    from harness.energy import estimate
    from models.convert import swap_mode
    from models.load import load_checkpoint, save_checkpoint
    from models.perplexity import token_perplexity
    from models.spiking.counters import OpCounter
    from models.train.data import global_batch, token_stream
    from models.train.stdp import mean_window, optimize_time_steps, report_table, reports_as_dicts

    checked = plan(args)
    config, preset, data, window, out = checked.config, checked.preset, checked.data, checked.window, checked.out
    use_data_dir(args.data_dir)
    started = time.perf_counter()
    loaded = load_checkpoint(args.checkpoint)
    model = loaded.model
    if model.mode != "snn-fused":
        model = swap_mode(model, model.spiking.with_mode("snn-fused"))
    test = token_stream(loaded.tokenizer, data, "test")[: args.eval_tokens].tolist()
    train = token_stream(loaded.tokenizer, data, "train")
    if len(test) < window:
        raise ValueError(f"corpus {data!r} has only {len(test)} test tokens, less than one window of {window}; lower --window")
    batches = [global_batch(train, window, 16, args.seed, s)[:, :-1] for s in range(args.batches)]
    rows = min(ENERGY_WINDOWS, len(test) // window)

    def energy(m) -> dict:
        with OpCounter(m) as counter, torch.no_grad():
            m(torch.tensor(test[: window * rows]).view(rows, window))
        e = estimate(counter.total(), preset)
        tokens = rows * window
        return {"joules_per_token": e.joules / tokens, "source": e.source, "spikes_per_token": counter.total().spikes / tokens}

    def measure(m) -> tuple[float, dict]:
        return token_perplexity(m, test, window=window, batch_size=16)["perplexity"], energy(m)

    energy_qat = energy(swap_mode(model, model.spiking.with_mode("qat")))  # the QAT ANN: MACs on quantized values
    ppl_before, energy_before = measure(model)
    reports = optimize_time_steps(model, batches, config)
    ppl_after, energy_after = measure(model)
    save_checkpoint(model, out / "model", loaded.tokenizer, extra={"name": f"{loaded.name}-stdp", "stage3": config.__dict__}, special_tokens=loaded.special_tokens())
    summary = {
        "checkpoint": str(args.checkpoint),
        "data": data,
        "config": config.__dict__,
        "mean_T": {"before": mean_window(reports, False), "after": mean_window(reports, True)},
        "max_T": {"before": max(r.window_before for r in reports), "after": max(r.window_after for r in reports)},
        "perplexity": {"before": ppl_before, "after": ppl_after, "change": ppl_after / ppl_before - 1},
        "estimated_energy": {"before": energy_before, "after": energy_after, "qat_ann": energy_qat, "kind": "estimated"},
        "layers": reports_as_dicts(reports),
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(out / "stdp.json", summary)
    table = report_table(reports)
    atomic_write_text(out / "stdp.txt", table + "\n")
    print(table)
    print(f"\nperplexity {ppl_before:.3f} -> {ppl_after:.3f} ({100 * summary['perplexity']['change']:+.2f}%)")
    print(f"estimated energy ({energy_before['source']}) {energy_before['joules_per_token']:.3e} -> {energy_after['joules_per_token']:.3e} J/token; "
          f"spikes/token {energy_before['spikes_per_token']:.0f} -> {energy_after['spikes_per_token']:.0f}")
    print(f"the QAT ANN of the same weights (MACs): {energy_qat['joules_per_token']:.3e} J/token")
    print(f"wrote {out}/model, {out}/stdp.json, {out}/stdp.txt in {summary['seconds']:.0f} s")
    return 0


def add_parser(commands) -> None:
    p = commands.add_parser("stdp", help="stage 3: STDP-inspired time-step optimization of a QAT or SNN checkpoint")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (from snnbench train --mode qat or snnbench convert)")
    p.add_argument("--data", default=None, help="corpus (default: the one the checkpoint was trained on)")
    p.add_argument("--steps", type=int, default=60, help="optimization steps per layer")
    p.add_argument("--target-fraction", type=float, default=0.5, help="T_target as a fraction of the current window")
    p.add_argument("--lambda-t", type=float, default=1.0)
    p.add_argument("--lambda-c", type=float, default=20.0)
    p.add_argument("--batches", type=int, default=2, help="calibration batches of 16 windows from the train split")
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--eval-tokens", type=int, default=4096)
    p.add_argument("--energy-preset", default="45nm-int8")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--data-dir", default=None)
