"""How much of a GPU cell's latency is GPU work: the host-bound diagnosis.

Why: a latency measured with CUDA events from the first to the last kernel of a call includes every gap in
which the GPU waited for the host to launch work. Where those gaps dominate (small batch or sequence, eager
frameworks), the number depends on the host CPU's speed, which drifts; where kernels dominate, it depends on
the GPU alone. Measured on an H100: device kernel time is 9 % of eager fp16 BERT-base b1 s128 latency and
99 % of eager fp32 b32 s512.

How: PyTorch's profiler (Kineto over CUPTI) records every kernel, memcpy and memset the process issues --
ONNX Runtime's and TensorRT's too, since CUPTI traces the CUDA context, not the framework -- over a few calls,
outside the timed rounds. The union of their device intervals, per call, is the device-busy time; over the
cell's latency it is the GPU busy share. The same profiled calls, exported as a trace, are replayed on a slower
and a faster host (infbench.measure.host_response): how the latency moves with the host's speed, which is
what widens the cell's interval between runs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

from infbench.measure import host_response

GPU_BOUND_FROM = 0.8  # share at or above which a cell's latency is the GPU's
HOST_BOUND_BELOW = 0.5  # share below which most of the latency is the host's (launch gaps)
HOST_BOUND_NOTE = ("this latency depends on the host CPU; CUDA graphs or a lighter runtime remove most of it")


def union_ms(spans: list[tuple[float, float]]) -> float:
    """Total length of the union of [start, end] intervals (same unit in and out)."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(spans):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


CLASSES = ("gpu-bound", "mixed", "host-bound")  # what ``classify`` returns: cells.csv's ``bound``


def classify(share: float | None) -> str | None:
    if share is None:
        return None
    if share >= GPU_BOUND_FROM:
        return "gpu-bound"
    return "host-bound" if share < HOST_BOUND_BELOW else "mixed"


def measure(run: Callable[[], object], latency_ms: float, calls: int = 5) -> dict:
    """Profile ``calls`` calls of ``run`` (after one unprofiled call, each synchronised like a timed call) and
    return the busy time and share, and the host response of the latency (``host_response``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    run()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            with record_function(host_response.MARKER):
                run()
            torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text()).get("traceEvents", [])
    return from_trace(events, calls, latency_ms)


def from_trace(events: list[dict], calls: int, latency_ms: float) -> dict:
    """Busy share and host response of ``calls`` profiled calls in a Chrome trace. Only the device's own
    activity counts as busy (kernels, copies, memsets): the GPU-side spans of annotations (ours around each
    call, torch.compile's around a compiled region) cover the gaps too."""
    spans = [(e["ts"], e["ts"] + e.get("dur", 0.0)) for e in events if e.get("cat") in host_response.DEVICE_CATS]
    if not spans:
        return {"kernel_ms": None, "share": None, "events": 0, "calls": calls, "class": None, "host_response": None,
                "why": "the profiler saw no device activity for this engine"}
    kernel_ms = union_ms(spans) / 1e3 / calls  # profiler times are microseconds
    share = kernel_ms / latency_ms if latency_ms else None
    return {"kernel_ms": kernel_ms, "share": share, "events": len(spans) // calls, "calls": calls,
            "class": classify(share), "what": "union of device intervals (kernels, copies) per call / latency",
            "host_response": host_response.response(host_response.calls_from_trace(events), latency_ms)}
