"""Compare a candidate (e.g. the SNN) with a reference (its ANN) on the documents both answered.

``compare_outcomes(reference, candidate)`` pairs the two sides' per-document outcomes (same
task, document and filter, and the same prompt: a different prompt is a different document) and
returns one tidy row per figure, at three levels: each lm-eval task, each suite task (a group
such as MMLU pooled over its subjects) and overall (every document with a right/wrong outcome,
every perplexity document). Differences are candidate minus reference.

| kind | figures |
|---|---|
| choice, loglikelihood | accuracy difference (points, bootstrap CI, verdict), agreement, flips each way, exact McNemar p, the same for length-normalized accuracy where the task has it, gold log-likelihood difference per token (CI), KL(reference \\|\\| candidate) of the choice distributions (choice only, CI) |
| rolling | nats-per-token difference (CI, verdict), perplexity ratio (CI) |
| generation | exact-match difference (CI, verdict), answer agreement, flips, McNemar p |
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .stats import Interval, bootstrap_mean, bootstrap_ratio, choice_distribution, kl_divergence, mcnemar_exact, right_wrong_difference, verdict

KEYS = ["suite_task", "task", "doc_id", "filter"]


@dataclass(frozen=True)
class Margins:
    """What counts as "no meaningful difference": the verdicts' equivalence margins."""

    accuracy_points: float = 3.0
    nats_per_token: float = 0.02


def pair_outcomes(reference: pd.DataFrame, candidate: pd.DataFrame) -> pd.DataFrame:
    """The documents both sides answered, side by side (``_ref`` / ``_cand`` columns); a one-line error
    when a document was asked with another prompt on each side (other settings: not comparable)."""
    if reference.empty or candidate.empty:
        return pd.DataFrame()
    paired = reference.merge(candidate, on=KEYS, suffixes=("_ref", "_cand"))
    other = paired[paired["prompt_hash_ref"] != paired["prompt_hash_cand"]]
    if len(other):
        first = other.iloc[0]
        raise ValueError(f"{first['task']} document {first['doc_id']} was asked with different prompts on the two sides "
                         "(other few-shot examples, context length or task version): the runs are not comparable")
    return paired


def _row(scope: dict, quantity: str, unit: str, interval: Interval | None = None, value: float | None = None,
         documents: int = 0, p_value: float | None = None, decision: str = "") -> dict:
    if interval is not None:
        value, low, high = interval.value, interval.low, interval.high
    else:
        low = high = np.nan
    return {**scope, "quantity": quantity, "unit": unit, "value": value, "ci_low": low, "ci_high": high,
            "documents": documents, "p_value": p_value, "verdict": decision}


def _right_wrong_rows(scope: dict, docs: pd.DataFrame, margins: Margins, what: str) -> list[dict]:
    """Accuracy (or exact-match) difference, agreement, flips and McNemar for right/wrong outcomes."""
    ref, cand = docs["correct_ref"].to_numpy(float), docs["correct_cand"].to_numpy(float)
    difference = right_wrong_difference(ref, cand)
    up, down = int(((ref == 0) & (cand == 1)).sum()), int(((ref == 1) & (cand == 0)).sum())
    n = len(docs)
    rows = [_row(scope, f"{what} difference", "points", difference, documents=n, p_value=mcnemar_exact(up, down),
                 decision=verdict(difference, margins.accuracy_points, n)),
            _row(scope, f"{what} reference", "points", value=100 * ref.mean(), documents=n),
            _row(scope, f"{what} candidate", "points", value=100 * cand.mean(), documents=n),
            _row(scope, "flips wrong -> right", "documents", value=up, documents=n),
            _row(scope, "flips right -> wrong", "documents", value=down, documents=n)]
    agree = _agreement(docs)
    rows.append(_row(scope, "agreement", "share", bootstrap_mean(agree), documents=n))
    if "correct_norm_ref" in docs and docs["correct_norm_ref"].notna().all() and docs["correct_norm_cand"].notna().all():
        ref_n, cand_n = docs["correct_norm_ref"].to_numpy(float), docs["correct_norm_cand"].to_numpy(float)
        normalized = right_wrong_difference(ref_n, cand_n)
        up_n, down_n = int(((ref_n == 0) & (cand_n == 1)).sum()), int(((ref_n == 1) & (cand_n == 0)).sum())
        rows += [_row(scope, "normalized accuracy difference", "points", normalized, documents=n, p_value=mcnemar_exact(up_n, down_n),
                      decision=verdict(normalized, margins.accuracy_points, n)),
                 _row(scope, "normalized accuracy reference", "points", value=100 * ref_n.mean(), documents=n),
                 _row(scope, "normalized accuracy candidate", "points", value=100 * cand_n.mean(), documents=n)]
    return rows


