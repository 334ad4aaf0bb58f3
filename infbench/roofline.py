"""The roofline of a cell: the work the model must do at a shape, the device's peak rates, and the time floor.

Why: a speedup says which backend is faster, not how much is left. The floor is the time the measured
device needs at its own measured peaks for the model's FLOPs and for its minimum memory traffic; the share
of that floor a backend reaches says whether a faster one can exist.

FLOPs are counted, not derived from one family's key names: the reference job runs the benchmarked part
of the model once per shape under PyTorch's FLOP counter (matrix products and attention, 2 per
multiply-add; embeddings, norms and activations are negligible next to them and not counted) and writes the
count beside the reference (infbench.models.make_reference). Minimum bytes: every weight of the benchmarked
part read once at the cell's precision, plus the real inputs and the fp32 output.
Peaks are measured once per run by the device_peaks rule (a large matmul per precision, a device copy):
advertised peaks are not what a given clock, driver and library reach.
"""

from __future__ import annotations

import json
from pathlib import Path

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


WORK_KEYS = ("batch", "seq_len", "flops", "parameters", "input_bytes", "output_elements")


def model_work(manifest_path: Path, work_paths: list[Path] | None = None) -> dict:
    """A model's counted work per shape: {benchmarked, shapes: {(batch, seq_len): work}}.

    ``work_paths`` default to the sidecars beside the model's references (results/reference/<model>/*.json,
    a sibling of results/models/<model>/); a shape without one has no roofline row, never an error."""
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    if work_paths is None:
        model_dir = manifest_path.parent
        work_paths = sorted((model_dir.parent.parent / "reference" / model_dir.name).glob("b*_s*.json"))
    shapes = {}
    for path in work_paths:
        work = json.loads(Path(path).read_text())
        missing = [k for k in WORK_KEYS if not isinstance(work.get(k), int)]
        if missing:
            raise ValueError(f"{path}: no {', '.join(missing)} (a reference from before FLOP counting? rerun it)")
        shapes[(work["batch"], work["seq_len"])] = work
    return {"benchmarked": manifest.get("benchmarked"), "shapes": shapes}


def cell_work(model: dict, batch: int, seq_len: int, precision: str) -> dict | None:
    """FLOPs and minimum bytes of one forward pass at (batch, seq_len, precision); None if not counted."""
    work = (model.get("shapes") or {}).get((batch, seq_len))
    if work is None or precision not in BYTES:
        return None
    min_bytes = (work["parameters"] * BYTES[precision]  # weights, read once
                 + work["input_bytes"]                  # int64 ids, mask, token types
                 + work["output_elements"] * 4)         # the fp32 output
    return {"flops": int(work["flops"]), "min_bytes": int(min_bytes)}


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


def raised_peaks(peaks: dict, achieved: list[tuple[str, float, float]]) -> tuple[dict, list[str]]:
    """The peaks with any rate a cell beat raised to that cell's, and which ones were raised.

    ``achieved``: (peak key, FLOP/s, minimum bytes/s) of each measured cell. A cell faster than its floor is
    evidence that the peak was measured low (on a loaded host the peaks job can time a slow window), not
    that the cell beat the device: the largest rate seen is a lower bound of the real peak, so it takes the
    measured one's place, and the table says so."""
    flops = dict(peaks.get("matmul_flops_per_s") or {})
    bandwidth = peaks.get("copy_bytes_per_s")
    raised = []
    for key, flops_per_s, bytes_per_s in achieved:
        if key in flops and flops_per_s > flops[key]:
            flops[key] = flops_per_s
            raised.append(f"matmul {key}")
        if bandwidth and bytes_per_s > bandwidth:
            bandwidth = bytes_per_s
            raised.append("copy")
    return {**peaks, "matmul_flops_per_s": flops, "copy_bytes_per_s": bandwidth}, sorted(set(raised))


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
