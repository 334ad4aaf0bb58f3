"""TensorRT engine building, shared by TensorRT and TensorRT-RTX (same builder/parser API, one code path).

Why a build step of its own: an engine is built once per (model, backend, precision) — or per shape with
``per_shape`` — by the build_engine rule, and every cell of it only deserializes the plan. The optimization
profile is the backend's batch × seq_len grid (min / opt / max), so no shape of the matrix triggers a
rebuild or falls outside the profile.

Precision, the one place the two libraries differ:
- TensorRT (weakly typed network): the fp32 graph with the FP16 / BF16 builder flag; normalization and
  softmax layers are constrained to fp32 (they overflow in fp16), and the record says how many.
- TensorRT-RTX (strongly typed only): the precision is the graph's own types, so fp16 / bf16 cells read the
  typed graphs of infbench.onnx_precision.to_typed, in which LayerNormalization and Softmax stay fp32.
fp32 is true fp32 on both: the TF32 flag (on by default) is cleared unless the backend asks for TF32.

A library that is not importable is not an error of the DAG: the build writes an empty plan and a sidecar
with status ``unavailable`` and the reason, and every cell of that engine records it (infbench.engines.tensorrt).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from importlib import metadata
from pathlib import Path

LIBRARIES = ("tensorrt", "tensorrt_rtx")
# import names: the meta wheel's module, then the split "-bindings" wheel's module (what PyPI's cu13 wheels ship)
MODULES = {"tensorrt": ("tensorrt", "tensorrt_bindings"), "tensorrt_rtx": ("tensorrt_rtx", "tensorrt_rtx_bindings")}
DISTRIBUTIONS = {
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings", "tensorrt-cu12-bindings"),
    "tensorrt_rtx": ("tensorrt-rtx", "tensorrt-rtx-cu13-bindings", "tensorrt-rtx-cu12-bindings"),
}
STRONGLY_TYPED = {"tensorrt": False, "tensorrt_rtx": True}
KEEP_FP32_LAYERS = ("NORMALIZATION", "SOFTMAX")


def import_library(library: str):
    """The library's Python module, or ImportError naming every module tried."""
    errors = []
    for name in MODULES[library]:
        try:
            return importlib.import_module(name)
        except ImportError as error:  # a missing libnvinfer raises ImportError / OSError from the bindings
            errors.append(f"{name}: {error}")
        except OSError as error:
            errors.append(f"{name}: {error}")
    raise ImportError(f"{library} not importable ({'; '.join(errors)})")


