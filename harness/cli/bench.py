"""``snnbench bench``: the performance benchmarks (the top-level ``benchmarks`` package), not tests.

    snnbench bench                       # all seven, SmolLM2, full sizes, 3 repeats
    snnbench bench --quick --only 3,6    # a smoke run on small sizes
    snnbench bench --threads 2 --repeats 5 --out results/bench

Writes ``<out>/bench.json`` and ``<out>/bench.md``.
"""

from __future__ import annotations

import argparse

from tasks.fetch import use_data_dir


def add_parser(commands) -> None:
    p = commands.add_parser("bench", help="performance benchmarks: adapter vs HFLM, snn vs snn-fused, overhead, MFU, training, neuron")
    p.add_argument("--only", default=None, help="comma-separated benchmark numbers 1..7 (default: all)")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run; benchmarks 1, 2, 4, 5 fall back to a tiny random Llama without SmolLM2")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each side (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size of both lm-eval models (default 8, as snnbench eval)")
    p.add_argument("--model", default="smollm2-135m", help="float model for benchmarks 1, 2, 4, 5 (registry name, checkpoint, .gguf, or tiny-random with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and tiny models")
    p.add_argument("--out", default="results/bench", help="output folder: bench.json and bench.md")
    p.add_argument("--data-dir", default=None, help="data folder (default: $SNNBENCH_DATA or ~/.cache/snnbench)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from benchmarks.runner import run_bench  # the one import of harness into benchmarks: the command that runs them

    use_data_dir(args.data_dir)
    return run_bench({
        "only": args.only,
        "quick": args.quick,
        "repeats": args.repeats,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "model": args.model,
        "seed": args.seed,
        "out": args.out,
    })
