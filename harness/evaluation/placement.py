"""Where the lm-eval adapter runs and how many sequences it batches: ``device`` (CPU when CUDA is absent, whatever
lm-eval's default says) and ``batch_size`` (an integer, or ``auto``: probed on CUDA, 8 on a CPU)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

import torch

DEFAULT_BATCH = 8  # sequences per forward when none is given (and batch_size=auto on a CPU)
AUTO_BATCH_MAX = 64  # batch_size=auto on CUDA: the largest batch probed unless max_batch_size says otherwise (lm-eval's HFLM default)


def pick_device(device: str | None, world_size: int = 1) -> torch.device:
    """The device to run on: ``device`` if usable; CPU when CUDA is absent (lm-eval's CLI defaults to
    ``cuda:0`` on every machine); under a launcher with several CUDA processes, LOCAL_RANK's GPU."""
    wanted = str(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        print(f"snnbench: CUDA is not available here, running on the CPU instead of {wanted}", file=sys.stderr)
        return torch.device("cpu")
    if wanted in ("cuda", "cuda:0") and world_size > 1:  # lm-eval's default is cuda:0: every rank would share GPU 0
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    try:
        return torch.device(wanted)
    except RuntimeError:
        raise ValueError(f"device must be cpu, cuda or cuda:<index>, got {wanted!r}") from None


def parse_batch_size(value: int | str | None) -> int | str:
    """lm-eval's ``batch_size``: an integer >= 1 (None: 8), or ``"auto"`` for ``auto`` and ``auto:N``; a one-line error otherwise."""
    text = str(DEFAULT_BATCH if value is None else value).strip()
    if re.fullmatch(r"auto(:\d+)?", text):
        return "auto"
    try:
        size = int(text)
    except ValueError:
        raise ValueError(f"batch_size must be an integer >= 1, auto or auto:N, got {value!r}") from None
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {value}")
    return size


def _fits(probe: Callable[[int], None], size: int) -> bool:
    try:
        probe(size)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def auto_batch_size(device: torch.device, probe: Callable[[int], None], largest: int | None = None) -> int:
    """``batch_size=auto``: on CUDA, the largest power of two up to ``largest`` (default 64) for which ``probe(size)``
    does not run out of GPU memory; elsewhere 8, unprobed (a CPU raises no out-of-memory error: the system kills the process)."""
    if device.type != "cuda":
        return min(DEFAULT_BATCH, largest or DEFAULT_BATCH)
    fits, size = 0, 1
    while size <= (largest or AUTO_BATCH_MAX) and _fits(probe, size):
        fits, size = size, size * 2
    if not fits:
        raise ValueError("batch_size=auto: one sequence of a full context window does not fit in GPU memory; "
                         "give model_args max_length=<fewer tokens>")
    return fits
