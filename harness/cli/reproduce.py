"""``snnbench reproduce braintransformers|braingpt|neurtransformer``: the papers' tables at our scale
(``harness/experiments/reproduce.py``)."""

from __future__ import annotations

import argparse

from .common import DEVICE_HELP, add_data_dir, add_out, say


def add_parser(commands) -> None:
    p = commands.add_parser("reproduce", help="the seed papers' tables at our scale, paper and snnbench side by side")
    p.add_argument("paper", choices=["braintransformers", "braingpt", "neurtransformer"])
    p.add_argument("--model", default="smollm2-135m", help="braintransformers: the pretrained model to convert and evaluate")
    p.add_argument("--limit", type=int, default=None, help="braintransformers: a further cap on documents per (sub)task (default: the suite's own)")
    p.add_argument("--full", action="store_true", help="braintransformers: every document of the four benchmarks (days on a CPU) instead of the sized suite")
    p.add_argument("--max-gen-toks", type=int, default=None, help="braintransformers: cap on generated tokens (default: the suite's own)")
    p.add_argument("--max-length", type=int, default=None, help="braintransformers: cap the context (tokens) for CPU budgets")
    p.add_argument("--batch-size", type=int, default=8, help="braintransformers: sequences per forward (lower it when long prompts fill memory)")
    p.add_argument("--snn-from", default="auto", metavar="CHECKPOINT|auto|none",
                   help="braintransformers: the SNN's source: a fine-tuned checkpoint of --model, auto (the best finished fine-tuning in "
                        "results/train, else the calibrated conversion) or none (always the conversion)")
    p.add_argument("--meters", default="auto", help="braintransformers: energy meters, auto, none, or a list of nvml,rapl,codecarbon")
    p.add_argument("--device", default=None, help="braintransformers: " + DEVICE_HELP)
    p.add_argument("--from", dest="from_dir", default=None, help="braingpt / neurtransformer: the folder their own command wrote (default results/braingpt, results/neurtransformer)")
    p.add_argument("--stage3", default=None, help="braingpt: a `snnbench stdp` folder of a BrainGPT QAT checkpoint (Tables 2 and 3)")
    p.add_argument("--runs", default="results", help="braintransformers: folder its evaluation run goes under")
    p.add_argument("--results", dest="runs", help=argparse.SUPPRESS)  # the former spelling
    add_out(p, "results/reproduce", "the reproduction's table and notes")
    add_data_dir(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.experiments.reproduce import reproduce

    return reproduce(args, say)
