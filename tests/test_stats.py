import numpy as np
import pytest

from infbench.measure import stats


@pytest.mark.parametrize("n", [6, 10, 31, 100, 400, 401, 5000])
def test_median_ci_ranks_are_symmetric_and_inside(n):
    lo, hi = stats.median_ci_ranks(n)
    assert 0 <= lo < hi <= n - 1
    assert lo == n - 1 - hi


def test_median_ci_small_n_uses_the_full_range():
    assert stats.median_ci_ranks(3) == (0, 2)
    assert stats.median_ci_ranks(5) == (0, 4)


def test_exact_ranks_match_known_table():
    # n = 10: the 95% distribution-free interval of the median is [x(2), x(9)] (1-based), coverage 97.9%
    assert stats.median_ci_ranks(10) == (1, 8)
    # n = 100: [x(40), x(61)] (1-based)
    assert stats.median_ci_ranks(100) == (39, 60)


def test_median_ci_coverage_on_skewed_latencies():
    """The interval must contain the true median at least ~95% of the time on a long-tailed distribution."""
    rng = np.random.default_rng(1)
    true_median = 1.0 + np.log(2)  # 1 + Exp(1)
    trials, hits = 2000, 0
    for _ in range(trials):
        lo, hi = stats.median_ci(1.0 + rng.exponential(1.0, size=41))
        hits += lo <= true_median <= hi
    assert hits / trials >= 0.94


def test_summarize_known_values():
    summary = stats.summarize([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0])
    assert summary["n"] == 9
    assert summary["median_ms"] == 5.0
    assert summary["mean_ms"] == 5.0
    assert summary["min_ms"] == 1.0
    assert summary["stdev_ms"] == pytest.approx(np.std(np.arange(1, 10), ddof=1))
    assert summary["p90_ms"] == pytest.approx(8.2)
    lo, hi = summary["ci95_ms"]
    assert lo <= 5.0 <= hi


def test_summarize_rejects_no_samples():
    with pytest.raises(ValueError):
        stats.summarize([])


def test_gpu_side_drift_comes_from_cells_whose_rounds_agree():
    """Host-free cells of two runs on one GPU kind: twelve whose rounds agree (v tiny) moved by a GPU-side
    N(0, 0.8 %) between the runs; three replays on two levels 10 % apart moved by 6-9 %, which their own rounds
    (v large) already hold. g comes from the twelve: the three would lead a mean over all of them to ~3 %."""
    rng = np.random.default_rng(3)
    tight = list(rng.normal(0.0, 0.008, 12))
    loose = [0.09, -0.06, 0.08]
    logs = tight + loose
    within = [1e-6] * 12 + [0.03**2] * 3
    estimate = stats.between_run_drift(logs, within, [0.0] * 15)
    assert 0.004 < estimate["systematic_rel"] < 0.013
    assert estimate["host_free_cells"] == 12
    everything = np.sqrt(np.mean(np.square(logs) - np.array(within)))
    assert everything > 0.02  # the mean excess over all fifteen, as before: led by the three
    assert stats.between_run_drift(tight[:2] + loose, within[:2] + within[-3:], [0.0] * 5)["systematic_rel"] == 0


def test_one_cells_own_move_is_not_every_cells_drift():
    """A cell whose compile picked other kernels in one run (22 % apart, its rounds tight in both) beside
    cells that moved by a GPU-side N(0, 0.5 %): it is left out of g, which stays the others'."""
    rng = np.random.default_rng(4)
    logs = list(rng.normal(0.0, 0.005, 10)) + [0.22]
    estimate = stats.between_run_drift(logs, [1e-6] * 11, [0.0] * 11)
    assert estimate["systematic_rel"] < 0.01
    assert estimate["host_free_cells"] == 10
