"""PyTorch eager: the baseline every speedup is measured against.

Weights are cast to the cell's precision (no autocast); attention is whatever transformers selects (SDPA).
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


def available(device: str) -> str | None:
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


def graph(options: dict) -> str | None:
    return None


class TorchRunner(Runner):
    """Calls a module on device-resident tensors; shared by eager and compiled torch engines."""

    def __init__(self, module, context: CellContext, prepare: dict):
        import torch

        super().__init__(prepare=prepare)
        self.module = module
        self.tensors = tuple(torch.from_numpy(context.inputs[n]).to(context.device) for n in context.inputs)
        self.last = None
        self._inference = torch.inference_mode

    def run(self) -> None:
        with self._inference():
            self.last = self.module(*self.tensors)

    def output(self) -> np.ndarray:
        return self.last.float().cpu().numpy()

    def close(self) -> None:
        self.module = None
        self.last = None


def pin_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def load(context: CellContext):
    """The saved model as a module in the cell's precision on its device, with threads pinned."""
    from infbench import models

    pin_threads(context.threads)
    return models.load_module(context.model_dir, context.precision, context.device)


def prepare(context: CellContext) -> Runner:
    start = time.perf_counter()
    module = load(context)
    return TorchRunner(module, context, {"seconds": time.perf_counter() - start, "what": "load weights"})
