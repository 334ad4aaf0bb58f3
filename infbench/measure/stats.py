"""Statistics of latency samples: robust summaries and honest intervals.

Two levels, because the noise has two levels (measured on an H100 host: the host CPU's speed moves between
regimes that last seconds to tens of seconds, so two timing windows minutes apart differ by up to 1.66x on
launch-bound cells while each window alone looks precise to 1 %):

- **Within a round** (one warm-up + timed window): iterations are skewed with a long right tail, so the
  round's number is its median, with a distribution-free interval (order statistics of the binomial). This
  interval only says how well one window was sampled; it drives the window's stopping rule, nothing else.
- **Across rounds** (the replicates, spread over time): a cell's latency is the geometric mean of its round
  medians (latency ratios are multiplicative; a single slow round moves it less than an arithmetic mean).
  Its interval is a 95 % *prediction* interval for the median of a fresh round taken at another time:
  exp(mean(log m) +- t(R-1) * s * sqrt(1 + 1/R)), where s is the spread of the log round medians (never
  taken below a typical round's own sampling error). It is what a rerun -- ours or another harness's -- is expected
  to land in, which is the claim a reader makes of an interval; a confidence interval of the mean would be
  narrower by sqrt(R + 1) and be missed by most reruns of a host-bound cell.
- **Across runs**: the host's speed also moves between runs (H100 host, two runs ten minutes apart: the host
  probe 1.10 -> 1.62 ms, host-bound cells 1.2-1.5x slower) by more than one run's rounds can see. A cell
  moves with it by its *host response* (infbench.measure.host_response: its profiled calls replayed on a
  host f times slower; f itself on a CPU, where every cell is host work): the interval adds, in quadrature,
  log L(e^{z d}) / L above and log L / L(e^{-z d}) below, where ``host_drift`` d is the between-run standard
  deviation of the log of the host's speed, estimated from a rerun (``between_run_drift``,
  ``scripts.compare_runs``) and set in the config. A CUDA-graph replay does not move; eager PyTorch whose
  host is barely ahead of its GPU moves at once when the host slows, though its GPU busy share is high.
  GPU-side drift between machines or boots (a window of the cells that barely wait on the host 0.75 % from
  another H100's, beyond their rounds' spread) is ``systematic_rel``'s, estimated from the same rerun.
- **Comparisons** (speedups, ties) pair rounds measured close in time: the baseline and the candidate are
  interleaved in each round of one shape session, so a host regime that slows both cancels in their ratio.
  The speedup is the geometric mean of the per-round ratios with a t interval of their mean. A host that is
  slower or faster in another run cancels only between cells that move with it alike: the interval adds, in
  quadrature, how far the two cells' host responses part at the same ``host_drift`` (``with_host_drift``): a
  host-bound cell against a CUDA-graph replay widens, two graph replays or two CPU cells do not.
With one round there is no across-time information: the interval falls back to the window's own and the
record says so.
"""

from __future__ import annotations

import math

import numpy as np

from scipy import stats as _scipy

from infbench.measure import host_response

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


def t_quantile(p: float, dof: int) -> float:
    return float(_scipy.t.ppf(p, dof))


def _log_se_of_median(samples) -> float:
    """Sampling error of log(median) of one round, from its distribution-free 95 % interval."""
    lo, hi = median_ci(samples)
    median = float(np.median(samples))
    if lo <= 0 or median <= 0:
        return 0.0
    z = _normal_quantile(0.5 + CONFIDENCE / 2)
    return (math.log(hi) - math.log(lo)) / (2 * z)


def geometric_mean(values) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values, dtype=float)))))


