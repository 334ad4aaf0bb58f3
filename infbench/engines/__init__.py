"""Engines: the implementations behind backends, found through one registry.

An engine is one module exposing four names (nothing else is called by the pipeline):

``supports(precision, device) -> str | None``
    Static capability: a reason the engine cannot run ``precision`` on ``device``, or None. Cheap and
    import-free, so unsupported cells never pay for loading a library.
``available(device, options) -> str | None``
    Can it run here: a reason (library not importable, device missing or refused), or None.
``graph(options, precision) -> str | None``
    Which ONNX graph the engine reads ('exported', 'optimized', 'optimized_fp16', ...) or None; the workflow turns this into the
    cell job's input, so a torch cell never waits for, nor reruns after, an ONNX export.
``plan_graph(options, precision) -> str`` (optional)
    Engines that run a serialized engine built ahead (TensorRT): the ONNX graph the build_engine rule reads.
    The workflow then gives the cell the plan (``CellContext.engine_path``) instead of a graph.
``COMPILED_AHEAD = True`` (optional)
    Engines that load a package compiled ahead by the workflow's compile_aoti job (AOTInductor): the cell gets
    it as ``CellContext.engine_path``.
``prepare(cell: CellContext) -> Runner``
    Load / compile / build outside the timed region (see infbench.engines.base.Runner).

Adding an engine is adding one module and one line to ``ENGINES`` (plus its options in config/schema.yaml).
Engine modules import their heavy libraries inside functions, so this registry is cheap to import from the
Snakefile.
"""

from __future__ import annotations

from types import ModuleType

from infbench.engines import aot_inductor, fault, ort, tensorrt, torch_compile, torch_eager, torch_tensorrt

ENGINES: dict[str, ModuleType] = {
    "torch": torch_eager,
    "torch_compile": torch_compile,
    "aot_inductor": aot_inductor,  # inductor compiled ahead (rule compile_aoti), loaded by the cell
    "onnxruntime": ort,
    "tensorrt": tensorrt,  # TensorRT and TensorRT-RTX (option 'library')
    "torch_tensorrt": torch_tensorrt,
    "fault": fault,  # fails on purpose: for testing the fault paths, never for benchmarking
}


def get(name: str) -> ModuleType:
    try:
        return ENGINES[name]
    except KeyError:
        raise KeyError(f"unknown engine {name!r} (known: {sorted(ENGINES)})") from None
