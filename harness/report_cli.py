"""``snnbench report RUN [RUN ...]``: write reports/<name>/ from result folders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    """The path of an installed Chromium (or Chrome), else None."""
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def screenshot(html: Path, png: Path, width: int = 1200, height: int = 3000) -> Path:
    """Render ``html`` in headless Chromium and save a PNG (proves the page opens offline)."""
    browser = find_browser()
    if browser is None:
        raise ValueError("no Chromium found for --screenshot; install it (Debian: apt-get install chromium) or leave the flag out")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--window-size={width},{height}", f"--screenshot={png.resolve()}", html.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not png.exists():
        raise ValueError(f"Chromium could not render {html} (exit {result.returncode}): {(result.stderr or '').strip().splitlines()[-1:]}")
    return png


def run_report(args) -> int:
    from .report.build import build_report

    from tasks.files import check_writable

    name = args.name or "+".join(Path(r).name for r in args.runs)[:120]
    if not name or name in (".", "..") or "/" in name:
        raise ValueError(f"--name {name!r} is not a plain folder name")
    check_writable(Path(args.out) / name, "--out")
    out = build_report(args.runs, name, args.out)
    print(f"report: {out / 'report.html'} (and report.md, tables/, plots/)")
    if args.screenshot:
        print(f"screenshot: {screenshot(out / 'report.html', out / 'screenshot.png')}")
    return 0


def add_parser(commands) -> None:
    p = commands.add_parser("report", help="write a markdown + self-contained HTML report (tables, plots) from result folders")
    p.add_argument("runs", nargs="+", help="result folders: eval runs, training runs, conversions, stdp, tables")
    p.add_argument("--name", default=None, help="report name (default: from the folders)")
    p.add_argument("--out", default="reports")
    p.add_argument("--screenshot", action="store_true", help="also render report.html in headless Chromium to screenshot.png")