def summarize_rounds(rounds: list[list[float]], systematic_rel: float = 0.0, host_drift: float = 0.0,
                     host_curve: dict | None = None, confidence: float = CONFIDENCE) -> dict:
    """A cell's timing statistics from its rounds (lists of per-iteration milliseconds).

    ``median_ms`` is the geometric mean of the round medians; ``ci95_ms`` the prediction interval for a
    fresh round (see the module docstring); ``systematic_rel`` adds, in quadrature, a relative error that no
    round of one run can see (e.g. a different GPU of the same kind); ``host_drift`` through ``host_curve``
    (the cell's host response, infbench.measure.host_response; None: all host work, as on a CPU) adds the
    host's between-run drift the same way, on each side. Pooled per-iteration statistics (p90, p99, mean,
    stdev) are kept for the tail-latency tables.
    """
    rounds = [np.asarray(r, dtype=float) for r in rounds if len(r)]
    if not rounds:
        raise ValueError("no rounds to summarize")
    pooled = np.concatenate(rounds)
    medians = np.array([float(np.median(r)) for r in rounds])
    logs = np.log(medians)
    count = len(rounds)
    center = float(np.mean(logs))
    # the typical round's sampling error (the median: one short, noisy round must not widen every cell)
    within = float(np.median([_log_se_of_median(r) for r in rounds]))
    if count == 1:
        lo, hi = median_ci(rounds[0], confidence)
        half_lo, half_hi = center - math.log(lo), math.log(hi) - center
        interval = "one round: the window's own interval (no rerun variance)"
    else:
        spread = max(float(np.std(logs, ddof=1)), within)
        half = t_quantile(0.5 + confidence / 2, count - 1) * spread * math.sqrt(1 + 1 / count)
        half_lo = half_hi = half
        interval = f"prediction interval of a fresh round's median over {count} rounds (t, log scale)"
    rounds_half = max(half_lo, half_hi)  # what the rounds alone spread, before the host's and GPU-side drifts
    z = _normal_quantile(0.5 + confidence / 2)
    slower = math.log(host_response.ratio_at(host_curve, math.exp(z * host_drift))) if host_drift > 0 else 0.0
    faster = -math.log(host_response.ratio_at(host_curve, math.exp(-z * host_drift))) if host_drift > 0 else 0.0
    systematic = z * math.log1p(systematic_rel)
    half_lo = math.hypot(half_lo, systematic, max(0.0, faster))
    half_hi = math.hypot(half_hi, systematic, max(0.0, slower))
    median = math.exp(center)
    stdev = float(np.std(pooled, ddof=1)) if pooled.size > 1 else 0.0
    mean = float(np.mean(pooled))
    ci = [math.exp(center - half_lo), math.exp(center + half_hi)]
    return {
        "n": int(pooled.size),
        "rounds_n": count,
        "median_ms": median,
        "ci95_ms": ci,
        "ci_rel_width": (ci[1] - ci[0]) / median,
        "interval": interval,
        "rounds_half_width": rounds_half,
        "between_run_half_width": max(0.0, slower),
        "round_medians_ms": medians.tolist(),
        "between_round_cv": float(np.std(medians, ddof=1) / np.mean(medians)) if count > 1 else None,
        "round_spread": float(medians.max() / medians.min()),
        "within_round_rel_se": within,
        "within_round_cv": float(np.median([np.std(r, ddof=1) / np.mean(r) if r.size > 1 else 0.0 for r in rounds])),
        "p90_ms": float(np.percentile(pooled, 90)),
        "p99_ms": float(np.percentile(pooled, 99)),
        "mean_ms": mean,
        "stdev_ms": stdev,
        "min_ms": float(np.min(pooled)),
        "cv": stdev / mean if mean > 0 else math.inf,
    }


def between_run_drift(log_ratios, within_vars, sensitivities, host_free_below: float = 0.2,
                      tight_below: float = 0.005) -> dict:
    """Estimate ``host_drift`` and ``systematic_rel`` from the same cells measured in two runs: moment
    estimators of (d, g) in E[r^2] = v + (h d)^2 + g^2, where r is a cell's log(median B / median A), v the
    variance of r that the rounds of the two runs already explain (s_A^2/R_A + s_B^2/R_B), h the cell's host
    elasticity (infbench.measure.host_response; 1 on a CPU) and g the GPU-side drift that every cell shares.
    d: least squares through the origin over all cells; g: the mean excess of the cells that barely wait on
    the host (h < ``host_free_below``) and whose rounds agree (sqrt(v) <= ``tight_below``), where neither the
    host's term nor the rounds' spread can stand in for it, less any whose r lies over 5 robust s.d. (MAD)
    from theirs. Both 0 when the rounds explain the runs' differences; g is not estimated (0) from fewer than
    3 such cells.

    Why one host number, not one per cell: the host's speed is what moves between runs, and each cell moves
    by how much its latency waits on the host, so host-bound cells inform d most. Why g apart: host-bound
    cells also move by more than one factor explains (regimes within a run), and a joint fit would lend that
    excess to every GPU-bound cell. Why only cells whose rounds agree: g adds in quadrature, so it only
    widens the intervals its cells' rounds leave narrow, and only such cells can show it. Over all host-free
    cells the mean excess was led by a few whose rounds already hold their move (replays on two levels 10 %
    apart, a compile that picked other kernels): 2-4 % on pairs of H100 runs, against 0-1 % from the cells
    whose rounds agree, less any whose move is far outside theirs (report/reference/h100/reproducibility/)."""
    r = np.asarray(log_ratios, dtype=float)
    v = np.asarray(within_vars, dtype=float)
    h = np.clip(np.asarray(sensitivities, dtype=float), 0.0, 1.0)
    keep = np.isfinite(r) & np.isfinite(v) & np.isfinite(h)
    r, v, h = r[keep], v[keep], h[keep]
    excess = r**2 - v
    d2 = max(0.0, float(np.sum(excess * h**2) / np.sum(h**4))) if np.any(h > 0) else 0.0
    free = (h < host_free_below) & (v <= tight_below**2)
    if np.sum(free) >= 3:
        # a move far outside the others' (over 5 robust s.d.: a compile that picked other kernels) is that
        # cell's own, not a drift every cell shares
        spread = 1.4826 * float(np.median(np.abs(r[free] - np.median(r[free]))))
        if spread > 0:
            free &= np.abs(r - np.median(r[free])) <= 5 * spread
    g2 = max(0.0, float(np.mean(excess[free] - d2 * h[free] ** 2))) if np.sum(free) >= 3 else 0.0
    return {"host_drift": math.sqrt(d2), "systematic_rel": math.expm1(math.sqrt(g2)), "cells": int(r.size),
            "host_free_cells": int(np.sum(free))}


