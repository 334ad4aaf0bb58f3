"""How a GPU cell's latency moves when the host CPU is slower or faster: a replay of its profiled calls.

Why: between two runs the host's speed moves (H100 host, two days: a fixed Python loop 47 % slower), and a
cell moves by how much of its latency waits on the host. 1 - GPU busy share is a poor measure of that: a
CUDA-graph replay with 5 % of GPU-side gaps between its nodes does not move at all with the host, while
eager PyTorch at b32 s512 fp16 (busy 0.87) keeps the GPU fed by a host that is barely ahead of it, so a
slower host exposes its launches at once (measured on the H100, a core shared with a CPU burner: 1.56x; a
graph replay of the same model: 1.00x).

How: the profiled calls (PyTorch's profiler: CUPTI records the runtime/driver API calls on the host and
the kernels, copies and memsets on the device, correlated; ONNX Runtime's and TensorRT's too) are replayed
as a discrete-event model with the host's own work stretched by a factor f:
- the host runs its work between API calls f times slower; a synchronising call (``*Synchronize``,
  blocking copies) waits until the device has finished what was launched before it;
- each device op starts when the device is free and its launch has returned (plus the launch latency), plus
  the GPU-side gap it had in the trace (graph nodes and dependencies, which the host does not set);
- the call's latency is from its start on the host to the later of the device's last op and the host's
  return.
At f = 1 the replay gives back the profiled call exactly (the gaps are decomposed so that it does). The
profiler slows the host itself, so the host's scale is first calibrated: the f0 at which the replay
takes the latency the timed rounds measured. The response at f is L(f0 f) / L(f0), the median over the
profiled calls, kept at a few factors (``FACTORS``); ``ratio_at`` interpolates between them (log-log).
A CPU cell is all host work: its ratio is f (``ratio_at(None, f)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import median

import numpy as np

FACTORS = (0.5, 0.67, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0)
MARKER = "infbench::call"  # record_function name around each profiled call (infbench.measure.gpu_busy)
LAUNCH_LATENCY_US = 1.0  # from a launch call's return to its op's start on an idle device (upper bound)
DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
_API_CATS = ("cuda_runtime", "cuda_driver")
_BLOCKING_COPIES = ("cudaMemcpy", "cudaMemcpy2D", "cudaMemset", "cuMemcpy", "cuMemcpyDtoH_v2", "cuMemcpyHtoD_v2",
                    "cuMemcpyDtoH", "cuMemcpyHtoD")


def _is_sync(name: str) -> bool:
    return "Synchronize" in name or name in _BLOCKING_COPIES


@dataclass
class Call:
    """One profiled call: its host span (microseconds), its API calls in host order and their device ops."""

    start: float
    end: float
    apis: list[tuple[float, float, bool, list[tuple[float, float]]]] = field(default_factory=list)
    # (api start, api end, synchronises, [(op start, op end), ...] sorted)

    def observed(self) -> float:
        ends = [op[1] for api in self.apis for op in api[3]]
        return max([self.end] + ends) - self.start


def calls_from_trace(events: list[dict], marker: str = MARKER) -> list[Call]:
    """The profiled calls of a Chrome trace (``prof.export_chrome_trace``), one per ``marker`` span."""
    spans = sorted((e["ts"], e["ts"] + e.get("dur", 0.0)) for e in events
                   if e.get("name") == marker and e.get("cat") in ("user_annotation", "cpu_op"))
    apis = sorted((e for e in events if e.get("cat") in _API_CATS and "correlation" in (e.get("args") or {})),
                  key=lambda e: e["ts"])
    ops: dict[int, list[tuple[float, float]]] = {}
    for e in events:
        if e.get("cat") in DEVICE_CATS and "correlation" in (e.get("args") or {}):
            ops.setdefault(e["args"]["correlation"], []).append((float(e["ts"]), float(e["ts"] + e.get("dur", 0.0))))
    calls = []
    for start, end in spans:
        call = Call(float(start), float(end))
        for e in apis:
            if start <= e["ts"] and e["ts"] + e.get("dur", 0.0) <= end:
                mine = sorted(ops.get(e["args"]["correlation"], []))
                sync = _is_sync(e["name"])
                if mine or sync:
                    call.apis.append((float(e["ts"]), float(e["ts"] + e.get("dur", 0.0)), sync, mine))
        if any(api[3] for api in call.apis):
            calls.append(call)
    return calls


def simulate(call: Call, factor: float) -> float:
    """The call's latency (microseconds) on a host ``factor`` times slower (see the module docstring)."""
    anchor, anchor_sim = call.start, call.start  # the last host time not stretched (a sync's return)
    device_end, device_end_sim = call.start, call.start

    def host(t: float) -> float:
        return anchor_sim + factor * (t - anchor)

    for api_start, api_end, sync, ops in call.apis:
        ready, ready_sim = api_end, host(api_end)
        for op_start, op_end in ops:
            slack = max(0.0, op_start - device_end)
            waited = min(max(0.0, ready + LAUNCH_LATENCY_US - device_end), slack)  # idle for the host
            latency = min(LAUNCH_LATENCY_US, max(0.0, op_start - ready)) if ready > -math.inf else 0.0
            start_sim = max(device_end_sim, ready_sim + latency) + (slack - waited)
            device_end = max(device_end, op_end)
            device_end_sim = max(device_end_sim, start_sim + (op_end - op_start))
            ready, ready_sim = -math.inf, -math.inf  # the next op of one launch (a graph) follows the device
        if sync:
            overhead = max(0.0, api_end - max(api_start, device_end))
            anchor, anchor_sim = api_end, max(host(api_start), device_end_sim) + factor * overhead
    return max(device_end_sim, host(call.end)) - call.start


