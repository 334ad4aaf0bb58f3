"""Native TensorRT and TensorRT-RTX: deserialize the plan built by the build_engine rule, bind device
buffers, ``execute_async_v3`` on a dedicated stream, optionally replayed as a captured CUDA graph.

One module for both libraries (the ``library`` option): their runtime APIs are the same, so a fix here is a
fix for both. Device buffers and the stream come from torch (always present in this pipeline): no second
CUDA binding library, and the stream is made current so that the CUDA-event clock times exactly it.

The plan is checked before it is used: its sha256 against the build's sidecar (a truncated or swapped file
is an error, never timed), its IO tensors against the ones the build recorded, and the cell's shape
against the profile. Nothing here can run on a machine without a GPU the library accepts; the pure parts
(IO checks, buffer sizes, dtype mapping) are unit-tested on the CPU.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from infbench import trt_build
from infbench.engines.base import CellContext, CellUnusable, Runner

PRECISIONS = ("fp32", "fp16", "bf16")
# TensorRT-RTX targets RTX GPUs; its runtime refuses data-centre Hopper (measured on an H100).
RTX_REFUSED_CAPABILITIES = {(9, 0): "TensorRT-RTX does not run on compute capability 9.0 (Hopper data-centre GPUs)"}


def supports(precision: str, device: str) -> str | None:
    if device != "cuda":
        return "TensorRT runs on CUDA devices only"
    if precision not in PRECISIONS:
        return f"TensorRT has no {precision} path here"
    return None


def available(device: str, options: dict) -> str | None:
    library = options.get("library", "tensorrt")
    try:
        trt_build.import_library(library)
    except ImportError as error:
        name = "TensorRT" if library == "tensorrt" else "TensorRT-RTX"
        return f"{name} runtime not importable: {error}"
    return cuda_refusal(library)


def cuda_refusal(library: str) -> str | None:
    """A reason this machine's GPU cannot run ``library``'s engines, or None."""
    import torch

    if not torch.cuda.is_available():
        return "CUDA device not available to torch (device buffers and streams come from torch)"
    capability = tuple(torch.cuda.get_device_capability())
    if library == "tensorrt_rtx":
        return RTX_REFUSED_CAPABILITIES.get(capability)
    return None


def graph(options: dict, precision: str) -> None:
    return None  # cells read the plan, not a graph


def plan_graph(options: dict, precision: str) -> str:
    """The ONNX graph the build_engine rule reads for this backend and precision."""
    return trt_build.graph_for(options.get("library", "tensorrt"), precision)


class _Logger:
    """A TensorRT logger that keeps error messages, so a refused plan fails with TensorRT's own words."""

    def __new__(cls, trt):
        class Collecting(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, message):
                if severity <= trt.ILogger.Severity.ERROR:
                    self.errors.append(str(message))

        return Collecting()


def engine_io(trt, engine) -> list[dict]:
    """The deserialized engine's IO tensors in binding order: name, mode, dtype."""
    tensors = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        tensors.append({"name": name, "mode": mode, "dtype": trt_build.dtype_name(engine.get_tensor_dtype(name))})
    return tensors


def check_io(actual: list[dict], built: list[dict], input_names: list[str]) -> None:
    """The engine binds what the build recorded, and takes exactly the cell's inputs; else an error."""
    strip = [{k: t[k] for k in ("name", "mode", "dtype")} for t in built]
    if sorted(actual, key=lambda t: t["name"]) != sorted(strip, key=lambda t: t["name"]):
        raise ValueError(f"engine IO {actual} differs from the build's {strip}: stale or foreign plan")
    inputs = sorted(t["name"] for t in actual if t["mode"] == "input")
    if inputs != sorted(input_names):
        raise ValueError(f"engine inputs {inputs} are not the model's inputs {sorted(input_names)}")


class TensorRTRunner(Runner):
    def __init__(self, trt, engine, info: dict, context: CellContext, prepare: dict):
        import torch

        super().__init__(prepare=prepare)
        self.engine = engine
        self.stream = torch.cuda.Stream()
        torch.cuda.set_stream(self.stream)  # the clock's events and the enqueue share this stream
        self.context = engine.create_execution_context()
        self.buffers: dict[str, torch.Tensor] = {}
        batch, seq_len = context.batch, context.seq_len
        io = {t["name"]: t for t in info["io"]}
        for tensor in engine_io(trt, engine):
            name, dtype = tensor["name"], getattr(torch, tensor["dtype"])
            if tensor["mode"] == "input":
                self.buffers[name] = torch.from_numpy(context.inputs[name]).to("cuda", dtype)
                self.context.set_input_shape(name, tuple(self.buffers[name].shape))
        for tensor in engine_io(trt, engine):
            if tensor["mode"] == "output":
                name = tensor["name"]
                shape = list(self.context.get_tensor_shape(name))
                expected = trt_build.concrete_shape(io[name], batch, seq_len)
                if shape != expected:
                    raise ValueError(f"output {name} shape {shape} != {expected} expected from the build")
                self.buffers[name] = torch.empty(shape, dtype=getattr(torch, tensor["dtype"]), device="cuda")
                self.output_name = name
        for name, buffer in self.buffers.items():
            self.context.set_tensor_address(name, buffer.data_ptr())
        self.graph = None
        self._enqueue()  # the first enqueue applies the shapes; a capture must come after it
        if context.options.get("cuda_graph"):
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=self.stream):
                self._enqueue()
        self.stream.synchronize()

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("execute_async_v3 returned False")

    def run(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self._enqueue()

    def output(self) -> np.ndarray:
        self.stream.synchronize()
        return self.buffers[self.output_name].float().cpu().numpy()

    def device_peak_bytes(self) -> int | None:
        from infbench.environment import nvml_process_bytes

        return nvml_process_bytes()

    def close(self) -> None:
        self.graph = None
        self.context = None
        self.engine = None
        self.buffers = {}


def prepare(context: CellContext) -> TensorRTRunner:
    library = context.options.get("library", "tensorrt")
    plan, info = trt_build.read(Path(context.engine_path))
    if info["status"] != "ok":
        raise CellUnusable(info["status"], f"engine build {info['status']}: {info['reason']}")
    problem = trt_build.in_profile(info["profile"], context.batch, context.seq_len)
    if problem:
        raise ValueError(problem)
    trt = trt_build.import_library(library)
    start = time.perf_counter()
    logger = _Logger(trt)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise RuntimeError(f"{library} refused the plan: {' | '.join(logger.errors) or 'no message'}")
    check_io(engine_io(trt, engine), info["io"], list(context.inputs))
    return TensorRTRunner(trt, engine, info, context, {
        "seconds": time.perf_counter() - start,
        "what": "deserialize engine, bind buffers",
        "library": library,
        "library_version": info["library_version"],
        "engine_bytes": info["plan_bytes"],
        "build_seconds": info["build_seconds"],
        "profile": info["profile"],
        "precision_handling": info["precision_handling"],
        "cuda_graph": bool(context.options.get("cuda_graph")),
    })


