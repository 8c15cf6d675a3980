"""``snnbench demo``: the whole story in one command (what ``make demo`` runs).

verify the spiking core -> fetch the data -> train the tiny Llama with QAT on Penn Treebank (and
convert it to the SNN, losslessly) -> STDP (stage 3) -> convert SmolLM2-135M (stage 2) -> evaluate
SmolLM2's ANN and SNN side by side on a slice of every suite, with energy -> one HTML report. The SNN
evaluated is the best finished quantization-aware fine-tuning of SmolLM2 at 8 bits in results/train
when one exists (``snnbench train --init smollm2-135m``), else the calibrated conversion; the eval
step says which.
Every step resumes if the demo is run again; the last line says where the report is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

Step = tuple[str, list[str]]  # (title, the snnbench command line)


def steps(root: Path, train_steps: int, limit: int | None = None, max_gen_toks: int | None = None, screenshot: bool = False,
          device: str | None = None) -> list[Step]:
    """The demo's commands in order; ``screenshot``: the report step also renders the HTML in headless Chromium;
    ``device``: where every step that runs a model runs (default: each command's own)."""
    train = root / "train-llama-qat"
    on = ["--device", device] if device else []
    plan = [
        ("verify the spiking core", ["verify", "--out", str(root / "verify")]),
        ("fetch the data", ["data", "fetch"]),
        ("train the tiny Llama (QAT) on PTB", ["train", "--arch", "llama", "--mode", "qat", "--config", "tiny", "--max-steps", str(train_steps), "--out", str(train), *on]),
        ("stage 3: STDP on the tiny SNN", ["stdp", "--checkpoint", str(train / "checkpoint"), "--out", str(root / "stdp-llama"), *on]),
        ("stage 2: convert SmolLM2-135M", ["convert", "--model", "smollm2-135m", "--bits", "8", "--out", str(root / "convert-smollm2"), *on]),
        ("evaluate SmolLM2 ANN and SNN", ["eval", "--model", "smollm2-135m", "--modes", "ann,snn-fused", "--suite", "demo", "--snn-from", "auto",
                                          *(["--limit", str(limit)] if limit else []), *(["--max-gen-toks", str(max_gen_toks)] if max_gen_toks else []),
                                          "--out", str(root), "--run-id", "eval-smollm2", *on]),
        ("write the report", ["report", str(root / "eval-smollm2"), str(train), str(root / "convert-smollm2"), str(root / "stdp-llama"),
                              "--name", "demo", "--out", "reports", *(["--screenshot"] if screenshot else [])]),
    ]
    return plan


def run_demo(plan: list[Step], run_command: Callable[[list[str]], int], say: Callable[[str], None]) -> int:
    """Run each step's command line with ``run_command`` (``snnbench``'s own entry point) until one fails; its exit status."""
    started = time.perf_counter()
    for i, (title, argv) in enumerate(plan, 1):
        say(f"\n[{i}/{len(plan)}] {title} ({time.perf_counter() - started:.0f} s so far)\n    snnbench {' '.join(argv)}")
        status = run_command(argv)
        if status != 0:
            say(f"demo: step '{title}' exited with {status}; finished steps are kept, run the demo again to resume")
            return status
    shot = " (and its screenshot, reports/demo/screenshot.png)" if "--screenshot" in plan[-1][1] else ""
    say(f"\ndemo finished in {(time.perf_counter() - started) / 60:.1f} min; open reports/demo/report.html{shot}")
    return 0
