"""Paired comparisons of run folders: ``paired.csv`` of a run's modes, any two runs, and the headlines.

``write_paired(run, modes, encode)`` compares each mode after the first with the first (the
reference, the ANN in ``--modes ann,snn-fused``) on the documents both answered and writes
``<run>/paired.csv``. ``compare_runs`` does the same for two modes of two runs (another model,
another setting). ``headlines`` turns the rows into one sentence per task and overall.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from tasks.files import atomic_write_text

from ..runs import read_json
from .compare import Margins, compare_outcomes
from .documents import Encode, model_encoder, read_outcomes

MAIN = ("accuracy difference", "exact match difference", "nats per token difference")


def _labelled(rows: pd.DataFrame, reference: str, candidate: str) -> pd.DataFrame:
    rows = rows.copy()
    rows.insert(0, "reference", reference)
    rows.insert(1, "candidate", candidate)
    return rows


def paired_rows(run: Path, modes: list[str], encode: Encode, margins: Margins = Margins()) -> pd.DataFrame:
    """Each later mode of ``run`` against its first, on the documents both answered."""
    reference = read_outcomes(run / modes[0], encode)
    frames = [_labelled(compare_outcomes(reference, read_outcomes(run / mode, encode), margins), modes[0], mode) for mode in modes[1:]]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_paired(run: Path, modes: list[str], encode: Encode, margins: Margins = Margins()) -> pd.DataFrame:
    """``<run>/paired.csv`` of ``paired_rows`` (rewritten from the finished tasks, like the other tables)."""
    rows = paired_rows(run, modes, encode, margins)
    atomic_write_text(run / "paired.csv", rows.to_csv(index=False))
    return rows


def run_side(spec: str) -> tuple[Path, str]:
    """``RUN[:MODE]`` -> (run folder, mode); the mode defaults to the run's first; one-line errors."""
    folder, _, mode = spec.partition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    run = Path(folder)
    manifest = read_json(run / "manifest.json")
    modes = manifest.get("modes", []) if isinstance(manifest, dict) else []
    mode = mode or (modes[0] if modes else "")
    if mode not in modes:
        raise ValueError(f"{run} has no mode {mode!r}; its modes: {', '.join(modes) or 'none'}")
    return run, mode


def compare_runs(reference: str, candidate: str, margins: Margins = Margins()) -> pd.DataFrame:
    """Two ``RUN[:MODE]`` sides on the documents both answered, each scored with its own model's tokenizer."""
    sides = [run_side(spec) for spec in (reference, candidate)]
    outcomes = []
    for run, mode in sides:
        manifest = read_json(run / "manifest.json")
        outcomes.append(read_outcomes(run / mode, model_encoder(manifest["model_path"])))
    rows = compare_outcomes(outcomes[0], outcomes[1], margins)
    return _labelled(rows, f"{sides[0][0].name}:{sides[0][1]}", f"{sides[1][0].name}:{sides[1][1]}") if not rows.empty else rows


def _points(row: pd.Series) -> str:
    unit = "points" if row["unit"] == "points" else "nats/token"
    digits = 1 if unit == "points" else 3
    return (f"{row['quantity'].replace(' difference', '')} {row['value']:+.{digits}f} {unit}, 95% CI "
            f"[{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]")


def headlines(rows: pd.DataFrame, energy_ratio: dict[str, float] | None = None, preset: str = "") -> list[str]:
    """One sentence per suite task and overall: the main difference with its CI and verdict, agreement,
    McNemar p, the per-token likelihood shift, and the candidate's estimated energy per token relative to the reference."""
    out = []
    scopes = rows[rows["level"].isin(["overall", "suite task"]) | (rows["level"] == "task") & (rows["task"] == rows["suite_task"])]
    for (reference, candidate, suite, filt), part in scopes.groupby(["reference", "candidate", "suite_task", "filter"], sort=False):
        main = part[part["quantity"].isin(MAIN)]
        if main.empty:
            continue
        head = main.iloc[0]
        by = part.set_index("quantity")
        extra = []
        if "agreement" in by.index:
            extra.append(f"agreement {100 * by.loc['agreement', 'value']:.0f}%")
        if pd.notna(head.get("p_value")):
            extra.append(f"McNemar p = {head['p_value']:.2g}")
        if "gold log-likelihood difference" in by.index:
            extra.append(f"{by.loc['gold log-likelihood difference', 'value']:+.3f} nats/token on the gold answer")
        ratio = (energy_ratio or {}).get(suite)
        energy = f"; estimated energy {ratio:.2g}x under {preset}" if ratio and math.isfinite(ratio) else ""
        where = suite + (f" ({filt})" if filt not in ("none", "primary") else "")
        out.append(f"{candidate} vs {reference}, {where}, {int(head['documents'])} documents: {_points(head)}: "
                   f"{head['verdict']}" + (f"; {', '.join(extra)}" if extra else "") + energy)
    return out
