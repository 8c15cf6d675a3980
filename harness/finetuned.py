"""Which quantization-aware fine-tunings of a pretrained model exist (``snnbench train --init``), and the best one per bit width.

A fine-tuning run folder (``results/train/<model>-qat-b<bits>-...``) counts once it finished: its
``summary.json`` names the float model it started from (name and sha256 of its files) and its KL to that
model on held-out text; its ``checkpoint/`` is the QAT model. "Best" is the lowest KL to the float model,
the quantity the fine-tuning minimizes. Runs of another model, or of other files under the same name,
never count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.spiking.checks import max_level

TRAIN_ROOT = Path("results/train")


@dataclass(frozen=True)
class FineTuned:
    """A finished fine-tuning: its checkpoint, bit width, time steps, KL to the float model and step count."""

    checkpoint: Path
    bits: int
    time_steps: int
    valid_kl: float
    steps: int
    test_perplexity: float

    def describe(self) -> str:
        return f"{self.checkpoint} ({self.steps} steps, KL to the float model {self.valid_kl:.4f} nats/token)"


def _read_summary(folder: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) and isinstance(summary.get("init"), dict) else None


def finetuned_runs(identity: dict[str, str], root: Path = TRAIN_ROOT) -> list[FineTuned]:
    """Every finished fine-tuning under ``root`` that started from the model of ``identity`` (name and sha256)."""
    found = []
    for folder in sorted(root.glob("*")) if root.is_dir() else []:
        summary = _read_summary(folder)
        if summary is None or not (folder / "checkpoint" / "model.safetensors").is_file():
            continue
        init = summary["init"]
        if init.get("name") != identity["name"] or init.get("sha256") != identity["sha256"]:
            continue
        spiking = summary.get("spiking", {})
        try:
            found.append(FineTuned(folder / "checkpoint", int(spiking["bits"]), int(spiking.get("time_steps") or max_level(int(spiking["bits"]))),
                                   float(summary["valid_kl_to_teacher"]), int(summary["steps"]), float(summary["test_perplexity"])))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def best_finetuned(identity: dict[str, str], bits: int, root: Path = TRAIN_ROOT) -> FineTuned | None:
    """The finished fine-tuning of that model at ``bits`` with the lowest KL to the float model, or None."""
    runs = [run for run in finetuned_runs(identity, root) if run.bits == bits]
    return min(runs, key=lambda run: run.valid_kl, default=None)


def check_started_from(checkpoint: Path | str, config: dict[str, Any], identity: dict[str, str], model: str, flag: str = "--snn-from") -> None:
    """The fine-tuned ``checkpoint`` (its ``config``) names the float model ``identity`` as where its training started;
    a one-line error naming both otherwise (the spiking side of a comparison must be that model's fine-tuning)."""
    init = config.get("training", {}).get("identity", {}).get("init", {})
    if init.get("sha256") != identity["sha256"]:
        raise ValueError(f"{flag} {checkpoint}: was not fine-tuned from --model {model} "
                         f"(it started from {init.get('name', 'no recorded model')}); give a fine-tuning of {model}")
