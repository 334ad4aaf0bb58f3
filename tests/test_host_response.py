"""The host response of a GPU cell: its profiled calls replayed on a slower or faster host.

Synthetic traces in the Chrome-trace form PyTorch's profiler exports (user_annotation spans around each call,
cuda_runtime / cuda_driver API events and kernel / memcpy events sharing args.correlation), each shaped like
one kind of engine measured on the H100: eager launches slower than its kernels, a host barely ahead of its
GPU, a CUDA-graph replay, a synchronising runtime with host work after the sync."""

from __future__ import annotations

import math

import pytest

from infbench.measure import host_response as hr


class Trace:
    """Builds one profiled call at a time on a simulated host and device (microseconds)."""

    def __init__(self):
        self.events, self.correlation, self.host, self.device = [], 100, 1000.0, 1000.0

    def call(self, body) -> "Trace":
        start = self.host
        body(self)
        self.events.append({"ph": "X", "cat": "user_annotation", "name": hr.MARKER, "ts": start,
                            "dur": self.host - start, "pid": 1, "tid": 1})
        # noise the replay must ignore
        self.events.append({"ph": "X", "cat": "cpu_op", "name": "aten::linear", "ts": start + 1, "dur": 2})
        self.events.append({"ph": "s", "cat": "ac2g", "name": "ac2g", "ts": start + 1, "id": 7})
        self.host = max(self.host, self.device) + 50.0  # synchronised between calls, as measured
        self.device = self.host
        return self

    def work(self, us: float):
        self.host += us

    def launch(self, kernels_us: list[float], api_us: float = 3.0, gap_us: float = 0.0, driver: bool = False,
               name: str = "cudaLaunchKernel"):
        """One API call launching ``kernels_us`` (several: a graph), each ``gap_us`` after the previous on
        the device; the first starts 1 us after the call returns or when the device is free."""
        self.correlation += 1
        self.events.append({"ph": "X", "cat": "cuda_driver" if driver else "cuda_runtime", "name": name,
                            "ts": self.host, "dur": api_us, "args": {"correlation": self.correlation}})
        self.host += api_us
        start = max(self.device, self.host + 1.0)
        for i, us in enumerate(kernels_us):
            start += gap_us if i else 0.0
            self.events.append({"ph": "X", "cat": "kernel", "name": "k", "ts": start, "dur": us,
                                "args": {"correlation": self.correlation}})
            start += us
        self.device = start

    def sync(self, api_us: float = 2.0):
        self.correlation += 1
        begin = self.host
        self.host = max(self.host, self.device) + api_us
        self.events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaStreamSynchronize", "ts": begin,
                            "dur": self.host - begin, "args": {"correlation": self.correlation}})


def eager(host_us: float, kernel_us: float, launches: int = 100):
    def body(t: Trace):
        for _ in range(launches):
            t.work(host_us - 3.0)
            t.launch([kernel_us])
    return body


def calls(body, n: int = 3) -> list[hr.Call]:
    trace = Trace()
    for _ in range(n):
        trace.call(body)
    return hr.calls_from_trace(trace.events)


def test_the_replay_gives_back_each_profiled_call_at_factor_one():
    for body in (eager(20, 5), eager(9, 10), eager(5, 50)):
        found = calls(body)
        assert len(found) == 3
        for call in found:
            assert hr.simulate(call, 1.0) == pytest.approx(call.observed(), rel=1e-9)


def test_host_bound_launches_move_with_the_host():
    """Eager at small shapes (H100: 9 % of eager fp16 b1 s128 is kernel time): twice the host, twice the latency."""
    found = calls(eager(20, 5))
    curve = hr.response(found, found[0].observed() / 1e3)
    assert hr.ratio_at(curve, 2.0) == pytest.approx(2.0, rel=0.03)
    assert hr.ratio_at(curve, 0.5) == pytest.approx(0.5, rel=0.05)
    assert curve["elasticity"] > 0.95


def test_queued_launches_and_graph_replays_do_not_move():
    """Kernels far longer than their launches (the GPU is always fed) and a CUDA graph (one launch, the nodes'
    gaps are the device's): a host half as fast leaves the latency as it was."""
    queued = calls(eager(5, 50))
    graph = calls(lambda t: t.launch([3.0] * 200, api_us=8.0, gap_us=0.8, name="cudaGraphLaunch"))
    for found in (queued, graph):
        curve = hr.response(found, found[0].observed() / 1e3)
        assert hr.ratio_at(curve, 2.0) < 1.02, curve
        assert curve["elasticity"] < 0.02


