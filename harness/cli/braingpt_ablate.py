"""``snnbench braingpt-ablate``: BrainGPT's architecture ablations and its figure 2 (``harness/experiments/braingpt_ablation.py``)."""

from __future__ import annotations

import argparse

from harness.experiments.braingpt_variants import VARIANTS

from .common import CommaSeparated, add_training_run_flags, say


def add_parser(commands) -> None:
    p = commands.add_parser("braingpt-ablate", help="BrainGPT ablations (dual, MoE, selective embedding) and figure 2 against TTT")
    p.add_argument("--config", default="braingpt-tiny", help="a config with [model.braingpt], [model.ttt], [model.llama] and [model.mamba2], or a .toml path")
    p.add_argument("--data", default=None, help="corpus (default: the config's, brown)")
    p.add_argument("--variants", action=CommaSeparated, default=None, help=f"which runs, comma-separated (default all): {', '.join(VARIANTS)}")
    p.add_argument("--mode", default="ann", choices=["ann", "qat"], help="training mode of every variant")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps of every variant (default: the config's)")
    p.add_argument("--eval-interval", type=int, default=None, help="steps between validations (default: the config's)")
    p.add_argument("--seed", type=int, default=None, help="seed of every variant (default: the config's)")
    add_training_run_flags(p, "results/braingpt", "retrain every variant instead of reusing or resuming", ("--quiet", "no progress bars"))
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.experiments.braingpt_ablation import run_braingpt_ablation

    result = run_braingpt_ablation(args, say)
    print(result.table_markdown)
    figure2 = result.figure2
    if figure2:
        print(f"figure 2: TTT final validation perplexity {figure2['target_perplexity']:.2f} at step {figure2['target_step']}; "
              f"BrainGPT reaches it at step {figure2['fast_reaches_target_at_step']}")
    print(f"wrote {result.root}/ablation.csv, ablation.md, convergence.csv, convergence.png, ablation.json in {result.seconds:.0f} s")
    return 0
