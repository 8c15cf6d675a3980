"""``snnbench energy``: arithmetic-only and memory-aware estimated energy of a pretrained model's SNN under each spike coding,
beside the ANN at fp32, fp16 and b-bit integers, with the break-even window and spike rate (``harness/experiments/energy_analysis.py``)."""

from __future__ import annotations

import argparse

from .common import add_conversion_flags, add_data_dir, add_out, say


def add_parser(commands) -> None:
    p = commands.add_parser("energy", help="memory-aware energy, iso-precision ANN baselines, spike codings and break-even of a model's SNN")
    p.add_argument("--model", required=True, help="the float model: registry name (smollm2-135m), checkpoint folder or .gguf file")
    p.add_argument("--bits", type=int, default=8, help="bit width of the SNN (T = 2^(bits-1) - 1) and of the iso-precision integer ANN")
    p.add_argument("--snn-from", default="auto", metavar="CHECKPOINT|auto|none",
                   help="the SNN: a fine-tuning of --model (snnbench train --init ... /checkpoint), auto (the best finished one at --bits, "
                        "else a calibrated conversion) or none (a calibrated conversion)")
    p.add_argument("--codings", default="rate,bitwise,multilevel", help="spike codings to count, comma-separated")
    p.add_argument("--memory-presets", default=None, help="memory presets, comma-separated (default: all of harness/energy/memory.toml and the file)")
    p.add_argument("--memory-presets-file", default=None, help="a TOML file of your own [[memory]] presets (same form as harness/energy/memory.toml)")
    p.add_argument("--count-data", default="wikitext", help="held-out text (test split) whose first windows are counted")
    p.add_argument("--window", type=int, default=256, help="context window in tokens")
    p.add_argument("--counted-windows", type=int, default=2, help="windows counted")
    add_conversion_flags(p, "the calibrated conversion")
    add_out(p, None, "counts/, energy-analysis.csv, energy.md, breakeven.png (default: results/energy/<model>-b<bits>)")
    add_data_dir(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.experiments.energy_analysis import plan_energy, run_energy

    plan = plan_energy(args)
    say(f"energy of {args.model} at {plan.bits} bits, codings {', '.join(plan.codings)} -> {plan.out}")
    _, out = run_energy(plan, say, args.data_dir)
    print((out / "energy.md").read_text())
    plot = ", breakeven.png" if (out / "breakeven.png").exists() else " (no breakeven.png: it draws the rate coding over T; add rate to --codings)"
    print(f"wrote {out}/energy-analysis.csv, energy.md{plot} and counts/")
    return 0
