"""``Results``: everything ``snnbench report`` read from its folders (``collect.read`` fills it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class Results:
    metrics: list[pd.DataFrame] = field(default_factory=list)
    cost: list[pd.DataFrame] = field(default_factory=list)
    paired: list[pd.DataFrame] = field(default_factory=list)
    energy: list[pd.DataFrame] = field(default_factory=list)
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    training: dict[str, tuple[dict[str, Any], pd.DataFrame]] = field(default_factory=dict)
    conversions: dict[str, tuple[dict[str, Any], pd.DataFrame]] = field(default_factory=dict)
    stdp: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # name -> table (neurtransformer, ablation, bench ...)
    energy_analyses: dict[str, pd.DataFrame] = field(default_factory=dict)  # folder -> energy-analysis.csv
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)  # lm-eval run -> its settings row
    notes: list[str] = field(default_factory=list)

    def metrics_frame(self) -> pd.DataFrame:
        return pd.concat(self.metrics, ignore_index=True) if self.metrics else pd.DataFrame()

    def energy_frame(self) -> pd.DataFrame:
        return pd.concat(self.energy, ignore_index=True) if self.energy else pd.DataFrame()

    def cost_frame(self) -> pd.DataFrame:
        return pd.concat(self.cost, ignore_index=True) if self.cost else pd.DataFrame()

    def paired_frame(self) -> pd.DataFrame:
        return pd.concat(self.paired, ignore_index=True) if self.paired else pd.DataFrame()