def library_version(library: str) -> str | None:
    """The installed version, read from package metadata without importing (cheap enough for the Snakefile):
    a new version rebuilds the engines."""
    for distribution in DISTRIBUTIONS[library]:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def profile_from_grid(batches: list[int], seq_lens: list[int]) -> dict:
    """min / opt / max (batch, seq_len) covering the grid; opt is the middle of each axis (TensorRT tunes its
    kernels for opt, so the middle of the grid is the least unfair single choice)."""
    batches, seq_lens = sorted(batches), sorted(seq_lens)
    return {"min": [batches[0], seq_lens[0]], "opt": [batches[len(batches) // 2], seq_lens[len(seq_lens) // 2]],
            "max": [batches[-1], seq_lens[-1]]}


def graph_for(library: str, precision: str) -> str:
    """Which ONNX graph a build reads: the typed graph on TensorRT-RTX, the fp32 graph plus flags on TensorRT."""
    if STRONGLY_TYPED[library] and precision != "fp32":
        return f"exported_{precision}"
    return "exported"


def build(graph: Path, out: Path, library: str, precision: str, profile: dict, options: dict) -> dict:
    """Build and serialize one engine; write ``out`` (the plan) and its sidecar JSON; return the sidecar."""
    out = Path(out)
    info = {"library": library, "library_version": library_version(library), "precision": precision,
            "profile": profile, "graph": Path(graph).name, "options": options}
    graph_sidecar = Path(graph).with_suffix(".json")
    upstream = json.loads(graph_sidecar.read_text()) if graph_sidecar.exists() else {}
    if upstream.get("status", "ok") != "ok":
        return _write(out, b"", {**info, "status": "failed", "reason": f"{Path(graph).stem} failed: {upstream['reason']}"})
    try:
        trt = import_library(library)
    except ImportError as error:
        return _write(out, b"", {**info, "status": "unavailable", "reason": str(error)})
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if STRONGLY_TYPED[library] else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        return _write(out, b"", {**info, "status": "failed", "reason": f"ONNX parser: {errors}"})
    config = builder.create_builder_config()
    info["precision_handling"] = configure_precision(trt, network, config, library, precision, options)
    if STRONGLY_TYPED[library] and graph_sidecar.exists():  # the typed graph says what it kept in fp32
        info["precision_handling"]["kept_fp32_ops"] = json.loads(graph_sidecar.read_text()).get("kept_fp32_ops", [])
    if options.get("builder_optimization_level") is not None:
        config.builder_optimization_level = int(options["builder_optimization_level"])
    if options.get("workspace_gib"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options["workspace_gib"] * 2**30))
    trt_profile = builder.create_optimization_profile()
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    for tensor in inputs:
        trt_profile.set_shape(tensor.name, *(shape_for(tensor.shape, profile[k]) for k in ("min", "opt", "max")))
    config.add_optimization_profile(trt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        return _write(out, b"", {**info, "status": "failed", "reason": "build_serialized_network returned None (see log)"})
    info.update(status="ok", reason=None, build_seconds=time.perf_counter() - start,
                io=network_io(trt, network, profile))
    return _write(out, bytes(plan), info)


def configure_precision(trt, network, config, library: str, precision: str, options: dict) -> dict:
    """Set the builder for ``precision``; return what was done, for the record."""
    done = {"tf32": bool(options.get("tf32", False)), "typed_graph": STRONGLY_TYPED[library]}
    if not done["tf32"]:
        config.clear_flag(trt.BuilderFlag.TF32)
    if STRONGLY_TYPED[library] or precision == "fp32":
        return done
    config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    kept = {}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        kind = str(layer.type).rsplit(".", 1)[-1]
        if kind in KEEP_FP32_LAYERS:
            layer.precision = trt.float32
            for output in range(layer.num_outputs):
                layer.set_output_type(output, trt.float32)
            kept[kind] = kept.get(kind, 0) + 1
    done["builder_flag"] = precision.upper()
    done["kept_fp32_layers"] = kept
    return done


def shape_for(declared, batch_seq: list[int]) -> tuple[int, ...]:
    """A profile shape for an input declared as e.g. (-1, -1): dynamic dims are batch then seq_len."""
    dims = list(declared)
    dynamic = iter(batch_seq)
    return tuple(next(dynamic) if d < 0 else d for d in dims)


DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT64": "int64", "INT32": "int32",
          "BOOL": "bool", "INT8": "int8", "UINT8": "uint8"}


def dtype_name(trt_dtype) -> str:
    """A TensorRT DataType as a numpy/torch dtype name ('float16', 'int64', ...)."""
    name = str(trt_dtype).rsplit(".", 1)[-1]
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"TensorRT data type {name} has no buffer mapping here") from None


def network_io(trt, network, profile: dict) -> list[dict]:
    """The engine's IO tensors in binding order (inputs first, as the network declares them), with dtype and
    declared shape: what the runtime checks the deserialized engine against."""
    tensors = [(network.get_input(i), "input") for i in range(network.num_inputs)]
    tensors += [(network.get_output(i), "output") for i in range(network.num_outputs)]
    return [{"name": t.name, "mode": mode, "dtype": dtype_name(t.dtype), "shape": list(t.shape)} for t, mode in tensors]


def _write(out: Path, plan: bytes, info: dict) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(plan)
    tmp.replace(out)
    info.update(plan_bytes=len(plan), plan_sha256=hashlib.sha256(plan).hexdigest())
    sidecar(out).write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def sidecar(plan: Path) -> Path:
    return Path(plan).with_suffix(".json")


def read(plan: Path) -> tuple[bytes, dict]:
    """The plan bytes and the sidecar, checked against each other: a truncated or swapped plan is an error."""
    info = json.loads(sidecar(plan).read_text())
    data = Path(plan).read_bytes()
    if hashlib.sha256(data).hexdigest() != info.get("plan_sha256"):
        raise ValueError(f"engine plan {plan} does not match its sidecar's sha256: rebuild it")
    return data, info


def concrete_shape(tensor: dict, batch: int, seq_len: int) -> list[int]:
    """An IO tensor's shape at (batch, seq_len): its dynamic dims are, in order, batch and seq_len."""
    return list(shape_for(tensor["shape"], [batch, seq_len]))


ITEM_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "bool": 1, "int8": 1, "uint8": 1}


def buffer_bytes(tensor: dict, batch: int, seq_len: int) -> int:
    """Bytes of the device buffer an IO tensor needs at (batch, seq_len)."""
    count = 1
    for dim in concrete_shape(tensor, batch, seq_len):
        count *= dim
    return count * ITEM_BYTES[tensor["dtype"]]


def in_profile(profile: dict, batch: int, seq_len: int) -> str | None:
    """A reason (batch, seq_len) lies outside the engine's profile, or None."""
    (b0, s0), (b1, s1) = profile["min"], profile["max"]
    if not (b0 <= batch <= b1 and s0 <= seq_len <= s1):
        return f"shape b{batch} s{seq_len} outside the engine profile min {profile['min']} max {profile['max']}"
    return None
