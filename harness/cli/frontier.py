"""``snnbench frontier``: perplexity, time steps and estimated energy per token of a pretrained model's SNNs over bit widths,
from a calibrated conversion and from quantization-aware fine-tuning, before and after stage 3 (``harness/experiments/frontier.py``)."""

from __future__ import annotations

import argparse

from .common import DATA_DIR_HELP, CommaSeparated, add_device, add_energy_presets, say


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
    p.add_argument("--calibration-data", default="webtext", help="training text for calibration and stage 3")
    p.add_argument("--calibration-tokens", type=int, default=1024, help="tokens of calibration text")
    add_device(p)
    p.add_argument("--granularity", default="smoothed", choices=["token", "smoothed", "channel", "tensor"], help="activation scales of the conversion")
    p.add_argument("--stdp-steps", type=int, default=60, help="stage-3 optimization steps per layer (0: no stage-3 rows)")
    p.add_argument("--out", default=None, help="output folder (default results/frontier/<model>)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.experiments.frontier import plan_frontier, run_frontier

    plan = plan_frontier(args)
    say(f"frontier of {args.model} at bits {args.bits} -> {plan.out}")
    table, out = run_frontier(plan, say, args.data_dir)
    print((out / "frontier.md").read_text())
    print(f"wrote {out}/frontier.csv, frontier.md, frontier.png and rows/")
    return 0
