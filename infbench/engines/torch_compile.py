"""TorchDynamo + inductor (``torch.compile``), with proof that the compiled code is what was timed.

Dynamo falls back to eager silently (recompile limit, unsupported frames). To make that impossible to miss,
the inductor backend is wrapped: every compiled graph is counted when it is built and when it is called.
A timed iteration that calls no compiled graph is an eager fallback, and a graph compiled after preparation
is a recompile inside the timed region; either makes the cell ``failed`` (see ``verify``), never a number.
Compilation happens in ``prepare`` (the first call), outside the timed region, and its time is recorded.

Several compiled cells share one process (a shape session times them in interleaved rounds), so nothing
here resets dynamo (that would drop the other cells' compiled code) and counters are read as differences.
Each cell compiles its own module with its own backend object (dynamo's backend guard keeps their cache
entries apart); the recompile limit is raised to hold one entry per cell of a session, since it exists to
stop one module recompiling for ever-new inputs, which ``verify`` catches anyway.
"""

from __future__ import annotations

import os
import time

from infbench import devices
from infbench.engines import torch_eager
from infbench.engines.base import CellContext
from infbench.engines.torch_eager import TorchRunner

SESSION_CACHE_ENTRIES = 64  # compiled cells one process may hold (dynamo's default limit is 8 per code object)

supports = torch_eager.supports
graph = torch_eager.graph


def available(device: str, options: dict) -> str | None:
    reason = torch_eager.torch_available(device)
    if reason:
        return reason
    import shutil

    if device == "cpu" and not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")):
        return "inductor on CPU needs a C++ compiler (g++) on PATH"
    return None


class CountingInductor:
    """A dynamo backend equal to inductor (same mode options) that counts graph builds and graph calls."""

    def __init__(self, mode: str, dynamic: bool, patches: dict | None = None):
        import torch._inductor

        # the mode's options, then any inductor config the entry names (e.g. coordinate_descent_tuning)
        self.config_patches = {**torch._inductor.list_mode_options(mode, dynamic), **(patches or {})}
        self.cudagraphs = bool(self.config_patches.get("triton.cudagraphs", False))
        self.graphs_built = 0
        self.graph_calls = 0

    def __call__(self, graph_module, example_inputs):
        from torch._inductor.compile_fx import compile_fx

        self.graphs_built += 1
        compiled = compile_fx(graph_module, example_inputs, config_patches=self.config_patches)

        def counted(*args):
            self.graph_calls += 1
            return compiled(*args)

        return counted


class CompiledRunner(TorchRunner):
    def __init__(self, module, backend: CountingInductor, context: CellContext, prepare: dict):
        super().__init__(module, context, prepare)
        self.backend = backend
        self.cudagraph_skips_before = 0
        self.graphs_after_prepare = backend.graphs_built
        self.runs = 0
        self.eager_runs = 0

    def run(self) -> None:
        calls = self.backend.graph_calls
        super().run()
        self.runs += 1
        if self.backend.graph_calls == calls:
            self.eager_runs += 1

    def verify(self) -> str | None:
        from torch._dynamo.utils import counters

        recompiles = self.backend.graphs_built - self.graphs_after_prepare
        cudagraph_skips = int(counters["inductor"].get("cudagraph_skips", 0)) - self.cudagraph_skips_before
        self.prepare.update(recompiles=recompiles, fallback=self.eager_runs > 0, eager_runs=self.eager_runs,
                            compiled_runs=self.runs - self.eager_runs, cudagraph_skips=cudagraph_skips)
        if self.eager_runs:
            return f"compiled path not taken in {self.eager_runs} of {self.runs} runs (eager fallback)"
        if recompiles:
            return f"{recompiles} recompile(s) after preparation: compilation inside the timed region"
        if self.backend.cudagraphs and self.device == "cuda" and cudagraph_skips:
            return f"CUDA graphs requested but skipped {cudagraph_skips} time(s): the timed path was not replayed"
        return None


def serialize_autotuning() -> None:
    """Inductor times candidate kernels on the GPU while it compiles (max-autotune: GEMM templates; every
    mode: the launch configs of its Triton kernels). Shape sessions prepare side by side (infbench/devices.py),
    so each of those benchmarks takes the host's autotune lock: candidates are timed one at a time, never
    beside another compiler's, and the choice is not skewed by a shared GPU. (Other sessions' compiles may
    use the CPU meanwhile: a kernel's device time is what is compared.)"""
    from torch._inductor.runtime import benchmarking

    if hasattr(benchmarking, "set_gpu_benchmark_lock_context"):  # inductor's own hook (torch >= 2.12)
        benchmarking.set_gpu_benchmark_lock_context(devices.autotune_exclusive)
        return
    bench = benchmarking.benchmarker
    if getattr(bench, "infbench_locked", False):
        return
    original = bench.benchmark_gpu

    def locked(*args, **kwargs):
        with devices.autotune_exclusive():
            return original(*args, **kwargs)

    bench.benchmark_gpu, bench.infbench_locked = locked, True


def prepare(context: CellContext) -> CompiledRunner:
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    options = {"mode": "default", "dynamic": False, "fullgraph": False, "tf32": False, **context.options}
    start = time.perf_counter()
    module = torch_eager.load(context)
    load_seconds = time.perf_counter() - start

    if context.device == "cuda":  # max-autotune times GEMM candidates, every mode times Triton configs
        serialize_autotuning()
    threads = os.environ.get("TORCHINDUCTOR_COMPILE_THREADS")
    if threads:  # set per job (scripts/bench_shape.py); inductor's config may predate it in a forked worker
        import torch._inductor.config

        torch._inductor.config.compile_threads = int(threads)
    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), SESSION_CACHE_ENTRIES))
    breaks_before = int(sum(counters["graph_break"].values()))
    hits_before = int(counters["inductor"].get("fxgraph_cache_hit", 0))
    backend = CountingInductor(options["mode"], options["dynamic"])
    compiled = torch.compile(module, backend=backend, dynamic=options["dynamic"], fullgraph=options["fullgraph"])
    runner = CompiledRunner(compiled, backend, context, {})
    start = time.perf_counter()
    runner.run()  # the first call compiles
    if context.device == "cuda":
        torch.cuda.synchronize()
    compile_seconds = time.perf_counter() - start
    runner.runs = runner.eager_runs = 0
    runner.graphs_after_prepare = backend.graphs_built
    runner.cudagraph_skips_before = int(counters["inductor"].get("cudagraph_skips", 0))
    if backend.graphs_built == 0:
        raise RuntimeError("torch.compile produced no graph: the module ran eagerly")
    runner.prepare.update(
        seconds=load_seconds + compile_seconds,
        load_seconds=load_seconds,
        compile_seconds=compile_seconds,
        graphs=backend.graphs_built,
        graph_breaks=int(sum(counters["graph_break"].values())) - breaks_before,
        recompiles=0,
        fallback=False,
        fx_graph_cache_hits=int(counters["inductor"].get("fxgraph_cache_hit", 0)) - hits_before,
        inductor_cache_dir=os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
        mode=options["mode"],
        dynamic=options["dynamic"],
        cudagraphs=backend.cudagraphs,
    )
    return runner
