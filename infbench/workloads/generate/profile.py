"""What a generation launches on the device: kernels per generated token and their summed time.

One whole generation of the prepared backend runs under PyTorch's profiler (CUDA activity only: CUPTI reports
the kernels inside replayed CUDA graphs too), outside every timed window. Per generated token: the kernels
launched and the device time they took (the prompt's prefill is spread over the tokens: 1/new_tokens of it).
Beside the measured time per token this says where a step's time goes: ``busy_share`` is the kernels' time over
the step's, and the rest (``gap_ms``) is the device waiting between kernels -- launch latency and host work --,
which CUDA graphs remove and which no bandwidth floor counts.
"""

from __future__ import annotations

import collections

SKIP = ("memcpy", "memset")  # copies and fills are not kernels of the model


def kernels_per_token(generate, new_tokens: int) -> dict | None:
    """{kernels_per_token, kernel_ms_per_token} of one generation (``generate(mark)``), or None off a GPU."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        generate(lambda: None)
        torch.cuda.synchronize()
    events = _events(prof)
    named = [(name, us) for name, device, us in events
             if device == DeviceType.CUDA and not any(w in name.lower() for w in SKIP)]
    kernels = [us for _, us in named]
    if not kernels:
        return None
    # the CUDA runtime's calls, whichever library made them (CUPTI sees ONNX Runtime's too)
    runtime = [name for name, device, _ in events if device == DeviceType.CPU and name.startswith("cuda")]
    launches = sum(name.startswith("cudaGraphLaunch") for name in runtime)
    return {"kernels_per_token": len(kernels) / new_tokens,
            "kernel_ms_per_token": sum(kernels) / 1e3 / new_tokens,
            "graph_launches_per_token": launches / new_tokens if runtime else None,
            "top": top_kernels(named, new_tokens),
            "what": "one whole generation under the profiler, per generated token (prefill spread over the tokens)"}


def top_kernels(named: list[tuple[str, float]], new_tokens: int, keep: int = 6) -> list[dict]:
    """The kernels that took the most device time, per generated token: where a step's time goes, by name
    (cut to 120 characters: templated names run to thousands)."""
    time, count = collections.Counter(), collections.Counter()
    for name, us in named:
        time[name[:120]] += us
        count[name[:120]] += 1
    return [{"name": name, "ms_per_token": us / 1e3 / new_tokens, "per_token": count[name] / new_tokens}
            for name, us in time.most_common(keep)]


def _events(prof) -> list[tuple[str, object, float]]:
    """(name, device type, µs) of every profiled event, read from the profiler's raw results: building its
    FunctionEvent tree (``prof.events()``) took seconds per eager generation of ~10^5 kernels; that is the
    fallback where the raw results are not there."""
    try:
        raw = prof.profiler.kineto_results.events()
        return [(e.name(), e.device_type(), (e.end_ns() - e.start_ns()) / 1e3) for e in raw]
    except AttributeError:
        return [(e.name, e.device_type, e.time_range.elapsed_us()) for e in prof.events()]


def graph_fallback(graphs, kernels: dict | None) -> str | None:
    """Why a backend that captured CUDA graphs (``graphs``) is a failed cell: its profiled generation launched
    none, so it ran uncaptured (a library may drop its graphs with only a warning). None where it launched
    some, where it captured none, or where the profile saw no runtime calls to judge by."""
    if not graphs or not kernels or kernels.get("graph_launches_per_token") is None:
        return None
    if kernels["graph_launches_per_token"] == 0:
        return "CUDA graphs were captured, but the profiled generation launched none: it ran uncaptured"
    return None


def with_gap(kernels: dict | None, tpot_ms: float) -> dict | None:
    """``kernels`` with the step's busy share and the time the device waited between kernels."""
    if not kernels:
        return kernels
    return {**kernels, "busy_share": min(1.0, kernels["kernel_ms_per_token"] / tpot_ms),
            "gap_ms": max(0.0, tpot_ms - kernels["kernel_ms_per_token"])}
