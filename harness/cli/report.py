"""``snnbench report RUN [RUN ...]``: write reports/<name>/ from result folders (``harness/report/``)."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    p = commands.add_parser("report", help="write a markdown + self-contained HTML report (tables, plots) from result folders")
    p.add_argument("runs", nargs="+", help="result folders: eval runs, training runs, conversions, stdp, tables; lm-eval --output_path "
                                           "folders (or one results_*.json) as extra runs")
    p.add_argument("--name", default=None, help="report name (default: from the folders)")
    p.add_argument("--out", default="reports", help="output folder: the report goes to <out>/<name>/")
    p.add_argument("--screenshot", action="store_true", help="also render report.html in headless Chromium to screenshot.png")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.report import browser, build

    out = build.write_report(args.runs, args.name, args.out)
    print(f"report: {out / 'report.html'} (and report.md, tables/, plots/)")
    if args.screenshot:
        print(f"screenshot: {browser.screenshot(out / 'report.html', out / 'screenshot.png')}")
    return 0
