import itertools

import pytest

from infbench.measure.timing import TimingPolicy, measure


class ScriptedClock:
    """A clock that reports scripted latencies: the timing policy is tested without real time."""

    name = "scripted"

    def __init__(self, values):
        self.values = itertools.cycle(values)

    def time_ms(self, run):
        run()
        return next(self.values)


def counting_run():
    calls = {"n": 0}

    def run():
        calls["n"] += 1

    return run, calls


def test_stable_latency_converges_at_min_iters():
    run, calls = counting_run()
    policy = TimingPolicy(warmup_s=0.0, min_iters=10, max_iters=1000, budget_s=60, target_ci_rel_width=0.02)
    timing = measure(run, policy, ScriptedClock([2.0]))
    assert timing["n"] == 10
    assert timing["window"]["stop_reason"] == "converged"
    assert timing["median_ms"] == 2.0
    assert timing["samples_ms"] == [2.0] * 10
    assert calls["n"] == 10 + timing["window"]["warmup_iters"]
    assert timing["window"]["warmup_iters"] == 3  # untimed calls even with no warm-up budget


def test_noisy_latency_stops_at_the_iteration_cap_and_says_so():
    run, _ = counting_run()
    policy = TimingPolicy(warmup_s=0.0, min_iters=5, max_iters=50, budget_s=60, target_ci_rel_width=0.001)
    timing = measure(run, policy, ScriptedClock([1.0, 3.0, 2.0, 5.0, 4.0]))
    assert timing["n"] == 50
    assert timing["window"]["stop_reason"] == "iteration cap"
    assert timing["window"]["converged"] is False
    assert len(timing["samples_ms"]) == 50


def test_time_budget_stops_the_loop():
    import time

    def slow():
        time.sleep(0.01)

    policy = TimingPolicy(warmup_s=0.0, min_iters=5, max_iters=10_000, budget_s=0.05, target_ci_rel_width=1e-9)
    timing = measure(slow, policy, ScriptedClock([1.0, 2.0]))
    assert timing["window"]["stop_reason"] == "time budget"
    assert 3 <= timing["n"] < 100


def test_ci_tightens_with_more_samples():
    values = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8]
    short = measure(lambda: None, TimingPolicy(warmup_s=0, min_iters=7, max_iters=7, budget_s=60), ScriptedClock(values))
    long = measure(lambda: None, TimingPolicy(warmup_s=0, min_iters=700, max_iters=700, budget_s=60), ScriptedClock(values))
    assert long["ci_rel_width"] <= short["ci_rel_width"]


def test_policy_from_config_rejects_unknown_keys():
    with pytest.raises(TypeError):
        TimingPolicy.from_config({"warmup": 1})