def _agreement(docs: pd.DataFrame) -> np.ndarray:
    """1 where both sides gave the same answer: the same choice, the same text, else the same right/wrong."""
    agree = []
    for row in docs.itertuples(index=False):
        if row.kind_ref == "choice":
            agree.append(np.argmax(row.choice_lls_ref) == np.argmax(row.choice_lls_cand))
        elif row.kind_ref == "generation":
            agree.append(row.answer_ref == row.answer_cand)
        else:
            agree.append(row.correct_ref == row.correct_cand)
    return np.array(agree, dtype=float)


def _likelihood_rows(scope: dict, docs: pd.DataFrame) -> list[dict]:
    """Gold continuation log-likelihood difference per token, and the choice distributions' KL."""
    n = len(docs)
    per_token = bootstrap_ratio((docs["gold_ll_cand"] - docs["gold_ll_ref"]).to_numpy(float), docs["gold_tokens_ref"].to_numpy(float))
    rows = [_row(scope, "gold log-likelihood difference", "nats per token", per_token, documents=n)]
    if docs["kind_ref"].iloc[0] == "choice":
        kl = [kl_divergence(choice_distribution(a), choice_distribution(b)) for a, b in zip(docs["choice_lls_ref"], docs["choice_lls_cand"])]
        rows.append(_row(scope, "KL(reference || candidate) of the choices", "nats", bootstrap_mean(np.array(kl)), documents=n))
    return rows


def _rolling_rows(scope: dict, docs: pd.DataFrame, margins: Margins) -> list[dict]:
    """Nats per token (candidate minus reference) over whole documents, and the perplexity ratio."""
    n = len(docs)
    difference = bootstrap_ratio((docs["total_ll_ref"] - docs["total_ll_cand"]).to_numpy(float), docs["tokens_ref"].to_numpy(float))
    ratio = Interval(*(float(np.exp(x)) for x in (difference.value, difference.low, difference.high)))
    return [_row(scope, "nats per token difference", "nats per token", difference, documents=n,
                 decision=verdict(difference, margins.nats_per_token, n)),
            _row(scope, "perplexity ratio", "candidate / reference", ratio, documents=n)]


def _rows_for(scope: dict, docs: pd.DataFrame, margins: Margins) -> list[dict]:
    kind = docs["kind_ref"].iloc[0]
    scope = {**scope, "kind": kind}
    if kind == "rolling":
        return _rolling_rows(scope, docs, margins)
    if kind == "generation":
        return _right_wrong_rows(scope, docs, margins, "exact match")
    if kind in ("choice", "loglikelihood"):
        return _right_wrong_rows(scope, docs, margins, "accuracy") + _likelihood_rows(scope, docs)
    return []


def _groups(paired: pd.DataFrame) -> Iterator[tuple[dict, pd.DataFrame]]:
    """(scope, documents) per task x filter, per suite task x filter (when it pools several tasks), and overall."""
    for (suite, task, filt), docs in paired.groupby(["suite_task", "task", "filter"], sort=True):
        yield {"level": "task", "suite_task": suite, "task": task, "filter": filt}, docs
    for (suite, filt), docs in paired.groupby(["suite_task", "filter"], sort=True):
        if docs["task"].nunique() > 1:
            yield {"level": "suite task", "suite_task": suite, "task": suite, "filter": filt}, docs
    primary = paired[paired.groupby("task")["filter"].transform("min") == paired["filter"]]  # one filter per task overall
    right_wrong = primary[primary["correct_ref"].notna()]
    if len(right_wrong):
        yield {"level": "overall", "suite_task": "all tasks with right answers", "task": "all", "filter": "primary", "pooled": True}, right_wrong
    rolling = primary[primary["kind_ref"] == "rolling"]
    if len(rolling):
        yield {"level": "overall", "suite_task": "all perplexity tasks", "task": "all", "filter": "primary"}, rolling


def compare_outcomes(reference: pd.DataFrame, candidate: pd.DataFrame, margins: Margins = Margins()) -> pd.DataFrame:
    """Tidy paired statistics of ``candidate`` against ``reference`` (rows described in the module docstring)."""
    paired = pair_outcomes(reference, candidate)
    rows: list[dict] = []
    if not paired.empty:
        for scope, docs in _groups(paired):
            if scope.pop("pooled", False):
                rows += _right_wrong_rows({**scope, "kind": "pooled"}, docs, margins, "accuracy")
            else:
                rows += _rows_for(scope, docs, margins)
    return pd.DataFrame(rows)
