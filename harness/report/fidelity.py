"""The report's first answer: does the spiking model still do what its ANN does?

From each run's ``paired.csv``: one headline per task and overall (difference with its 95%
confidence interval and verdict, agreement, McNemar p, the gold answer's log-likelihood shift,
and the estimated energy of the candidate relative to the reference), the rule behind the word
"inconclusive", and a forest plot of the differences with their intervals.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..paired.compare import Margins  # noqa: E402
from ..paired.runs import MAIN, headlines  # noqa: E402
from .plots import save  # noqa: E402
from .render import Block  # noqa: E402

RULE = (f"Verdicts: a 95% paired-bootstrap confidence interval (10,000 resamples of the documents) that excludes 0 says "
        f"lower or higher; one inside +-{Margins().accuracy_points:g} accuracy points (or +-{Margins().nats_per_token:g} "
        "nats per token for perplexity) says equivalent; an interval that contains 0 but reaches beyond the margin is "
        "inconclusive: the sample cannot tell. McNemar's exact test counts the documents on which the two sides disagree.")


def energy_ratios(energy: pd.DataFrame, run: str, reference: str, candidate: str, preset: str) -> dict[str, float]:
    """Candidate's estimated joules per token over the reference's, per suite task and overall, under ``preset``."""
    priced = energy[(energy["run"] == run) & (energy["kind"] == "estimated") & (energy["source"] == f"synops:{preset}")]
    per_mode = priced.groupby(["mode", "suite_task"])[["joules", "tokens"]].sum()
    ratios: dict[str, float] = {}
    if reference not in per_mode.index.get_level_values(0) or candidate not in per_mode.index.get_level_values(0):
        return ratios
    ref, cand = per_mode.loc[reference], per_mode.loc[candidate]
    for suite in ref.index.intersection(cand.index):
        ratios[suite] = (cand.loc[suite, "joules"] / cand.loc[suite, "tokens"]) / (ref.loc[suite, "joules"] / ref.loc[suite, "tokens"])
    for label in ("all tasks with right answers", "all perplexity tasks"):
        ratios[label] = (cand["joules"].sum() / cand["tokens"].sum()) / (ref["joules"].sum() / ref["tokens"].sum())
    return ratios


def forest(rows: pd.DataFrame, path: Path) -> str | None:
    """Each task's main difference (candidate minus reference) with its 95% CI, one panel per unit."""
    main = rows[rows["quantity"].isin(MAIN) & rows["level"].isin(["task", "suite task", "overall"])]
    main = main[(main["level"] != "task") | (main["task"] == main["suite_task"])]
    if main.empty:
        return None
    units = sorted(main["unit"].unique(), key=lambda u: u != "points")
    height = max(2.5, 0.32 * main.groupby("unit").size().max() + 1.2)
    fig, axes = plt.subplots(1, len(units), figsize=(6.5 * len(units), height), squeeze=False)
    for ax, unit in zip(axes[0], units):
        part = main[main["unit"] == unit].reset_index(drop=True)
        labels = [f"{r.run}: {r.candidate} vs {r.reference}, {r.suite_task}" + (f" ({r.filter})" if r.filter not in ("none", "primary") else "")
                  for r in part.itertuples()] if part["run"].nunique() > 1 else \
                 [f"{r.candidate} vs {r.reference}, {r.suite_task}" + (f" ({r.filter})" if r.filter not in ("none", "primary") else "") for r in part.itertuples()]
        y = np.arange(len(part))[::-1]
        colors = ["tab:gray" if v.startswith(("inconclusive", "no ")) else ("tab:green" if v.startswith("equivalent") else "tab:red") for v in part["verdict"]]
        for row, height, color in zip(part.itertuples(), y, colors):
            ax.errorbar([row.value], [height], xerr=[[row.value - row.ci_low], [row.ci_high - row.value]], fmt="o", color=color,
                        capsize=3, markersize=7 if row.level == "overall" else 4)
        margin = Margins().accuracy_points if unit == "points" else Margins().nats_per_token
        ax.axvspan(-margin, margin, color="tab:green", alpha=0.08)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlabel("accuracy / exact match difference (points)" if unit == "points" else "difference in nats per token")
    save(fig, path)
    return ("Differences of the candidate (the SNN) from its reference (the ANN, or an lm-eval baseline) on the same documents, "
            "with 95% paired-bootstrap intervals; large dots pool all tasks. The shaded band is the equivalence margin; green: equivalent, red: a "
            "difference the sample shows, gray: inconclusive.")


def fidelity_blocks(paired: pd.DataFrame, energy: pd.DataFrame, preset: str, out: Path) -> list[Block]:
    """The section "Does the SNN still work?": headlines, the rule, the forest plot."""
    if paired.empty:
        return []
    lines = []
    for (run, reference, candidate), rows in paired.groupby(["run", "reference", "candidate"], sort=True):
        ratios = energy_ratios(energy, run, reference, candidate, preset) if not energy.empty else {}
        lines += [(f"{run}: " if paired["run"].nunique() > 1 else "") + line for line in headlines(rows, ratios, preset)]
    blocks: list[Block] = [("h2", "Does the SNN still work? (paired, document by document)"), ("ul", lines), ("p", RULE)]
    caption = forest(paired, out / "plots" / "paired_forest.png")
    if caption:
        blocks.append(("figure", "plots/paired_forest.png", caption))
    return blocks
