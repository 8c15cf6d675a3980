"""``snnbench neurtransformer``: NeurTransformer's method on three GPT-2 sizes, the paper's table at our scale.

    snnbench neurtransformer                          # models/train/configs/neurtransformer.toml
    snnbench neurtransformer --sizes gpt2-small --train-steps 200 --finetune-steps 50

Per size: train the float GPT-2 on PTB, put spike-based self-attention in and convert the rest,
fine-tune the SSA blocks with surrogate gradients, then measure cosine similarity, token-wise
accuracy, perplexity and the estimated energy of SSA vs float attention. Writes
``results/neurtransformer/``: ``table.csv``, ``table.md``, ``neurtransformer.json`` and one
folder per size (the float model's checkpoint, ``finetune.jsonl``, ``result.json``). A re-run
reuses finished sizes and resumes an interrupted training; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tasks.fetch import use_data_dir

from .common import CommaSeparated, add_training_run_flags


def add_parser(commands) -> None:
    p = commands.add_parser("neurtransformer", help="NeurTransformer: GPT-2 with spike-based self-attention, fine-tuned with surrogate gradients")
    p.add_argument("--config", default="neurtransformer", help="a config name in models/train/configs or a .toml path")
    p.add_argument("--sizes", action=CommaSeparated, help="the [model.NAME] tables to run, comma-separated (default: all)")
    p.add_argument("--train-steps", type=int, default=None, help="float GPT-2 training steps (overrides [train] max_steps)")
    p.add_argument("--batch-size", type=int, default=None, help="float GPT-2 training batch")
    p.add_argument("--finetune-steps", type=int, default=None, help="SSA fine-tuning steps")
    p.add_argument("--finetune-lr", type=float, default=None, help="SSA fine-tuning learning rate (default: the config's)")
    p.add_argument("--finetune-batch-size", type=int, default=None, help="SSA fine-tuning batch (default: the config's)")
    p.add_argument("--time-steps", type=int, default=None, help="T of the spike-based self-attention")
    p.add_argument("--surrogate", default=None, help="surrogate gradient: atan or sigmoid")
    p.add_argument("--alpha", type=float, default=None, help="the surrogate's sharpness (default: its own)")
    p.add_argument("--hidden-weight", type=float, default=None, help="weight of the hidden-state loss")
    p.add_argument("--lm-weight", type=float, default=None, help="weight of the language-modelling loss")
    p.add_argument("--bits", type=int, default=None, help="bit width of the converted feed-forward part")
    p.add_argument("--eval-tokens", type=int, default=None, help="test tokens for the measures")
    p.add_argument("--energy-presets", default=None, help="the energy preset that prices the counted operations (one name; default: the config's, 45nm-fp32)")
    p.add_argument("--energy-preset", dest="energy_presets", help=argparse.SUPPRESS)  # the former spelling
    p.add_argument("--seed", type=int, default=None, help="seed of training (default: the config's)")
    add_training_run_flags(p, "results/neurtransformer", "start over instead of reusing finished sizes and checkpoints",
                           ("--progress", "show training progress bars"))
    p.set_defaults(handler=run)


def _one_preset(names: str | None) -> str | None:
    """The one energy preset named by --energy-presets (checked now, before any training), or None for the config's."""
    from harness.energy.synops import select_presets

    return None if names is None else select_presets(names, one=True)[0].name


def run(args: argparse.Namespace) -> int:
    from harness.experiments.neurtransformer import run_neurtransformer

    use_data_dir(args.data_dir)
    started = time.perf_counter()
    train = {"max_steps": args.train_steps, "batch_size": args.batch_size, "seed": args.seed}
    settings = {
        "finetune_steps": args.finetune_steps, "finetune_lr": args.finetune_lr, "finetune_batch_size": args.finetune_batch_size,
        "ssa_time_steps": args.time_steps, "surrogate": args.surrogate, "alpha": args.alpha, "bits": args.bits,
        "eval_tokens": args.eval_tokens, "energy_preset": _one_preset(args.energy_presets), "hidden_weight": args.hidden_weight, "lm_weight": args.lm_weight,
    }
    out = Path(args.out)
    result = run_neurtransformer(args.config, out, train, settings, args.sizes, device=args.device or "cpu", fresh=args.fresh, progress=args.progress)
    print()
    print(result["paths"]["md"].read_text())
    print(f"wrote {out}/table.csv, table.md, neurtransformer.json in {time.perf_counter() - started:.0f} s")
    return 0
