"""``snnbench frontier``: perplexity, time steps and estimated energy per token of a pretrained model's SNNs over bit widths,
from a calibrated conversion and from quantization-aware fine-tuning, before and after stage 3 (``harness/experiments/frontier.py``)."""

from __future__ import annotations

import argparse

from .common import CommaSeparated, add_conversion_flags, add_data_dir, add_energy_presets, add_out, say


def add_parser(commands) -> None:
    p = commands.add_parser("frontier", help="the accuracy / time steps / energy frontier of a pretrained model's SNNs")
    p.add_argument("--model", required=True, help="the float model: registry name (smollm2-135m), checkpoint folder or .gguf file")
    p.add_argument("--bits", default="8,6,5,4", help="bit widths, comma-separated (T = 2^(bits-1) - 1 time steps)")
    p.add_argument("--finetuned", action=CommaSeparated, metavar="CHECKPOINT",
                   help="fine-tuned checkpoints, comma-separated (snnbench train --init ... /checkpoint); default: the best finished run in results/train per bit width")
    p.add_argument("--eval-data", default="wikitext,ptb", help="held-out texts (test splits), comma-separated; the first is plotted")
    p.add_argument("--eval-tokens", type=int, default=4096, help="tokens of each evaluation text")
    p.add_argument("--window", type=int, default=256, help="context window in tokens")
    p.add_argument("--counted-windows", type=int, default=2, help="windows of the first text whose operations are counted for energy")
    add_energy_presets(p, "45nm-fp32,45nm-int8,loihi")
    add_conversion_flags(p, "calibration and stage 3")
    p.add_argument("--stdp-steps", type=int, default=60, help="stage-3 optimization steps per layer (0: no stage-3 rows)")
    add_out(p, None, "rows/, frontier.csv, frontier.md, frontier.png (default: results/frontier/<model>)")
    add_data_dir(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.experiments.frontier import plan_frontier, run_frontier

    plan = plan_frontier(args)
    say(f"frontier of {args.model} at bits {args.bits} -> {plan.out}")
    table, out = run_frontier(plan, say, args.data_dir)
    print((out / "frontier.md").read_text())
    print(f"wrote {out}/frontier.csv, frontier.md, frontier.png and rows/")
    return 0
