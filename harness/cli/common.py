"""What several commands' flags share."""

from __future__ import annotations

import argparse
from functools import partial

DATA_DIR_HELP = "data folder (default: $SNNBENCH_DATA or ~/.cache/snnbench)"
CODINGS = ("rate", "bitwise", "multilevel")  # the spike codings, models.spiking.checks.CODINGS (not imported: --help stays free of torch)
say = partial(print, flush=True)  # progress lines, shown as they happen


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_training_run_flags(p: argparse.ArgumentParser, out: str | None, fresh: str, *switches: tuple[str, str]) -> None:
    """The closing flags of the commands that train: --out, --fresh, their own on/off ``switches`` ((flag, help) each),
    --device and --data-dir."""
    p.add_argument("--out", default=out)
    p.add_argument("--fresh", action="store_true", help=fresh)
    for flag, text in switches:
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("--device", default=None)
    p.add_argument("--data-dir", default=None)
