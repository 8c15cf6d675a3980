"""``snnbench ablate``: a grid over the pipeline's stages, bits and spiking operators (``harness/experiments/stage_ablation.py``)."""

from __future__ import annotations

import argparse

from .common import say


def add_parser(commands) -> None:
    p = commands.add_parser("ablate", help="grid over stages (QAT, conversion, STDP), time steps, bits and spiking operators")
    p.add_argument("--ann", required=True, help="a float checkpoint (snnbench train --mode ann)")
    p.add_argument("--qat", default=None, help="a QAT checkpoint of the same architecture and corpus (snnbench train --mode qat)")
    p.add_argument("--data", default="ptb")
    p.add_argument("--bits", default="4,5,6,7,8", help="bit widths of the time-step sweep (T = 2^(bits-1) - 1)")
    p.add_argument("--keep-float", default="linear,attention,softmax,silu,multiply,norm", help="operator kinds kept float one at a time")
    p.add_argument("--granularity", default="token", choices=["token", "smoothed"])
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--eval-tokens", type=int, default=4096)
    p.add_argument("--stdp-steps", type=int, default=40)
    p.add_argument("--energy-preset", default="45nm-int8")
    p.add_argument("--out", default="results/ablate")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.experiments.stage_ablation import run_stage_ablation

    out, seconds = run_stage_ablation(args, say)
    print(f"wrote {out}/ablation.csv, ablation.md, ablation.png in {seconds:.0f} s")
    return 0
