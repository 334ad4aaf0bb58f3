"""ONNX Runtime: the exported or the fusion-optimized graph, run through IO binding.

IO binding binds inputs once as OrtValues on the cell's device and the output to one pre-allocated OrtValue
there, so the timed call is the session's work only: no per-call host↔device copy, conversion or output
allocation. ``Run`` returns when the device work is done (ORT synchronises its stream), so the clock's
interval around it is the real latency. fp16 runs the fp16 conversion of the chosen graph (converted after
fusion, see infbench.onnx_graphs).

``provider: tensorrt`` puts ORT's TensorRT execution provider first (CUDA for what it does not take). Its
engines are built at session creation for the explicit profile of the backend's grid (given by the
workflow as ``options['profile']``) and cached under ``options['engine_cache_dir']``, so no engine is built
inside the timed region; fp16 cells enable trt_fp16 on the fp32 exported graph.
"""

from __future__ import annotations

import time

import numpy as np

from infbench.engines.base import CellContext, CellUnusable, Runner

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
NVINFER = "libnvinfer.so.10"  # what ORT 1.2x/1.3x's TensorRT provider links against
PRECISIONS = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}
LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}


def supports(precision: str, device: str) -> str | None:
    if precision not in PRECISIONS.get(device, ()):
        return f"onnxruntime {PROVIDERS.get(device, device)} has no {precision} graph in this pipeline"
    return None


def available(device: str, options: dict) -> str | None:
    try:
        import onnxruntime
    except ImportError as error:
        return f"onnxruntime not importable: {error}"
    provider = first_provider(device, options)
    if provider not in onnxruntime.get_available_providers():
        return f"{provider} not in this onnxruntime build ({', '.join(onnxruntime.get_available_providers())})"
    if provider == TENSORRT_PROVIDER:
        import ctypes

        try:
            ctypes.CDLL(NVINFER)
        except OSError as error:
            return f"TensorRT runtime not loadable for ORT's TensorRT provider: {error}"
    return None


def first_provider(device: str, options: dict) -> str:
    if device == "cuda" and options.get("provider") == "tensorrt":
        return TENSORRT_PROVIDER
    return PROVIDERS[device]


def graph(options: dict, precision: str) -> str:
    """The graph file stem: 'exported' / 'optimized', with '_fp16' for the fp16 conversion."""
    name = options.get("graph", "exported")
    if options.get("provider") == "tensorrt":
        return name  # fp16 is TensorRT's own (trt_fp16_enable) on the fp32 graph
    return f"{name}_fp16" if precision == "fp16" else name


class OrtRunner(Runner):
    def __init__(self, session, context: CellContext, prepare: dict):
        import onnxruntime as ort

        super().__init__(prepare=prepare)
        self.session = session
        self.device = context.device
        output = session.get_outputs()[0]
        self.binding = session.io_binding()
        self.inputs = {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), context.device, 0)
                       for name, array in context.inputs.items()}
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        # Allocated before the first run: with CUDA graphs that run is the capture, and it must already write
        # into the buffer every replay will write into.
        self.out = ort.OrtValue.ortvalue_from_shape_and_type(
            output_shape(session, context.inputs), ORT_TYPES[output.type], context.device, 0)
        self.binding.bind_ortvalue_output(output.name, self.out)

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def output(self) -> np.ndarray:
        return np.array(self.out.numpy(), copy=True)

    def device_peak_bytes(self) -> int | None:
        if self.device != "cuda":
            return None
        from infbench.environment import nvml_process_bytes

        return nvml_process_bytes()

    def close(self) -> None:
        self.binding = None
        self.session = None


ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def output_shape(session, inputs: dict[str, np.ndarray]) -> list[int]:
    """The first output's concrete shape: its symbolic dims ('batch', 'seq_len') named as in the inputs."""
    sizes: dict[str, int] = {}
    for declared in session.get_inputs():
        for dim, size in zip(declared.shape, inputs[declared.name].shape):
            if isinstance(dim, str):
                sizes[dim] = size
    shape = []
    for dim in session.get_outputs()[0].shape:
        if isinstance(dim, int):
            shape.append(dim)
        elif dim in sizes:
            shape.append(sizes[dim])
        else:
            raise ValueError(f"output dim {dim!r} is not an input dim: cannot pre-allocate the output")
    return shape


