"""``snnbench demo``: the whole story in one command (``harness/experiments/demo.py``; what ``make demo`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.experiments.demo import run_demo, steps
from harness.report import browser

from .common import DEVICE_HELP, add_out, say


def add_parser(commands) -> None:
    p = commands.add_parser("demo", help="the end-to-end job: verify, fetch, train, STDP, convert, evaluate, report")
    add_out(p, "results/demo", "every step's results (the report goes to reports/demo)", old="--results")
    p.add_argument("--train-steps", type=int, default=300, help="QAT steps of the tiny Llama")
    p.add_argument("--limit", type=int, default=None, help="cap on documents per task (default: the demo suite's own: 500 ARC-Easy, 2 of the others)")
    p.add_argument("--max-gen-toks", type=int, default=None, help="cap on generated tokens per answer (default: the demo suite's 32)")
    p.add_argument("--device", default=None, help=DEVICE_HELP + "; passed to every step that runs a model")
    p.add_argument("--dry-run", action="store_true", help="print the steps without running them")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    plan = steps(Path(args.out), args.train_steps, args.limit, args.max_gen_toks, screenshot=browser.find_browser() is not None, device=args.device)
    if args.dry_run:
        for title, argv in plan:
            print(f"{title}: snnbench {' '.join(argv)}")
        return 0
    return run_demo(plan, args.snnbench, say)
