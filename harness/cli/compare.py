"""``snnbench compare REF[:MODE] CAND[:MODE]``: two evaluated models (or modes) document by document (``harness/paired/``)."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    p = commands.add_parser("compare", help="paired comparison of two eval runs (or two modes) on the documents both answered")
    p.add_argument("reference", help="RUN[:MODE]: an eval run folder and one of its modes (default: its first mode)")
    p.add_argument("candidate", help="RUN[:MODE] compared with the reference (candidate minus reference)")
    p.add_argument("--out", default=None, help="output folder: paired-<reference run>-<mode>.csv, the paired rows (default: the candidate's run folder)")
    p.add_argument("--margin-points", type=float, default=3.0, help="accuracy difference still called equivalent (points)")
    p.add_argument("--margin-nats", type=float, default=0.02, help="perplexity difference still called equivalent (nats per token)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.paired.compare import Margins
    from harness.paired.runs import compare_runs, headlines, run_side
    from tasks.files import atomic_write_text

    from tasks.files import check_writable

    if args.margin_points <= 0 or args.margin_nats <= 0:
        raise ValueError("--margin-points and --margin-nats must be > 0")
    if args.out is not None and Path(args.out).suffix == ".csv":
        raise ValueError(f"--out {args.out}: --out is the folder the paired CSV goes to; give --out {Path(args.out).parent}")
    folder = check_writable(args.out, "--out") if args.out is not None else None
    rows = compare_runs(args.reference, args.candidate, Margins(args.margin_points, args.margin_nats))
    if rows.empty:
        raise ValueError(f"{args.reference} and {args.candidate} share no finished document; run the same tasks with the same settings on both")
    ref_run, ref_mode = run_side(args.reference)
    cand_run, _ = run_side(args.candidate)
    out = (folder or cand_run) / f"paired-{ref_run.name}-{ref_mode}.csv"
    atomic_write_text(out, rows.to_csv(index=False))
    for line in headlines(rows):
        print(line)
    print(f"wrote {out}")
    return 0