def session_options(options: dict, threads: int | None):
    """ONNX Runtime's session options for a cell: its threads (None: ORT's own choice), sequential execution,
    the graph optimisation level the backend asks for."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[options.get("graph_optimization_level", "all")])
    return so


def cuda_options(cuda_graph: bool, tf32: bool) -> dict:
    """The CUDA provider's options: its CUDA-graph capture, and TF32 only where asked (ORT's CUDA provider uses
    TF32 by default; fp32 means fp32 unless the backend asks for TF32)."""
    return {"device_id": 0, "enable_cuda_graph": "1" if cuda_graph else "0", "use_tf32": "1" if tf32 else "0"}


def providers(context: CellContext) -> list:
    if context.device == "cuda":
        cuda = cuda_options(bool(context.options.get("cuda_graph")), bool(context.options.get("tf32")))
        if context.options.get("provider") == "tensorrt":  # the graph capture is TensorRT's, not CUDA's
            return [(TENSORRT_PROVIDER, tensorrt_options(context)), (PROVIDERS["cuda"], {**cuda, "enable_cuda_graph": "0"})]
        return [(PROVIDERS["cuda"], cuda)]
    return [PROVIDERS["cpu"]]


def tensorrt_options(context: CellContext) -> dict:
    """ORT TensorRT provider options: explicit profile shapes for every input, engine and timing caches."""
    profile = context.options["profile"]

    def shapes(which: str) -> str:
        batch, seq_len = profile[which]
        return ",".join(f"{name}:{batch}x{seq_len}" for name in context.inputs)

    cache = str(context.options["engine_cache_dir"])
    return {
        "device_id": 0,
        "trt_fp16_enable": context.precision == "fp16",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": cache,
        "trt_profile_min_shapes": shapes("min"),
        "trt_profile_opt_shapes": shapes("opt"),
        "trt_profile_max_shapes": shapes("max"),
        "trt_cuda_graph_enable": bool(context.options.get("cuda_graph")),
    }


def prepare(context: CellContext) -> OrtRunner:
    import onnxruntime as ort

    from infbench import onnx_graphs

    graph_info = onnx_graphs.read_sidecar(context.graph_path)
    if graph_info.get("status", "ok") != "ok":
        raise CellUnusable("failed", f"graph {context.graph_path.stem}: {graph_info['reason']}")
    start = time.perf_counter()
    if context.device == "cuda" and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels torch also uses, whatever LD_LIBRARY_PATH says
    session = ort.InferenceSession(str(context.graph_path), session_options(context.options, context.threads),
                                   providers=providers(context))
    expected = first_provider(context.device, context.options)
    if session.get_providers()[0] != expected:
        raise RuntimeError(f"session fell back to {session.get_providers()[0]} instead of {expected}")
    seconds = time.perf_counter() - start
    runner = OrtRunner(session, context, {
        "seconds": seconds,
        "what": "create inference session",
        "graph": context.graph_path.stem,
        "fused_ops": graph_info.get("fused_ops", {}),
        "fusion": graph_info.get("fusion"),
        "providers": session.get_providers(),
        "cuda_graph": bool(context.options.get("cuda_graph")),
        "onnxruntime_version": ort.__version__,
    })
    if expected == TENSORRT_PROVIDER:
        # the provider builds (or loads from its cache) the engine on the first run: do it here, not in warm-up
        start = time.perf_counter()
        runner.run()
        runner.prepare.update(engine_build_or_load_seconds=time.perf_counter() - start,
                              profile=context.options["profile"], trt_fp16=context.precision == "fp16")
        runner.prepare["seconds"] += runner.prepare["engine_build_or_load_seconds"]
    return runner
