"""Torch-TensorRT through ``torch.compile(backend="tensorrt")``: the successor of the seed's fx2trt.

Dynamo hands the traced graph to Torch-TensorRT, which converts the supported subgraphs (at least
``min_block_size`` ops) to TensorRT engines and leaves the rest in torch. Compilation happens on the first
call, in ``prepare``, and its seconds are recorded; a recompile inside the timed loop makes the cell failed,
as for inductor (infbench.engines.torch_compile).
"""

from __future__ import annotations

import time

from infbench.engines import torch_eager
from infbench.engines.base import CellContext
from infbench.engines.torch_eager import TorchRunner

PRECISIONS = ("fp32", "fp16", "bf16")


def supports(precision: str, device: str) -> str | None:
    if device != "cuda":
        return "Torch-TensorRT runs on CUDA devices only"
    if precision not in PRECISIONS:
        return f"Torch-TensorRT has no {precision} path here"
    return None


def available(device: str, options: dict) -> str | None:
    reason = torch_eager.torch_available(device)
    if reason:
        return reason
    try:
        import torch_tensorrt  # noqa: F401 - registers the "tensorrt" dynamo backend
    except (ImportError, OSError) as error:
        return f"torch_tensorrt not importable: {error}"
    return None


graph = torch_eager.graph


class TorchTensorRTRunner(TorchRunner):
    """Dynamo's graph counter is process-wide and other cells of the session compile after this one is
    prepared, so the count is taken at this runner's first timed call, not at the end of its prepare."""

    def __init__(self, module, context: CellContext, prepare: dict, unique_graphs: int):
        super().__init__(module, context, prepare)
        self.unique_graphs = unique_graphs
        self.graphs_at_first_run = None

    def run(self) -> None:
        if self.graphs_at_first_run is None:
            self.graphs_at_first_run = graphs_compiled()
        super().run()

    def verify(self) -> str | None:
        recompiles = graphs_compiled() - self.graphs_at_first_run if self.graphs_at_first_run is not None else 0
        self.prepare["recompiles"] = recompiles
        if recompiles:
            return f"{recompiles} recompile(s) after preparation: compilation inside the timed region"
        return None


def graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def prepare(context: CellContext) -> TorchTensorRTRunner:
    import torch
    import torch._dynamo
    import torch_tensorrt  # noqa: F401

    from infbench.models import TORCH_DTYPES

    start = time.perf_counter()
    module = torch_eager.load(context)
    load_seconds = time.perf_counter() - start
    graphs_before = graphs_compiled()  # no dynamo reset: other compiled cells of the session live here too
    options = {
        "enabled_precisions": {TORCH_DTYPES[context.precision]},
        "min_block_size": int(context.options.get("min_block_size", 5)),
        "use_fp32_acc": context.precision != "fp32",
    }
    if context.options.get("optimization_level") is not None:
        options["optimization_level"] = int(context.options["optimization_level"])
    compiled = torch.compile(module, backend="tensorrt", dynamic=False, options=options)
    runner = TorchTensorRTRunner(compiled, context, {}, 0)
    start = time.perf_counter()
    runner.run()
    torch.cuda.synchronize()
    compile_seconds = time.perf_counter() - start
    runner.unique_graphs = graphs_compiled() - graphs_before
    runner.graphs_at_first_run = None  # the count starts at the first timed call (see the class)
    runner.prepare.update(seconds=load_seconds + compile_seconds, load_seconds=load_seconds,
                          compile_seconds=compile_seconds, graphs=runner.unique_graphs, recompiles=0,
                          torch_tensorrt_version=torch_tensorrt.__version__,
                          options={k: sorted(map(str, v)) if isinstance(v, set) else v for k, v in options.items()})
    return runner
