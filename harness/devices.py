"""The ``--device`` flag of every command that runs a model: checked once, before any work."""

from __future__ import annotations

import re

import torch

DEVICE_HELP = "cpu, cuda or cuda:<index> (default: cuda when available, else cpu)"


def check_device(device: str | None, flag: str = "--device") -> str:
    """``cpu``, ``cuda`` or ``cuda:<i>`` that exists here (default: cuda when available); a one-line error otherwise."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"{flag} must be cpu, cuda or cuda:<index>, got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{flag} {device}: CUDA is not available here (torch {torch.__version__}); use {flag} cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters live (inputs are moved there)."""
    return next(model.parameters()).device
