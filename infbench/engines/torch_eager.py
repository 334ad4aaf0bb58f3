"""PyTorch eager: the baseline every speedup is measured against.

Weights are cast to the cell's precision (no autocast unless the ``autocast`` option asks for fp32 weights
under autocast); attention is whatever transformers selects (SDPA). fp32 on CUDA is true fp32: TF32 is off
unless the ``tf32`` option turns it on (as its own backend entry, so both are reported).

``cuda_graph: true`` (CUDA): one call is captured in a CUDA graph on the cell's static input buffers and
every timed call replays it, so the host launches one graph instead of hundreds of kernels (measured on an
H100: eager fp32 BERT-base b1 s128 6-10.5 ms eager, 3.17 ms replayed). The replay is checked against an
eager call on the same inputs before timing; a capture that fails, or a replay that disagrees, fails the
cell with the reason.
"""

from __future__ import annotations

import time

import numpy as np

from infbench.engines.base import CellContext, Runner

PRECISIONS = {"cpu": ("fp32", "bf16", "fp16"), "cuda": ("fp32", "fp16", "bf16")}


def supports(precision: str, device: str) -> str | None:
    if precision not in PRECISIONS.get(device, ()):
        return f"torch eager does not run {precision} on {device}"
    return None


def available(device: str, options: dict) -> str | None:
    if options.get("cuda_graph") and device != "cuda":
        return "cuda_graph needs a CUDA device"
    return torch_available(device)


def torch_available(device: str) -> str | None:
    """Shared by the torch engines: torch importable, and CUDA present when asked for."""
    try:
        import torch
    except ImportError as error:
        return f"torch not importable: {error}"
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA device not available to torch"
    return None


def graph(options: dict, precision: str) -> str | None:
    return None


class TorchRunner(Runner):
    """Calls a module on device-resident tensors; shared by eager and compiled torch engines."""

    def __init__(self, module, context: CellContext, prepare: dict):
        import contextlib

        import torch

        super().__init__(prepare=prepare)
        self.module = module
        self.device = context.device
        self.tensors = tuple(torch.from_numpy(context.inputs[n]).to(context.device) for n in context.inputs)
        self.last = None
        self._inference = torch.inference_mode
        self._autocast = contextlib.nullcontext
        if context.options.get("autocast"):
            dtype = models_dtype(context.precision)
            self._autocast = lambda: torch.autocast(device_type=context.device, dtype=dtype)
        if context.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def run(self) -> None:
        with self._inference(), self._autocast():
            self.last = self.module(*self.tensors)

    def device_peak_bytes(self) -> int | None:
        if self.device != "cuda":
            return None
        import torch

        return int(torch.cuda.max_memory_allocated())

    def output(self) -> np.ndarray:
        return self.last.float().cpu().numpy()

    def close(self) -> None:
        self.module = None
        self.last = None


def models_dtype(precision: str):
    from infbench import models

    return models.TORCH_DTYPES[precision]


def set_math(context: CellContext) -> None:
    """Threads pinned (CPU); TF32 only when the backend asks for it (CUDA)."""
    import torch

    torch.set_num_threads(context.threads)
    tf32 = bool(context.options.get("tf32", False))
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def load(context: CellContext):
    """The saved model as a module in the cell's precision (fp32 under autocast) on its device."""
    from infbench import models

    set_math(context)
    weights = "fp32" if context.options.get("autocast") else context.precision
    return models.load_module(context.model_dir, weights, context.device)


class CudaGraphRunner(TorchRunner):
    """Replays one captured call: inputs and output live in the graph's static buffers."""

    def __init__(self, module, context: CellContext, prepare: dict):
        import torch

        super().__init__(module, context, prepare)
        start = time.perf_counter()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
            for _ in range(3):
                TorchRunner.run(self)
        torch.cuda.current_stream().wait_stream(stream)
        eager = self.last.clone()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), self._inference(), self._autocast():
            self.static_out = self.module(*self.tensors)
        self.graph.replay()
        torch.cuda.synchronize()
        self.last = self.static_out
        tolerance = 1e-5 if context.precision == "fp32" else 1e-2
        if not torch.allclose(self.static_out.float(), eager.float(), rtol=tolerance, atol=tolerance):
            diff = float((self.static_out.float() - eager.float()).abs().max())
            raise RuntimeError(f"CUDA graph replay differs from the eager call (max abs {diff:.3g})")
        self.prepare.update(capture_seconds=time.perf_counter() - start, cuda_graph=True,
                            seconds=self.prepare["seconds"] + time.perf_counter() - start)

    def run(self) -> None:
        self.graph.replay()

    def close(self) -> None:
        self.graph = self.static_out = None
        super().close()


def prepare(context: CellContext) -> Runner:
    start = time.perf_counter()
    module = load(context)
    prepared = {"seconds": time.perf_counter() - start, "what": "load weights"}
    if context.options.get("cuda_graph"):
        return CudaGraphRunner(module, context, {**prepared, "what": "load weights, capture one call"})
    return TorchRunner(module, context, prepared)
