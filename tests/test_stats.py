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
