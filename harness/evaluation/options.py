"""What ``snnbench eval`` is asked for: one field per flag, with the flags' defaults (light: no torch, no lm-eval)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# What a float model is calibrated on when a spiking mode is asked for: the train split of a corpus, its first
# ``tokens`` tokens in sequences of ``window`` tokens (a context window), two a batch. Recorded in every run's settings.
CALIBRATION = {"data": "webtext", "split": "train", "tokens": 1024, "window": 256}
CALIBRATION_BATCH = 2
BOOTSTRAP_ITERS = 1000  # lm-eval's standard errors: closed form for means, this many resamples for perplexities


@dataclass
class EvalOptions:
    """The settings of one ``snnbench eval`` (the fields are the flags, in the order ``--help`` lists them)."""

    model: str
    modes: str = "ann,snn-fused"
    suite: str | None = None
    tasks: list[str] | None = None
    limit: int | None = None
    seed: int = 1234
    bits: int = 8
    time_steps: int | None = None
    granularity: str = "smoothed"
    coding: str = "rate"
    snn_from: str | None = None
    batch_size: int = 8
    max_length: int | None = None
    device: str | None = None
    max_gen_toks: int | None = None
    meters: str = "auto"
    idle_seconds: float = 5.0
    energy_presets: str = "45nm-fp32,45nm-int8"
    energy_presets_file: str | None = None
    out: str = "results"
    run_id: str | None = None
    data_dir: str | None = None

    @classmethod
    def from_namespace(cls, args: Any) -> "EvalOptions":
        """The options of parsed ``snnbench eval`` flags (an ``argparse.Namespace``)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def as_command(self) -> dict[str, Any]:
        """The command as the run's manifest records it."""
        return {"command": "eval", **asdict(self)}