def host_scale(call: Call, latency_us: float, lo: float = 1e-3, hi: float = 4.0) -> float:
    """The factor f0 at which the replay takes ``latency_us`` (the profiler's own slowdown of the host
    undone); clamped to [lo, hi] where no factor does."""
    if simulate(call, lo) >= latency_us:
        return lo
    if simulate(call, hi) <= latency_us:
        return hi
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if simulate(call, mid) < latency_us else (lo, mid)
    return math.sqrt(lo * hi)


def response(calls: list[Call], latency_ms: float, factors=FACTORS) -> dict | None:
    """{"factors", "ratios" (median over calls of L(f0 f) / L(f0)), "host_scale" (median f0), "calls",
    "elasticity" (d log L / d log f around f = 1)}; None without a call to replay."""
    if not calls or not latency_ms or latency_ms <= 0:
        return None
    per_call, scales = [], []
    for call in calls:
        f0 = host_scale(call, latency_ms * 1e3)
        base = simulate(call, f0)
        per_call.append([simulate(call, f0 * f) / base for f in factors])
        scales.append(f0)
    ratios = [median(row[i] for row in per_call) for i in range(len(factors))]
    curve = {"factors": list(factors), "ratios": ratios, "host_scale": median(scales), "calls": len(calls),
             "what": "latency on a host f times slower / latency, from a replay of the profiled calls"}
    curve["elasticity"] = elasticity(curve)
    return curve


def ratio_at(curve: dict | None, factor: float) -> float:
    """The latency ratio on a host ``factor`` times slower; a curve of None is all host work (ratio = f)."""
    if not curve:
        return factor
    logs = np.log(np.asarray([1.0, *curve["factors"]], dtype=float))
    ratios = np.log(np.asarray([1.0, *curve["ratios"]], dtype=float))
    order = np.argsort(logs)
    logs, ratios = logs[order], ratios[order]
    x = math.log(factor)
    if x > logs[-1]:  # beyond the last factor: the last slope goes on (never faster than all host work)
        slope = (ratios[-1] - ratios[-2]) / (logs[-1] - logs[-2])
        return math.exp(ratios[-1] + min(1.0, max(0.0, slope)) * (x - logs[-1]))
    if x < logs[0]:
        slope = (ratios[1] - ratios[0]) / (logs[1] - logs[0])
        return math.exp(ratios[0] + min(1.0, max(0.0, slope)) * (x - logs[0]))
    return math.exp(float(np.interp(x, logs, ratios)))


def elasticity(curve: dict | None, factor: float = 1.25) -> float:
    """d log latency / d log host time between 1/factor and factor: 1 for all host work, 0 for none."""
    return (math.log(ratio_at(curve, factor)) - math.log(ratio_at(curve, 1 / factor))) / (2 * math.log(factor))


def power_curve(share: float, factors=FACTORS) -> dict:
    """The curve of a latency whose ``share`` moves with the host and the rest not at all (log-linear): what
    a record without a replay (GPU busy share only) or a CPU cell (share 1) is summarised with."""
    share = min(1.0, max(0.0, share))
    return {"factors": list(factors), "ratios": [f**share for f in factors],
            "what": f"latency ratio = f ** {share:.3f} (no replay)"}


def of_record(record: dict) -> dict | None:
    """A record's host response: the replay of its profiled calls on a GPU; for records without one, the
    latency's non-busy share moving with the host (``power_curve``): a forward cell's GPU busy share, a
    generation cell's device busy share of its decode step (its kernel time per token over its time per token,
    infbench.workloads.generate.profile); None (all host work) on a CPU or where nothing was measured (assume
    the worst)."""
    busy = record.get("gpu_busy") or {}
    if busy.get("host_response"):
        return busy["host_response"]
    share = busy.get("share")
    if share is None:
        share = ((record.get("generation") or {}).get("kernels") or {}).get("busy_share")
    return None if share is None else power_curve(1.0 - float(share))
