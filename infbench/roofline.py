"""The roofline of a cell: the work the model must do at a shape, the device's peak rates, and the time floor.

Why: a speedup says which backend is faster, not how much is left. The floor is the time the measured
device needs at its own measured peaks for the model's FLOPs and for its minimum memory traffic; the share
of that floor a backend reaches says whether a faster one can exist.

FLOPs are the encoder's matrix products (2 per multiply-add; embeddings, norms and activations are
negligible next to them and left out):  per layer  2·T·(4h² + 2h·i) + 4·b·s²·h,  T = b·s tokens, hidden h,
intermediate i. Minimum bytes: every weight read once at the cell's precision, plus the inputs and the output.
Peaks are measured once per run by the device_peaks rule (a large matmul per precision, a device copy):
advertised peaks are not what a given clock, driver and library reach.
"""

from __future__ import annotations

import json
from pathlib import Path

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def model_geometry(model_dir: Path) -> dict:
    """Layers, hidden, intermediate, parameter count and input count of a saved model (config.json + manifest)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    manifest = json.loads((Path(model_dir) / "manifest.json").read_text())
    return {
        "layers": int(config["num_hidden_layers"]),
        "hidden": int(config["hidden_size"]),
        "intermediate": int(config.get("intermediate_size") or 4 * config["hidden_size"]),
        "parameters": int(manifest["parameters"]),
        "inputs": len(manifest["input_names"]),
    }


def cell_work(geometry: dict, batch: int, seq_len: int, precision: str) -> dict:
    """FLOPs and minimum bytes of one forward pass at (batch, seq_len, precision)."""
    tokens = batch * seq_len
    h, i = geometry["hidden"], geometry["intermediate"]
    per_layer = 2 * tokens * (4 * h * h + 2 * h * i) + 4 * batch * seq_len * seq_len * h
    flops = geometry["layers"] * per_layer
    min_bytes = (geometry["parameters"] * BYTES[precision]   # weights, read once
                 + tokens * 8 * geometry["inputs"]           # int64 ids, mask, token types
                 + tokens * h * 4)                           # the fp32 output
    return {"flops": flops, "min_bytes": min_bytes}


def peak_key(precision: str, tf32: bool) -> str:
    return "tf32" if precision == "fp32" and tf32 else precision


def floor(work: dict, peaks: dict, precision: str, tf32: bool = False) -> dict | None:
    """The time floor (ms) and which roof sets it, or None where the device has no measured peak."""
    flops_per_s = (peaks.get("matmul_flops_per_s") or {}).get(peak_key(precision, tf32))
    bytes_per_s = peaks.get("copy_bytes_per_s")
    if not flops_per_s or not bytes_per_s:
        return None
    compute_ms = work["flops"] / flops_per_s * 1e3
    memory_ms = work["min_bytes"] / bytes_per_s * 1e3
    return {"floor_ms": max(compute_ms, memory_ms), "compute_ms": compute_ms, "memory_ms": memory_ms,
            "bound": "compute" if compute_ms >= memory_ms else "memory"}


def measure_peaks(device: str, threads: int, policy) -> dict:
    """Peak matmul FLOP/s per precision and device copy bandwidth, timed with the pipeline's own policy."""
    import torch

    from infbench.measure.timing import CudaEventClock, HostClock, measure

    clock = CudaEventClock() if device == "cuda" else HostClock()
    torch.set_num_threads(threads)
    size = 8192 if device == "cuda" else 1024
    results = {"device": device, "matmul_size": size, "matmul_flops_per_s": {}, "timing": {}}
    precisions = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if device == "cuda":
        precisions["tf32"] = torch.float32
    for name, dtype in precisions.items():
        if device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        elif name == "fp16":
            continue  # CPU fp16 matmul is an emulation, not a rate anything here runs at
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        out = torch.empty(size, size, device=device, dtype=dtype)
        timing = measure(lambda: torch.matmul(a, b, out=out), policy, clock)
        results["matmul_flops_per_s"][name] = 2 * size**3 / (timing["median_ms"] / 1e3)
        results["timing"][f"matmul_{name}"] = {k: timing[k] for k in ("median_ms", "n")}
    torch.backends.cuda.matmul.allow_tf32 = False
    count = (1 << 28 if device == "cuda" else 1 << 25) // 4  # 1 GiB / 128 MiB of fp32: far beyond any cache
    src = torch.ones(count, device=device)
    dst = torch.empty_like(src)
    timing = measure(lambda: dst.copy_(src), policy, clock)
    results["copy_bytes_per_s"] = 2 * src.numel() * 4 / (timing["median_ms"] / 1e3)  # read + write
    results["timing"]["copy"] = {k: timing[k] for k in ("median_ms", "n")}
    return results
