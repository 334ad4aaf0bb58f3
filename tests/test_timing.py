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


class AsyncDevice:
    """A simulated GPU: a call only enqueues device work (a CUDA-graph replay: one launch, 20 us of host
    time); the clock's synchronisation waits for the queue to drain, as CUDA events + synchronize do."""

    def __init__(self, device_ms: float):
        self.t, self.busy_until, self.device_s = 0.0, 0.0, device_ms / 1e3

    def now(self) -> float:
        return self.t

    def run(self) -> None:
        self.t += 20e-6
        self.busy_until = max(self.busy_until, self.t) + self.device_s

    name = "simulated_cuda_event"

    def time_ms(self, run) -> float:
        self.t = max(self.t, self.busy_until)  # the queue drains before the start event executes
        start = self.t
        run()
        self.t = self.busy_until  # end event + synchronize
        return (self.t - start) * 1e3


def test_warm_up_of_an_asynchronous_engine_does_not_queue_calls_past_the_window():
    """Replays that only enqueue work must not pile up during the warm-up: the window stays within its
    warm-up + budget (plus one call), and every sample is one call's device time."""
    device = AsyncDevice(device_ms=74.0)
    policy = TimingPolicy(warmup_s=0.2, min_iters=20, max_iters=1000, budget_s=0.2, target_ci_rel_width=0.01)
    timing = measure(device.run, policy, device, now=device.now)
    assert device.now() <= policy.warmup_s + policy.budget_s + 2 * 0.074
    assert timing["window"]["warmup_seconds"] < policy.warmup_s + 0.08
    assert timing["median_ms"] == pytest.approx(74.0, rel=1e-3)


def test_ci_tightens_with_more_samples():
    values = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8]
    short = measure(lambda: None, TimingPolicy(warmup_s=0, min_iters=7, max_iters=7, budget_s=60), ScriptedClock(values))
    long = measure(lambda: None, TimingPolicy(warmup_s=0, min_iters=700, max_iters=700, budget_s=60), ScriptedClock(values))
    assert long["ci_rel_width"] <= short["ci_rel_width"]


def test_policy_from_config_rejects_unknown_keys():
    with pytest.raises(TypeError):
        TimingPolicy.from_config({"warmup": 1})