def test_a_host_just_ahead_of_its_gpu_is_exposed_as_soon_as_it_slows():
    """Launches 9 us apart, kernels 10 us: the GPU bounds the latency, a faster host gains nothing, a host
    25 % slower (11.25 us a launch) sets the pace: the response is not symmetric and not 1 - busy share."""
    found = calls(eager(9, 10))
    latency = found[0].observed()
    busy = sum(op[1] - op[0] for api in found[0].apis for op in api[3]) / latency
    curve = hr.response(found, latency / 1e3)
    assert busy > 0.95
    assert hr.ratio_at(curve, 0.8) > 0.98
    assert hr.ratio_at(curve, 1.25) == pytest.approx(1.125, rel=0.03)
    assert math.log(hr.ratio_at(curve, 1.25)) > 5 * (1 - busy) * math.log(1.25)


def test_a_synchronising_runtime_pays_its_host_work_after_the_sync():
    """A runtime that launches, waits for the device and then does host work before returning (ONNX Runtime's
    run synchronises): the work after the sync is exposed, the kernels' time is not."""
    def body(t: Trace):
        for _ in range(20):
            t.launch([40.0], api_us=4.0)
        t.sync()
        t.work(200.0)
    found = calls(body)
    latency = found[0].observed()
    curve = hr.response(found, latency / 1e3)
    exposed = 200.0 + 4.0 + 2.0  # the host work after the sync, the first launch, the sync's own return
    assert hr.ratio_at(curve, 2.0) == pytest.approx((latency + exposed) / latency, rel=0.05)


def test_the_profilers_own_host_slowdown_is_calibrated_away():
    """Profiled, the host ran 2x slower than when timed (the profiler's callbacks): calibrated on the timed
    latency, the response is the one of the unprofiled call."""
    plain = calls(eager(6, 8))
    profiled = calls(eager(12, 8))
    timed_ms = plain[0].observed() / 1e3
    curve = hr.response(profiled, timed_ms)
    truth = hr.response(plain, timed_ms)
    assert curve["host_scale"] == pytest.approx(0.5, rel=0.1)
    for f in (0.8, 1.25, 2.0):
        assert hr.ratio_at(curve, f) == pytest.approx(hr.ratio_at(truth, f), rel=0.03)


def test_driver_launches_and_copies_count_like_runtime_launches():
    def body(t: Trace):
        for _ in range(50):
            t.work(15.0)
            t.launch([5.0], driver=True, name="cuLaunchKernelEx")
        t.launch([2.0], name="cudaMemcpyAsync")
    found = calls(body)
    assert len(found[0].apis) == 51
    assert hr.response(found, found[0].observed() / 1e3)["elasticity"] > 0.9


def test_without_a_marked_call_there_is_no_response():
    assert hr.calls_from_trace([{"cat": "kernel", "ts": 1.0, "dur": 1.0, "args": {"correlation": 1}}]) == []
    assert hr.response([], 1.0) is None


def test_curves_interpolate_and_extrapolate_within_all_host_work():
    curve = {"factors": [0.5, 0.8, 1.25, 2.0], "ratios": [0.9, 0.95, 1.1, 1.5]}
    assert hr.ratio_at(curve, 1.0) == pytest.approx(1.0)
    assert 1.0 < hr.ratio_at(curve, 1.1) < 1.1
    assert hr.ratio_at(curve, 4.0) <= 4.0 / 2.0 * 1.5 + 1e-9  # never steeper than all host work
    assert hr.ratio_at(None, 1.3) == 1.3
    assert hr.ratio_at(hr.power_curve(0.25), 2.0) == pytest.approx(2.0**0.25)
    assert hr.elasticity(hr.power_curve(0.25)) == pytest.approx(0.25)


def test_a_records_response_is_its_replay_else_its_busy_share_else_all_host_work():
    replay = {"factors": [2.0], "ratios": [1.0]}
    assert hr.of_record({"gpu_busy": {"share": 0.5, "host_response": replay}}) is replay
    assert hr.elasticity(hr.of_record({"gpu_busy": {"share": 0.9}})) == pytest.approx(0.1)
    assert hr.of_record({"device": {"kind": "cpu"}}) is None


def test_busy_share_counts_the_devices_own_work_not_the_annotations_over_it():
    """The profiler also puts the GPU-side span of each annotated region (ours around every call,
    torch.compile's around a compiled region) on the device: it covers the launch gaps and must not count."""
    from infbench.measure import gpu_busy

    trace = Trace()
    for _ in range(3):
        trace.call(eager(20, 5, launches=10))
    calls_seen = hr.calls_from_trace(trace.events)
    for call in calls_seen:
        first, last = call.apis[0][3][0][0], call.apis[-1][3][-1][1]
        trace.events.append({"ph": "X", "cat": "gpu_user_annotation", "name": hr.MARKER, "ts": first,
                             "dur": last - first})
    latency_ms = calls_seen[0].observed() / 1e3
    busy = gpu_busy.from_trace(trace.events, 3, latency_ms)
    assert busy["kernel_ms"] == pytest.approx(10 * 5.0 / 1e3)
    assert busy["class"] == "host-bound" and busy["share"] < 0.3
    assert busy["host_response"]["elasticity"] > 0.95
