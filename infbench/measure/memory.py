"""Memory per cell: what one backend holds and peaks at, measured around its own preparation and one call.

The cells of a shape share one process, so the process's peak (its RSS, or the device's memory in use) is the
same number for every backend of the shape and cannot guide a choice. Each cell is therefore measured as a
difference from what the session held just before it:

- **held**: what the cell keeps after ``prepare`` (weights in its precision, compiled code, captured graphs,
  ONNX Runtime's arena after its warm-up, workspaces), less what the session held before it (a generation
  session builds one model per precision before its backends: there the weights are counted apart, in the
  record's ``weights_bytes``, and the tables add them);
- **peak**: the largest of the preparation's own peak over that baseline and held + the transient of one
  call measured after the rounds (activations, scratch buffers freed after the call).

Which counter says it depends on who allocates: PyTorch's caching allocator for PyTorch engines on a GPU
(``torch.cuda.max_memory_allocated``, reset before each cell: exact and per tensor), the driver's count of
the process's device memory (NVML) for ONNX Runtime and TensorRT, whose arenas PyTorch does not see (it only
grows: ORT's arena never shrinks, so growth is what the cell took) -- or, where NVML cannot name the process
(some containers), the device's memory in use (cudaMemGetInfo), which also counts other processes --, and the process's resident set on a CPU
(its growth: the CPU allocators return little to the system). The record names the method.
"""

from __future__ import annotations

import os

TORCH_ALLOCATOR = "torch allocator (peak over the session's baseline)"
NVML = "NVML process device memory (growth)"
RSS = "host resident memory, RSS (growth)"
# where the driver does not name this process's memory (NVML in some containers): the device's memory in use,
# which also counts other processes' allocations made meanwhile (sessions preparing side by side)
DEVICE_USED = "device memory in use, cudaMemGetInfo (growth; other processes' allocations included)"
TORCH_ENGINES = {"torch", "torch_compile", "aot_inductor", "torch_tensorrt", "fault"}


def method(engine: str, device: str) -> str:
    if device != "cuda":
        return RSS
    return TORCH_ALLOCATOR if engine in TORCH_ENGINES else NVML


def _rss() -> int | None:
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except Exception:  # noqa: BLE001 - no counter, no number
        return None


def _current(how: str) -> int | None:
    if how == TORCH_ALLOCATOR:
        import torch

        torch.cuda.synchronize()
        return int(torch.cuda.memory_allocated())
    if how == NVML:
        from infbench.environment import nvml_process_bytes

        return nvml_process_bytes()
    if how == DEVICE_USED:
        import torch

        free, total = torch.cuda.mem_get_info()
        return int(total - free)
    return _rss()


def _peak(how: str) -> int | None:
    if how == TORCH_ALLOCATOR:
        import torch

        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    return _current(how)  # growth-only counters: the current value is the peak so far


def _reset(how: str) -> None:
    if how == TORCH_ALLOCATOR:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


class Tracker:
    """Around one cell: ``start()`` before its prepare, ``prepared()`` after it, ``call(run)`` after the rounds
    (one untimed call), then ``record()`` for the record's memory section."""

    def __init__(self, engine: str, device: str):
        self.how = method(engine, device)
        self.base = self.prepare_peak = self.held = self.transient = None

    def start(self) -> None:
        try:
            _reset(self.how)
            self.base = _current(self.how)
            if self.base is None and self.how == NVML:
                self.how = DEVICE_USED
                self.base = _current(self.how)
        except Exception:  # noqa: BLE001 - a memory counter that fails leaves the field empty, never the cell
            self.base = None

    def prepared(self) -> None:
        if self.base is None:
            return
        try:
            peak, now = _peak(self.how), _current(self.how)
            self.prepare_peak = None if peak is None else max(0, peak - self.base)
            self.held = None if now is None else max(0, now - self.base)
        except Exception:  # noqa: BLE001
            self.held = None

    def call(self, run) -> None:
        """One call's transient above what is allocated before it (outside any timed window)."""
        if self.held is None:
            return
        try:
            _reset(self.how)
            before = _current(self.how)
            run()
            after = _peak(self.how)
            self.transient = None if before is None or after is None else max(0, after - before)
        except Exception:  # noqa: BLE001
            self.transient = None

    def record(self) -> dict:
        peaks = [v for v in (self.prepare_peak, None if self.held is None else self.held + (self.transient or 0))
                 if v is not None]
        return {"backend_peak_bytes": max(peaks) if peaks else None, "backend_held_bytes": self.held,
                "backend_call_bytes": self.transient, "backend_method": self.how}
