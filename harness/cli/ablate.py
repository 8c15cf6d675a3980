"""``snnbench ablate``: a grid over the pipeline's stages, bits and spiking operators (``harness/experiments/stage_ablation.py``)."""

from __future__ import annotations

import argparse

from .common import CommaSeparated, add_data_dir, add_device, add_energy_presets, add_out, say


def add_parser(commands) -> None:
    p = commands.add_parser("ablate", help="grid over stages (QAT, conversion, STDP), time steps, bits and spiking operators")
    p.add_argument("--ann", required=True, help="a float checkpoint (snnbench train --mode ann)")
    p.add_argument("--qat", default=None, help="a QAT checkpoint of the same architecture and corpus (snnbench train --mode qat)")
    p.add_argument("--data", default="ptb", help="corpus: test split for perplexity, train split for calibration")
    p.add_argument("--bits", default="4,5,6,7,8", help="bit widths of the time-step sweep, comma-separated (T = 2^(bits-1) - 1)")
    p.add_argument("--keep-float", action=CommaSeparated, default="linear,attention,softmax,silu,multiply,norm", help="operator kinds kept float one at a time, comma-separated")
    p.add_argument("--granularity", default="token", choices=["token", "smoothed"], help="activation scales of the conversion")
    p.add_argument("--window", type=int, default=64, help="context window in tokens")
    p.add_argument("--eval-tokens", type=int, default=4096, help="test tokens for each perplexity")
    p.add_argument("--stdp-steps", type=int, default=40, help="stage-3 optimization steps per layer")
    add_energy_presets(p, "45nm-int8", one=True)
    add_device(p)
    add_out(p, "results/ablate", "ablation.csv, ablation.md, ablation.png")
    add_data_dir(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.experiments.stage_ablation import run_stage_ablation

    out, seconds = run_stage_ablation(args, say)
    print(f"wrote {out}/ablation.csv, ablation.md, ablation.png in {seconds:.0f} s")
    return 0
