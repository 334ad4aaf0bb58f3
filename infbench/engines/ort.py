"""ONNX Runtime: the exported or the fusion-optimized graph, run through IO binding.

IO binding keeps inputs in ORT-owned buffers bound once and writes outputs into one pre-allocated array, so
the timed call is the session's work only (no per-call input conversion or output allocation).
"""

from __future__ import annotations

import json
import time

import numpy as np

from infbench.engines.base import CellContext, Runner

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
PRECISIONS = {"cpu": ("fp32",), "cuda": ("fp32",)}
LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}


def supports(precision: str, device: str) -> str | None:
    if precision not in PRECISIONS.get(device, ()):
        return f"onnxruntime {PROVIDERS.get(device, device)} has no {precision} graph in this pipeline"
    return None


def available(device: str) -> str | None:
    try:
        import onnxruntime
    except ImportError as error:
        return f"onnxruntime not importable: {error}"
    provider = PROVIDERS[device]
    if provider not in onnxruntime.get_available_providers():
        return f"{provider} not in this onnxruntime build ({onnxruntime.get_available_providers()})"
    return None


def graph(options: dict) -> str | None:
    return options.get("graph", "exported")


class OrtRunner(Runner):
    def __init__(self, session, context: CellContext, prepare: dict):
        super().__init__(prepare=prepare)
        self.session = session
        output = session.get_outputs()[0].name
        first = session.run([output], context.inputs)[0]  # discovers the output shape and dtype
        self.out = np.empty_like(first)
        self.binding = session.io_binding()
        for name, array in context.inputs.items():
            self.binding.bind_cpu_input(name, np.ascontiguousarray(array))
        self.binding.bind_output(output, "cpu", 0, self.out.dtype, list(self.out.shape), self.out.ctypes.data)

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def output(self) -> np.ndarray:
        return self.out.copy()

    def close(self) -> None:
        self.binding = None
        self.session = None


def session_options(options: dict, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[options.get("graph_optimization_level", "all")])
    return so


def prepare(context: CellContext) -> OrtRunner:
    import onnxruntime as ort

    start = time.perf_counter()
    session = ort.InferenceSession(
        str(context.graph_path), session_options(context.options, context.threads), providers=[PROVIDERS[context.device]]
    )
    seconds = time.perf_counter() - start
    sidecar = context.graph_path.with_suffix(".json")
    graph_info = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    return OrtRunner(session, context, {
        "seconds": seconds,
        "what": "create inference session",
        "graph": context.options.get("graph", "exported"),
        "fused_ops": graph_info.get("fused_ops", {}),
        "providers": session.get_providers(),
    })