def log_ratio_interval(log_ratios, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """exp of the mean of per-round log ratios and its t interval: (point, lo, hi)."""
    x = np.asarray(log_ratios, dtype=float)
    center = float(np.mean(x))
    if x.size < 2:
        return math.exp(center), math.nan, math.nan
    half = t_quantile(0.5 + confidence / 2, x.size - 1) * float(np.std(x, ddof=1)) / math.sqrt(x.size)
    return math.exp(center), math.exp(center - half), math.exp(center + half)


def round_ratio_ci(numerator: dict[int, float], denominator: dict[int, float], paired: bool,
                   confidence: float = CONFIDENCE) -> dict:
    """Ratio of two cells' latencies from their round medians ({round index: median ms}).

    ``paired`` where both were measured in one session (the same round index = measured seconds apart): the
    per-round ratios carry the drift of neither. Otherwise (records of different runs) unpaired: the
    difference of the mean log round medians, with both spreads (Welch's t). With fewer than two rounds the
    interval is unknown (NaN): one window cannot say what a rerun would show."""
    common = sorted(set(numerator) & set(denominator)) if paired else []
    if len(common) >= 2:
        point, lo, hi = log_ratio_interval([math.log(numerator[i] / denominator[i]) for i in common], confidence)
        return {"ratio": point, "lo": lo, "hi": hi, "paired_rounds": len(common), "method": "paired rounds"}
    la, lb = np.log(list(numerator.values())), np.log(list(denominator.values()))
    point = math.exp(float(np.mean(la) - np.mean(lb)))
    if la.size < 2 or lb.size < 2:
        return {"ratio": point, "lo": math.nan, "hi": math.nan, "paired_rounds": 0, "method": "one round"}
    va, vb = np.var(la, ddof=1) / la.size, np.var(lb, ddof=1) / lb.size
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (la.size - 1) + vb**2 / (lb.size - 1)) if se > 0 else 1.0
    half = t_quantile(0.5 + confidence / 2, max(1.0, dof)) * se
    return {"ratio": point, "lo": point * math.exp(-half), "hi": point * math.exp(half), "paired_rounds": 0,
            "method": "unpaired rounds (Welch)"}


def with_host_drift(comparison: dict, numerator_curve: dict | None, denominator_curve: dict | None,
                    host_drift: float, confidence: float = CONFIDENCE) -> dict:
    """A latency ratio's interval (``round_ratio_ci``) widened by how the two cells move apart on a host
    ``e^{+-z host_drift}`` times slower (their host responses, infbench.measure.host_response; None: all host
    work): the ratio moves by L_num(f) / L_den(f), added in quadrature on the side it moves to. Unchanged where
    the drift is 0 or the interval unknown; ``between_run`` keeps the two terms (log scale)."""
    lo, hi, point = comparison.get("lo"), comparison.get("hi"), comparison["ratio"]
    if not host_drift or host_drift <= 0 or lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return comparison
    z = _normal_quantile(0.5 + confidence / 2)
    moves = [math.log(host_response.ratio_at(numerator_curve, f)) - math.log(host_response.ratio_at(denominator_curve, f))
             for f in (math.exp(z * host_drift), math.exp(-z * host_drift))]
    up, down = max(0.0, *moves), max(0.0, *(-m for m in moves))
    if up == 0.0 and down == 0.0:
        return comparison
    return {**comparison, "lo": point * math.exp(-math.hypot(math.log(point / lo), down)),
            "hi": point * math.exp(math.hypot(math.log(hi / point), up)),
            "between_run": [down, up], "method": f"{comparison['method']} + host drift {host_drift:g}"}


def round_medians(timing: dict) -> dict[int, float]:
    """{round index: round median} of a record's timing section."""
    return {int(r["index"]): float(r["median_ms"]) for r in (timing or {}).get("rounds") or []}


def indistinguishable(comparison: dict) -> bool:
    """Two latencies cannot be told apart when the interval of their ratio contains 1 (or is unknown)."""
    lo, hi = comparison.get("lo"), comparison.get("hi")
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return True
    return lo <= 1.0 <= hi
