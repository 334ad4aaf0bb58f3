"""The named cause of a cell's spread (infbench.measure.spread) on synthetic rounds, and its way into
cells.csv and the report's section on GPU-bound cells wider than +-3 %."""

import numpy as np
import pytest

from infbench import tables
from infbench.measure import spread


def noisy(center, n, sd, rng):
    return list(center * np.exp(rng.normal(0.0, sd, n)))


def test_latency_following_a_throttled_clock_is_named_with_its_range():
    rng = np.random.default_rng(1)
    clocks = list(rng.uniform(1695, 1850, 7))
    medians = [9.2 * 1845 / c * np.exp(rng.normal(0, 0.003)) for c in clocks]
    why = spread.cause(medians, clocks, [0] * 7, rounds_half=0.05, host_half=0.0, host_sensitivity=0.01)
    assert why["cause"] == spread.CLOCK
    assert why["clock_r2"] > 0.8 and why["clock_range"] > 1.05
    assert f"{min(clocks):.0f}-{max(clocks):.0f} MHz" in why["evidence"]


def test_a_steady_clock_or_a_clock_moving_the_wrong_way_explains_nothing():
    rng = np.random.default_rng(2)
    medians = noisy(1.0, 7, 0.02, rng)
    assert spread.clock_fit(medians, [1980] * 7) == (1.0, 0.0)
    faster_when_slower = [1.0 * c / 1800 for c in (1700, 1750, 1800, 1850, 1900, 1950, 1980)]
    assert spread.clock_fit(faster_when_slower, [1700, 1750, 1800, 1850, 1900, 1950, 1980])[1] == 0.0
    assert spread.clock_fit([1.0, 1.1], [1700, 1900]) == (1.0, 0.0)  # too few rounds to fit
    assert spread.clock_fit(medians, [None] * 7) == (1.0, 0.0)  # a CPU cell: no clock


def test_two_levels_are_found_and_unimodal_noise_rarely_looks_like_two():
    rng = np.random.default_rng(3)
    for low in range(2, 6):
        medians = noisy(0.66, low, 0.004, rng) + noisy(0.73, 7 - low, 0.004, rng)
        two = spread.levels(medians)
        assert two is not None and (two["low_n"], two["high_n"]) == (low, 7 - low)
        assert two["low_ms"] == pytest.approx(0.66, rel=0.01) and two["high_ms"] == pytest.approx(0.73, rel=0.01)
        assert spread.cause(medians, [1980] * 7, [3, 0, 5, 1, 6, 2, 4], 0.1, 0.0, 0.0)["cause"] == spread.LEVELS
    false = sum(spread.levels(noisy(1.0, 7, 0.02, rng)) is not None for _ in range(1000))
    assert false < 50  # < 5 %: one-level rounds with a 2 % spread are not called two levels
    assert spread.levels([0.66, 0.66, 0.73]) is None  # fewer than two rounds a side


def test_order_host_drift_first_then_host_speed_then_nothing():
    rng = np.random.default_rng(4)
    medians = noisy(2.0, 7, 0.01, rng)
    drift = spread.cause(medians, [1980] * 7, [0] * 7, rounds_half=0.02, host_half=0.2, host_sensitivity=0.6)
    assert drift["cause"] == spread.HOST_DRIFT and drift["evidence"] == "host term +22.1% vs rounds ±2.0%, sensitivity 0.60"
    assert spread.cause(medians, [1980] * 7, [0] * 7, rounds_half=None, host_half=0.2, host_sensitivity=0.6)["cause"] \
        == spread.HOST_SPEED  # an older record: the rounds' term is unknown, so the two are not weighed
    assert spread.cause(medians, [1980] * 7, [0] * 7, rounds_half=0.2, host_half=0.02, host_sensitivity=0.9)["cause"] \
        == spread.HOST_SPEED
    assert spread.cause(medians, [1980] * 7, [0] * 7, rounds_half=0.2, host_half=0.0, host_sensitivity=0.1)["cause"] \
        == spread.NONE


def test_two_clusters_of_a_host_bound_cell_are_the_hosts_regimes():
    rng = np.random.default_rng(5)
    medians = noisy(6.0, 3, 0.005, rng) + noisy(10.5, 4, 0.005, rng)  # eager fp32 b1 s128's two host regimes
    why = spread.cause(medians, [1980] * 7, [0] * 7, 0.5, 0.3, 0.95)
    assert why["cause"] == spread.HOST_SPEED and "two regimes" in why["evidence"]
    assert why["levels"]["low_ms"] == pytest.approx(6.0, rel=0.01) and why["levels"]["high_ms"] == pytest.approx(10.5, rel=0.01)


def test_first_windows_of_a_round_faster_is_named_position():
    medians = [0.66, 0.73, 0.72, 0.735, 0.725, 0.73, 0.74]  # one fast round: not two levels (one a side)
    positions = [0, 7, 5, 9, 6, 8, 12]
    assert spread.levels(medians) is None
    why = spread.cause(medians, [1980] * 7, positions, 0.1, 0.0, 0.0)
    assert why["cause"] == spread.POSITION and why["position_r"] > 0.7
    shuffled = spread.cause(medians, [1980] * 7, [9, 0, 5, 7, 6, 8, 12], 0.1, 0.0, 0.0)
    assert shuffled["cause"] == spread.NONE  # the fast round late in its round: no position pattern


def record(medians, clocks, busy=0.95):
    rounds = [{"index": i, "started_at": "t", "offset_s": 6.0 * i, "position": 0, "median_ms": m, "n": 20,
               "samples_ms": [m] * 20, "window": {"stop_reason": "converged"},
               "host": {"probe_ms": 1.0}, "device": {"sm_clock_mhz": c}} for i, (m, c) in enumerate(zip(medians, clocks))]
    from infbench.measure import stats
    timing = stats.summarize_rounds([r["samples_ms"] for r in rounds])
    return {"key": {"model": "m", "backend": "b", "engine": "torch", "precision": "fp16", "batch": 32, "seq_len": 512},
            "status": "ok", "timing": {**timing, "rounds": rounds},
            "gpu_busy": {"share": busy, "class": "gpu-bound", "host_response": {"factors": [0.5, 1, 2],
                                                                                 "ratios": [1, 1, 1]}}}


def test_cells_table_names_the_cause_of_a_wide_cell():
    clocks = [1695, 1710, 1740, 1770, 1800, 1830, 1845]
    throttled = record([9.2 * 1845 / c for c in clocks], clocks)
    steady = record([1.0, 1.001, 0.999, 1.0, 1.002, 0.998, 1.0], [1980] * 7)
    steady["key"] = {**steady["key"], "batch": 1}
    rows = tables.cells([throttled, steady])
    by_batch = rows.set_index("batch")
    assert by_batch.loc[32, "spread_cause"] == spread.CLOCK and "1695-1845 MHz" in by_batch.loc[32, "spread_evidence"]
    assert by_batch.loc[32, "rounds_half_width"] > 0.03


