"""Typed (fp16 / bf16) versions of a fused fp32 ONNX graph, for ONNX Runtime and TensorRT-RTX."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from infbench.onnx_graphs import check_graph, write_sidecar

# Numerically fragile in fp16 (overflow of the variance / the exponent sums): kept fp32 in typed graphs.
KEEP_FP32_OPS = ("LayerNormalization", "Softmax")


def to_typed(graph_path: Path, out: Path, precision: str, keep_io_types: bool | list[str] = True,
             keep_fp32_ops: tuple[str, ...] = (), external_data: bool = False) -> dict:
    """The graph with fp16 (or bf16) weights and activations, converted after fusion (the fusion patterns
    match fp32 graphs only).

    Inputs (int64 ids) and the output keep their types, so cells feed and compare the same arrays at every
    precision. LayerNormalization and Softmax stay fp32 (with casts around them) besides ORT's default list:
    this is what a strongly typed TensorRT-RTX build runs, and ORT's fused ops are unaffected. bf16 is the
    fp16 conversion retyped (ONNX Runtime's converter knows only fp16); its weights round from fp32.
    ``keep_io_types``: the inputs and outputs that stay fp32 (a list of names), or all of them (True) -- a
    generation decoder keeps its logits fp32 and takes and returns its KV cache typed. ``keep_fp32_ops``: more
    ops kept fp32 (a bf16 graph: ops whose ONNX schema takes no bfloat16, e.g. Sin and Cos at opset 18).
    ``external_data``: the weights in ``<out>.data`` beside the graph (a graph above protobuf's 2 GB).
    """
    from unittest import mock

    import onnx
    from onnxruntime.transformers import float16

    # ``graph_path`` may be the graph itself (a ModelProto already in memory: a large export is converted without
    # writing its fused fp32 copy to the disk)
    in_memory = isinstance(graph_path, onnx.ModelProto)
    source = graph_path if in_memory else onnx.load(str(graph_path))
    fp32_weights = {t.name: onnx.numpy_helper.to_array(t) for t in source.graph.initializer
                    if t.data_type == onnx.TensorProto.FLOAT} if precision == "bf16" else {}
    blocked = list(float16.DEFAULT_OP_BLOCK_LIST) + list(KEEP_FP32_OPS) + list(keep_fp32_ops)
    with mock.patch.object(float16, "convert_np_to_float16", clamped_float16):  # the same values, in fewer passes
        model = float16.convert_float_to_float16(_with_shapes(source), keep_io_types=keep_io_types,
                                                 op_block_list=blocked, disable_shape_infer=True)
    model = _topologically_sorted(_without_duplicate_nodes(model))
    if precision == "bf16":
        _retype_fp16_to_bf16(model, fp32_weights)
    if external_data:
        Path(f"{out}.data").unlink(missing_ok=True)  # onnx.save appends to an existing data file
        onnx.save(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{Path(out).name}.data")
    else:
        onnx.save(model, str(out))
    check_graph(out)
    return write_sidecar(out, {"converter": "onnxruntime.transformers.float16 (keep_io_types)",
                               "precision": precision, "kept_fp32_ops": list(KEEP_FP32_OPS),
                               "source": "in memory" if in_memory else Path(graph_path).name})


def clamped_float16(values, min_positive_val: float = 5.96e-08, max_finite_val: float = 65504.0) -> np.ndarray:
    """ONNX Runtime's ``float16.convert_np_to_float16``, value for value, in a few whole-array passes: magnitudes
    below ``min_positive_val`` round up to it and finite ones above ``max_finite_val`` down to it, sign kept; 0,
    NaN and infinities unchanged. (Its own finds each range's extremes with index arrays, to log them: minutes for
    a 7B model's weights.)"""
    values = np.asarray(values)
    magnitude = np.abs(values)
    clamp = np.flatnonzero((magnitude > 0) & (magnitude < min_positive_val)
                           | (magnitude > max_finite_val) & np.isfinite(values))
    with np.errstate(over="ignore"):  # the overflowing values are clamped next
        typed = values.astype(np.float16)
    if clamp.size:
        bound = np.where(magnitude.flat[clamp] < min_positive_val, min_positive_val, max_finite_val)
        typed.flat[clamp] = np.copysign(bound, values.flat[clamp])
    return typed


def _with_shapes(model):
    """``model`` with its value types inferred, as the converter needs them. Inferred on a copy of the graph whose
    large initializers are headers only (shape and type, no bytes): a model above protobuf's 2 GB cannot be
    serialized for ONNX's shape inference, which the converter would otherwise run on it, and copying a 7B
    model's bytes costs minutes."""
    import onnx

    graph = model.graph
    headers = [t if math.prod(t.dims) < 1024 else onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims)
               for t in graph.initializer]  # small ones (shapes, axes) keep their values for the inference
    light = onnx.helper.make_model(onnx.helper.make_graph(graph.node, graph.name, graph.input, graph.output, headers,
                                                          value_info=graph.value_info),  # the fusions' (contrib ops)
                                   ir_version=model.ir_version, opset_imports=model.opset_import,
                                   functions=model.functions)
    inferred = onnx.shape_inference.infer_shapes(light)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    return model


def _without_duplicate_nodes(model):
    """ORT's converter emits the same input Cast twice when a blocked op's input is shared: keep one."""
    seen: dict[tuple, bytes] = {}
    kept = []
    for node in model.graph.node:
        key, body = tuple(node.output), node.SerializeToString()
        if key in seen:
            if seen[key] != body:
                raise ValueError(f"two different nodes produce {key} after fp16 conversion")
            continue
        seen[key] = body
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def _topologically_sorted(model):
    """The converter appends its Casts at the end; ONNX requires producers before consumers."""
    graph = model.graph
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in known for name in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a missing input at {pending[0].name}")
        for node in ready:
            known.update(node.output)
        ordered += ready
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)
    return model


def _retype_fp16_to_bf16(model, fp32_weights: dict[str, np.ndarray]) -> None:
    import onnx

    f16, bf16 = onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16

    def retensor(tensor) -> None:
        if tensor.data_type != f16:
            return
        values = fp32_weights.get(tensor.name)
        if values is None:
            values = onnx.numpy_helper.to_array(tensor).astype(np.float32)
        tensor.CopyFrom(onnx.helper.make_tensor(tensor.name, bf16, list(tensor.dims), bf16_bits(values).tobytes(),
                                                raw=True))

    graph = model.graph
    for tensor in graph.initializer:
        retensor(tensor)
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == f16:
            value.type.tensor_type.elem_type = bf16
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == f16:
                attribute.i = bf16
            if attribute.type == onnx.AttributeProto.TENSOR:
                retensor(attribute.t)


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """fp32 → bfloat16 bit patterns, rounded to nearest even (numpy has no bfloat16)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)
