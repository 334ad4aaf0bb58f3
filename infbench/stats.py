"""Statistics of latency samples: robust summaries and honest intervals.

Latency distributions are skewed with a long right tail (interrupts, allocator, frequency changes), so the
median is the headline and its confidence interval is distribution-free (order statistics of the binomial),
not a normal-theory interval around the mean. Speedups compare two medians; their interval comes from a
bootstrap of both sample sets, so it carries the noise of the baseline as well as of the cell.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
_EXACT_LIMIT = 400  # above this, the normal approximation of the binomial is accurate to a rank


def median_ci_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int]:
    """0-based ranks (lo, hi) of the sorted samples bounding the median with at least ``confidence``.

    With fewer than 6 samples no pair of ranks reaches 95 %; the full range is returned (and the interval is
    then wider than asked, never narrower).
    """
    if n < 1:
        raise ValueError("median_ci_ranks needs at least one sample")
    alpha = 1.0 - confidence
    if n <= _EXACT_LIMIT:
        # largest k with P(B <= k - 1) <= alpha / 2, B ~ Binomial(n, 1/2); interval = [x_(k), x_(n-k+1)] (1-based)
        total, cumulative, k = 2**n, 0, 0
        for j in range(n):
            cumulative += math.comb(n, j)
            if cumulative / total > alpha / 2:
                break
            k = j + 1
    else:
        z = _normal_quantile(1.0 - alpha / 2)
        k = int(math.floor(n / 2 - z * math.sqrt(n) / 2))
    k = max(k, 1)
    return k - 1, n - k


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def median_ci(samples, confidence: float = CONFIDENCE) -> tuple[float, float]:
    ordered = np.sort(np.asarray(samples, dtype=float))
    lo, hi = median_ci_ranks(len(ordered), confidence)
    return float(ordered[lo]), float(ordered[hi])


def summarize(samples_ms) -> dict:
    """The record's timing statistics for a list of per-iteration milliseconds."""
    x = np.asarray(samples_ms, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    median = float(np.median(x))
    lo, hi = median_ci(x)
    stdev = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    mean = float(np.mean(x))
    return {
        "n": int(x.size),
        "median_ms": median,
        "p90_ms": float(np.percentile(x, 90)),
        "p99_ms": float(np.percentile(x, 99)),
        "mean_ms": mean,
        "stdev_ms": stdev,
        "min_ms": float(np.min(x)),
        "ci95_ms": [lo, hi],
        "ci_rel_width": (hi - lo) / median if median > 0 else math.inf,
        "cv": stdev / mean if mean > 0 else math.inf,
    }


def ratio_of_medians_ci(
    numerator, denominator, confidence: float = CONFIDENCE, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """median(numerator) / median(denominator) and its percentile-bootstrap interval.

    Used for speedup = median(baseline) / median(cell). The seed is fixed so that tables are reproducible
    from the same records.
    """
    a = np.asarray(numerator, dtype=float)
    b = np.asarray(denominator, dtype=float)
    point = float(np.median(a) / np.median(b))
    rng = np.random.default_rng(seed)
    ra = np.median(rng.choice(a, size=(resamples, a.size), replace=True), axis=1)
    rb = np.median(rng.choice(b, size=(resamples, b.size), replace=True), axis=1)
    ratios = ra / rb
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return point, float(lo), float(hi)
