"""Stage 3 on a trained (QAT) or converted checkpoint (``snnbench stdp``): per-layer T before and after,
perplexity before and after, estimated energy before and after (BrainGPT's Table 3 at our scale).

Two kinds of window meet here: the *context window* of tokens the text is cut into (``--window``,
the checkpoint's training length by default) and each layer's *time window* (its T), which stage 3 shortens.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

from models.convert import swap_mode
from models.load import TOKENIZER_FILE, load_checkpoint, read_config, save_checkpoint
from models.perplexity import token_perplexity
from models.train.data import global_batch, token_stream
from models.train.stdp import STDPConfig, mean_time_window, optimize_time_steps, report_table, reports_as_dicts
from tasks.fetch import use_data_dir
from tasks.files import atomic_write_json, atomic_write_text, check_writable

from ..devices import check_device
from ..energy import EnergyPreset, count_forwards, first_sequences
from ..energy.synops import select_presets
from . import StageResult

ENERGY_SEQUENCES = 4  # context windows of the test split whose operations the energy estimate counts (fewer if it is short)


@dataclass(frozen=True)
class Plan:
    """What ``snnbench stdp`` will do, every part checked before any data or model is loaded."""

    config: STDPConfig
    preset: EnergyPreset
    data: str
    context_window: int  # tokens
    out: Path
    device: str


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


def checkpoint_settings(args: argparse.Namespace) -> tuple[str, int]:
    """(corpus, context window) for the checkpoint, read from its config.json alone; one-line errors for what it lacks."""
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
    context_window = args.window or training.get("seq_len", 64)
    if args.eval_tokens < context_window:
        raise ValueError(f"--eval-tokens {args.eval_tokens} is less than one window of {context_window} tokens; raise --eval-tokens or lower --window")
    return data, context_window


def plan(args: argparse.Namespace) -> Plan:
    """Check every flag, the checkpoint's config and that --out is writable; no data or model is loaded."""
    check_flags(args)
    config = STDPConfig(steps=args.steps, target_fraction=args.target_fraction, lambda_T=args.lambda_t, lambda_C=args.lambda_c)
    (preset,) = select_presets(args.energy_presets, args.energy_presets_file, one=True)
    device = check_device(args.device)
    data, context_window = checkpoint_settings(args)
    out = check_writable(args.out or Path(args.checkpoint).parent / "stdp", "--out")
    return Plan(config, preset, data, context_window, out, device)


def run_stage3(args: argparse.Namespace, checked: Plan) -> StageResult:
    """Measure, optimize the time steps, measure again and save the model, ``stdp.json`` and ``stdp.txt`` (the result's table)."""
    config, preset, data, context_window, out = checked.config, checked.preset, checked.data, checked.context_window, checked.out
    use_data_dir(args.data_dir)
    started = time.perf_counter()
    loaded = load_checkpoint(args.checkpoint)
    model = loaded.model.to(checked.device)
    if model.mode != "snn-fused":
        model = swap_mode(model, model.spiking.with_mode("snn-fused"))
    test = token_stream(loaded.tokenizer, data, "test")[: args.eval_tokens].tolist()
    train = token_stream(loaded.tokenizer, data, "train")
    if len(test) < context_window:
        raise ValueError(f"corpus {data!r} has only {len(test)} test tokens, less than one window of {context_window}; lower --window")
    batches = [global_batch(train, context_window, 16, args.seed, s)[:, :-1] for s in range(args.batches)]
    energy_text = first_sequences(test, context_window, ENERGY_SEQUENCES)

    def energy(m) -> dict:
        cost = count_forwards(m, [energy_text], [preset])
        return {"joules_per_token": cost.joules_per_token, "source": cost.estimates[0].source, "spikes_per_token": cost.per_token("spikes")}

    def measure(m) -> tuple[float, dict]:
        return token_perplexity(m, test, context_window=context_window, batch_size=16)["perplexity"], energy(m)

    energy_qat = energy(swap_mode(model, model.spiking.with_mode("qat")))  # the QAT ANN: MACs on quantized values
    ppl_before, energy_before = measure(model)
    reports = optimize_time_steps(model, batches, config)
    ppl_after, energy_after = measure(model)
    save_checkpoint(model, out / "model", loaded.tokenizer, extra={"name": f"{loaded.name}-stdp", "stage3": config.__dict__}, special_tokens=loaded.special_tokens())
    summary = {
        "checkpoint": str(args.checkpoint),
        "data": data,
        "config": config.__dict__,
        "mean_T": {"before": mean_time_window(reports, False), "after": mean_time_window(reports, True)},
        "max_T": {"before": max(r.time_window_before for r in reports), "after": max(r.time_window_after for r in reports)},
        "perplexity": {"before": ppl_before, "after": ppl_after, "change": ppl_after / ppl_before - 1},
        "estimated_energy": {"before": energy_before, "after": energy_after, "qat_ann": energy_qat, "kind": "estimated"},
        "layers": reports_as_dicts(reports),
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(out / "stdp.json", summary)
    table = report_table(reports)
    atomic_write_text(out / "stdp.txt", table + "\n")
    return StageResult(summary, table, out)
