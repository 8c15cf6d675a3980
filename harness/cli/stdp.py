"""``snnbench stdp``: stage 3 on a QAT or converted checkpoint, before and after (``harness/stages/stdp.py``)."""

from __future__ import annotations

import argparse

from .common import add_data_dir, add_device, add_energy_presets, add_out


def add_parser(commands) -> None:
    p = commands.add_parser("stdp", help="stage 3: STDP-inspired time-step optimization of a QAT or SNN checkpoint")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (from snnbench train --mode qat or snnbench convert)")
    p.add_argument("--data", default=None, help="corpus (default: the one the checkpoint was trained on)")
    p.add_argument("--steps", type=int, default=60, help="optimization steps per layer")
    p.add_argument("--target-fraction", type=float, default=0.5, help="T_target as a fraction of the current window")
    p.add_argument("--lambda-t", type=float, default=1.0, help="weight of the time-step loss (eq. 12)")
    p.add_argument("--lambda-c", type=float, default=20.0, help="weight of the consistency loss (eq. 12)")
    p.add_argument("--batches", type=int, default=2, help="calibration batches of 16 windows from the train split")
    p.add_argument("--window", type=int, default=None, help="context window (default: the checkpoint's training seq_len, else 64)")
    p.add_argument("--eval-tokens", type=int, default=4096, help="test tokens for the perplexity before and after")
    add_energy_presets(p, "45nm-int8", one=True)
    p.add_argument("--seed", type=int, default=1, help="seed of the calibration batches")
    add_device(p)
    add_out(p, None, "model/, stdp.json, stdp.txt (default: stdp/ beside the checkpoint)")
    add_data_dir(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.stages import stdp

    result = stdp.run_stage3(args, stdp.plan(args))
    summary, out = result.summary, result.out
    before, after, qat = (summary["estimated_energy"][k] for k in ("before", "after", "qat_ann"))
    print(result.table)
    print(f"\nperplexity {summary['perplexity']['before']:.3f} -> {summary['perplexity']['after']:.3f} ({100 * summary['perplexity']['change']:+.2f}%)")
    print(f"estimated energy ({before['source']}) {before['joules_per_token']:.3e} -> {after['joules_per_token']:.3e} J/token; "
          f"spikes/token {before['spikes_per_token']:.0f} -> {after['spikes_per_token']:.0f}")
    print(f"the QAT ANN of the same weights (MACs): {qat['joules_per_token']:.3e} J/token")
    print(f"wrote {out}/model, {out}/stdp.json, {out}/stdp.txt in {summary['seconds']:.0f} s")
    return 0
