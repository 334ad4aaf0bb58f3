"""Why a cell's interval is as wide as it is: the named cause, from what each of its rounds recorded.

Why: the interval is built to hold a rerun (infbench.measure.stats), and it does; a reader who sees a GPU-bound
cell at ±8 % still needs to know *what* moves, because what to do about it differs. On the H100 host these
widen cells, each visible in the rounds' own records:
- the host's drift between runs (``between_run_half_width``: the cell's host response at ``timing.host_drift``):
  host-bound cells, and eager cells whose host is only just ahead of the GPU;
- the **SM clock**: at the power cap the GPU throttles (fp16 b32 s512: 1695-1845 MHz across one cell's rounds)
  and the latency follows the clock, so log round median falls with log clock (sampled after each window);
- the **host's speed within the run**, for cells whose latency follows the host (host sensitivity >= 0.5): their
  rounds move with the host's speed regimes (two clusters there are the host's, not the GPU's);
- **two levels**: small CUDA-graph replays sit at one of two levels ~10 % apart (the gaps between a graph's
  kernels, not the kernels, change with the GPU's history across processes: report/reference/h100/NOTES.md):
  the sorted round medians split into two clusters, each tight, far apart;
- the **position in the round**: the first windows of a session's round (right after another session's turn on
  the GPU) are at the fast level of those replays, and those after the session's ONNX Runtime CUDA window
  without graphs mostly at the slow one (infbench.measure.order; report/reference/h100/NOTES.md); where the
  latency rises with the window's position (r >= ``POSITION_MIN_R``), that is the pattern, with one round fast
  or several.
Anything else is "no recorded pattern". The first that applies, in that order, names the cause; the thresholds
are the module's constants, tested on synthetic rounds.
"""

from __future__ import annotations

import math

import numpy as np

CLOCK_MIN_RANGE = 1.02  # max / min SM clock over the rounds below which the clock did not move
CLOCK_MIN_R2 = 0.5  # share of the log round medians' variance that the log clock explains
LEVEL_MIN_GAP = 0.03  # log gap between the two clusters of round medians (3 %)
LEVEL_GAP_OVER_SPREAD = 3.0  # ... and that many times the clusters' own spread (simulated: 3 % of one-level rounds with a
# 2 % spread are called two levels; 90 % of two-level rounds are, one window caught between the levels included)
POSITION_MIN_R = 0.7  # correlation of log round median with the window's position in its round (n = 7: p ~ 0.04)
HOST_FOLLOWS = 0.5  # host sensitivity from which a cell's latency follows the host's speed


def _paired(values, medians_ms) -> tuple[np.ndarray, np.ndarray]:
    """The rounds that recorded ``values`` (None: not recorded): (values, log medians)."""
    x = np.asarray([v if v is not None else np.nan for v in values], dtype=float)
    y = np.log(np.asarray(medians_ms, dtype=float))
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; 0 where it cannot be said (fewer than 3 rounds, or either side constant)."""
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def clock_fit(medians_ms, clocks_mhz) -> tuple[float, float]:
    """(max / min clock, R^2 of log median on log clock with latency falling as the clock rises; 0 otherwise)."""
    clocks, logs = _paired(clocks_mhz, medians_ms)
    clocks, logs = clocks[clocks > 0], logs[clocks > 0]
    if clocks.size < 3:
        return 1.0, 0.0
    r = _correlation(np.log(clocks), logs)
    return float(clocks.max() / clocks.min()), r * r if r < 0 else 0.0


def levels(medians_ms) -> dict | None:
    """Two clusters of round medians ({low_ms, high_ms, low_n, high_n, gap}) or None: the widest gap of the
    sorted log medians with at least two rounds on each side, if it is at least ``LEVEL_MIN_GAP`` and
    ``LEVEL_GAP_OVER_SPREAD`` times the clusters' pooled standard deviation."""
    logs = np.sort(np.log(np.asarray(medians_ms, dtype=float)))
    if logs.size < 4:
        return None
    gaps = np.diff(logs)[1:-1]  # both sides keep >= 2 rounds
    cut = int(np.argmax(gaps)) + 2
    low, high = logs[:cut], logs[cut:]
    gap = float(high[0] - low[-1])
    pooled = math.sqrt((np.sum((low - low.mean()) ** 2) + np.sum((high - high.mean()) ** 2)) / (logs.size - 2))
    if gap < LEVEL_MIN_GAP or gap < LEVEL_GAP_OVER_SPREAD * pooled:
        return None
    return {"low_ms": float(np.exp(low.mean())), "high_ms": float(np.exp(high.mean())), "low_n": int(low.size),
            "high_n": int(high.size), "gap": gap}


HOST_DRIFT, CLOCK, HOST_SPEED, LEVELS, POSITION, NONE = (
    "host drift between runs", "SM clock", "host speed within the run", "two levels", "position in the round",
    "no recorded pattern")


def position_r(medians_ms, positions) -> float:
    """Correlation of log round median with the window's position in its round (0 when it cannot be said)."""
    return _correlation(*_paired(positions, medians_ms))


def cause(medians_ms, clocks_mhz, positions, rounds_half: float | None, host_half: float | None,
          host_sensitivity: float | None) -> dict:
    """The named cause of a cell's spread and its evidence: {cause (one of the names above), evidence (a
    line of text), clock_range, clock_r2, levels, position_r}.

    ``rounds_half`` / ``host_half``: the interval's half-widths (log scale) from the rounds and from the host's
    drift between runs (stats.summarize_rounds: ``rounds_half_width``, ``between_run_half_width``); a record
    summarised before ``rounds_half_width`` existed (None) is not called host drift: the two cannot be weighed
    (``scripts.resummarize`` adds it)."""
    clock_range, clock_r2 = clock_fit(medians_ms, clocks_mhz)
    two = levels(medians_ms)
    by_position = position_r(medians_ms, positions)
    clocks = [c for c in clocks_mhz if c]
    if host_half and rounds_half is not None and host_half > rounds_half:
        name = HOST_DRIFT
        evidence = f"host term +{math.expm1(host_half):.1%} vs rounds ±{math.expm1(rounds_half):.1%}" + (
            f", sensitivity {host_sensitivity:.2f}" if host_sensitivity is not None else "")
    elif clock_range >= CLOCK_MIN_RANGE and clock_r2 >= CLOCK_MIN_R2:
        name, evidence = CLOCK, f"{min(clocks):.0f}-{max(clocks):.0f} MHz, R2 {clock_r2:.2f}"
    elif host_sensitivity is not None and host_sensitivity >= HOST_FOLLOWS:
        # a host-bound cell's two clusters are the host's speed regimes, not the GPU's levels
        name, evidence = HOST_SPEED, f"host sensitivity {host_sensitivity:.2f}" + (
            f", two regimes {two['low_ms']:.3g} / {two['high_ms']:.3g} ms" if two else "")
    elif two:
        name = LEVELS
        evidence = f"{two['low_ms']:.3g} / {two['high_ms']:.3g} ms ({two['low_n']} + {two['high_n']} rounds)"
    elif by_position >= POSITION_MIN_R:
        name, evidence = POSITION, f"later windows slower, r {by_position:.2f}"
    else:
        name, evidence = NONE, ""
    return {"cause": name, "evidence": evidence, "clock_range": clock_range, "clock_r2": clock_r2, "levels": two,
            "position_r": by_position}
