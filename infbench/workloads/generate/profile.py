"""What a generation launches on the device: kernels per generated token and their summed time.

One whole generation of the prepared backend runs under PyTorch's profiler (CUDA activity only: CUPTI reports
the kernels inside replayed CUDA graphs too), outside every timed window. Per generated token: the kernels
launched and the device time they took (the prompt's prefill is spread over the tokens: 1/new_tokens of it).
Beside the measured time per token this says where a step's time goes: ``busy_share`` is the kernels' time over
the step's, and the rest (``gap_ms``) is the device waiting between kernels -- launch latency and host work --,
which CUDA graphs remove and which no bandwidth floor counts.
"""

from __future__ import annotations

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
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA
               and not any(word in e.name.lower() for word in SKIP)]
    if not kernels:
        return None
    return {"kernels_per_token": len(kernels) / new_tokens,
            "kernel_ms_per_token": sum(e.time_range.elapsed_us() for e in kernels) / 1e3 / new_tokens,
            "what": "one whole generation under the profiler, per generated token (prefill spread over the tokens)"}


def with_gap(kernels: dict | None, tpot_ms: float) -> dict | None:
    """``kernels`` with the step's busy share and the time the device waited between kernels."""
    if not kernels:
        return kernels
    return {**kernels, "busy_share": min(1.0, kernels["kernel_ms_per_token"] / tpot_ms),
            "gap_ms": max(0.0, tpot_ms - kernels["kernel_ms_per_token"])}
