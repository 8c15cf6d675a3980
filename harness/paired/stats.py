"""Paired statistics of two models (or modes) scored on the same documents.

Both sides answered the same documents, so every comparison is made document by document:

- a difference of means (accuracy, exact match, per-token log-likelihood, KL) gets a 95%
  confidence interval from the paired bootstrap: documents are resampled with replacement and
  the mean of the per-document differences is recomputed (Efron and Tibshirani 1993, ch. 13);
- a ratio of sums (nats per token over documents of different lengths) is resampled the same
  way, numerator and denominator together;
- correct/incorrect outcomes get the exact McNemar test: of the documents on which the sides
  disagree, b went one way and c the other; under "no difference" b ~ Binomial(b + c, 1/2), and
  the two-sided p-value is min(1, 2 P[X <= min(b, c)]) (McNemar 1947, exact form);
- a right/wrong difference's interval is widened where needed to cover the Agresti-Min (2005)
  interval (half a document added to each cell of the 2x2 table), which stays honest where a
  bootstrap is not: with few documents, or none on which the sides disagree;
- a verdict reads the interval against a stated margin: "lower" or "higher" when the interval
  excludes 0, "equivalent" when it lies within +-margin, otherwise "inconclusive" (always with
  fewer than 10 documents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, norm

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
SEED = 1234
_CHUNK_CELLS = 4_000_000  # indices drawn at once: resamples x documents


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval."""

    value: float
    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low


def _resampled_indices(n: int, resamples: int, seed: int):
    """Chunks of bootstrap index rows (resamples x n), drawn from one seeded generator."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        take = min(rows, resamples - done)
        yield rng.integers(0, n, size=(take, n))
        done += take


def _interval(value: float, replicates: np.ndarray, confidence: float) -> Interval:
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Interval(float(value), float(low), float(high))


def bootstrap_mean(differences: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED,
                   confidence: float = CONFIDENCE) -> Interval:
    """Mean of per-document ``differences`` with a paired-bootstrap percentile interval."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    replicates = np.concatenate([d[rows].mean(axis=1) for rows in _resampled_indices(d.size, resamples, seed)])
    return _interval(d.mean(), replicates, confidence)


def bootstrap_ratio(numerator: np.ndarray, denominator: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = SEED, confidence: float = CONFIDENCE) -> Interval:
    """sum(numerator) / sum(denominator) over documents, resampling documents (both sums together)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if num.size == 0 or den.sum() == 0:
        return Interval(math.nan, math.nan, math.nan)
    replicates = np.concatenate([num[rows].sum(axis=1) / den[rows].sum(axis=1) for rows in _resampled_indices(num.size, resamples, seed)])
    return _interval(num.sum() / den.sum(), replicates, confidence)


def agresti_min(b: int, c: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Interval for a difference of matched proportions, (c - b) / n, with half a document added to each
    cell of the 2x2 table (Agresti and Min 2005): honest where the bootstrap is not, with few documents
    or none that disagree (a bootstrap of identical outcomes has width 0)."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    b_, c_, n_ = b + 0.5, c + 0.5, n + 2
    center = (c_ - b_) / n_
    half = float(norm.ppf(1 - (1 - confidence) / 2)) * math.sqrt(max((b_ + c_) - (c_ - b_) ** 2 / n_, 0.0)) / n_
    return Interval((c - b) / n, center - half, center + half)


def right_wrong_difference(reference: np.ndarray, candidate: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED) -> Interval:
    """Candidate minus reference share of right answers, in points: the paired-bootstrap interval,
    widened where needed to cover the Agresti-Min interval."""
    ref, cand = np.asarray(reference, dtype=float), np.asarray(candidate, dtype=float)
    boot = bootstrap_mean(100 * (cand - ref), resamples, seed)
    b, c = int(((ref == 1) & (cand == 0)).sum()), int(((ref == 0) & (cand == 1)).sum())
    floor = agresti_min(b, c, len(ref))
    return Interval(boot.value, min(boot.low, 100 * floor.low), max(boot.high, 100 * floor.high))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b documents right only on one side and c only on the other."""
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(b, c), n, 0.5)))


def choice_distribution(loglikelihoods: np.ndarray) -> np.ndarray:
    """The model's distribution over the answer choices: softmax of their log-likelihoods (row-wise)."""
    lls = np.asarray(loglikelihoods, dtype=np.float64)
    shifted = lls - lls.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats between two distributions over the same choices."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(np.maximum(q[mask], 1e-300)))))


MIN_DOCUMENTS = 10  # fewer documents: no verdict (an interval from a handful of documents is not to be read)


def verdict(interval: Interval, margin: float, documents: int = MIN_DOCUMENTS, lower: str = "lower", higher: str = "higher") -> str:
    """What the interval says: ``lower``/``higher`` if it excludes 0 (``within +-margin`` added when it
    also lies inside the margin), ``equivalent within +-margin``, or ``inconclusive`` (also below
    ``MIN_DOCUMENTS`` documents)."""
    if math.isnan(interval.low):
        return "no documents"
    if documents < MIN_DOCUMENTS:
        return f"inconclusive ({documents} documents)"
    inside = -margin <= interval.low and interval.high <= margin
    if interval.high < 0 or interval.low > 0:
        side = lower if interval.high < 0 else higher
        return f"{side} (within +-{margin:g})" if inside else side
    return f"equivalent within +-{margin:g}" if inside else "inconclusive"


def detectable_difference(n: int, discordance: float, confidence: float = CONFIDENCE) -> float:
    """The half-width of a paired interval on an accuracy difference with ``n`` documents of which a
    share ``discordance`` disagree (normal approximation): differences smaller than this cannot be told apart."""
    if n == 0:
        return math.inf
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    return z * math.sqrt(max(discordance, 1.0 / n) / n)
