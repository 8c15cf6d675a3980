"""The pipeline's stages run on their own, each with the measurements that say how it went:

    training.py     stage 1: ``snnbench train`` (and the QAT -> SNN swap check)
    conversion.py   stage 2: ``snnbench convert`` (perplexity of ANN, QAT and SNN, the per-layer audit)
    stdp.py         stage 3: ``snnbench stdp`` (time steps, perplexity and estimated energy before and after)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StageResult:
    """What a stage gave: its summary (the JSON file it wrote), a table to show, and the folder it wrote to."""

    summary: dict[str, Any]
    table: str
    out: Path
