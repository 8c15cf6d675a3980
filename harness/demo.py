"""``snnbench demo``: the whole story in one command (what ``make demo`` runs).

verify the spiking core -> fetch the data -> train the tiny Llama with QAT on Penn Treebank (and
convert it to the SNN, losslessly) -> STDP (stage 3) -> convert SmolLM2-135M (stage 2) -> evaluate
SmolLM2's ANN and SNN side by side on a slice of every suite, with energy -> one HTML report.
Every step resumes if the demo is run again; the last line says where the report is.
"""

from __future__ import annotations

import time
from pathlib import Path


def steps(root: Path, train_steps: int, limit: int, max_gen_toks: int, screenshot: bool = False) -> list[tuple[str, list[str]]]:
    """The demo's commands in order; ``screenshot``: the report step also renders the HTML in headless Chromium."""
    train = root / "train-llama-qat"
    return [
        ("verify the spiking core", ["verify", "--out", str(root / "verify" / "verify.json")]),
        ("fetch the data", ["data", "fetch"]),
        ("train the tiny Llama (QAT) on PTB", ["train", "--arch", "llama", "--mode", "qat", "--config", "tiny", "--max-steps", str(train_steps), "--out", str(train)]),
        ("stage 3: STDP on the tiny SNN", ["stdp", "--checkpoint", str(train / "checkpoint"), "--out", str(root / "stdp-llama")]),
        ("stage 2: convert SmolLM2-135M", ["convert", "--model", "smollm2-135m", "--bits", "8", "--out", str(root / "convert-smollm2")]),
        ("evaluate SmolLM2 ANN and SNN", ["eval", "--model", "smollm2-135m", "--modes", "ann,snn-fused", "--suite", "demo", "--limit", str(limit),
                                          "--max-gen-toks", str(max_gen_toks), "--results", str(root), "--run-id", "eval-smollm2"]),
        ("write the report", ["report", str(root / "eval-smollm2"), str(train), str(root / "convert-smollm2"), str(root / "stdp-llama"),
                              "--name", "demo", "--out", "reports", *(["--screenshot"] if screenshot else [])]),
    ]


def run_demo(args) -> int:
    from .cli import main

    root = Path(args.results)
    from .report_cli import find_browser

    plan = steps(root, args.train_steps, args.limit, args.max_gen_toks, screenshot=find_browser() is not None)
    if args.dry_run:
        for title, argv in plan:
            print(f"{title}: snnbench {' '.join(argv)}")
        return 0
    started = time.perf_counter()
    for i, (title, argv) in enumerate(plan, 1):
        print(f"\n[{i}/{len(plan)}] {title} ({time.perf_counter() - started:.0f} s so far)\n    snnbench {' '.join(argv)}", flush=True)
        status = main(argv)
        if status != 0:
            print(f"demo: step '{title}' exited with {status}; finished steps are kept, run the demo again to resume")
            return status
    shot = " (and its screenshot, reports/demo/screenshot.png)" if "--screenshot" in plan[-1][1] else ""
    print(f"\ndemo finished in {(time.perf_counter() - started) / 60:.1f} min; open reports/demo/report.html{shot}")
    return 0


def add_parser(commands) -> None:
    p = commands.add_parser("demo", help="the end-to-end job: verify, fetch, train, STDP, convert, evaluate, report")
    p.add_argument("--results", default="results/demo")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--limit", type=int, default=2)
    p.add_argument("--max-gen-toks", type=int, default=32)
    p.add_argument("--dry-run", action="store_true", help="print the steps without running them")
