"""ONNX graphs of a model: export with dynamic batch/sequence axes, check, and fuse for ONNX Runtime.

Each graph is written with a JSON sidecar (same stem) holding its op counts, fused-op counts and the parity
check, so that cells can record what they ran without re-reading the graph.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np

from infbench import artifacts

# Ops that only exist after ORT's transformer fusions: their count is the evidence a fusion happened.
FUSED_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "SkipLayerNormalization",
             "EmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "SkipSimplifiedLayerNormalization")
PARITY_SHAPES = ((1, 8), (2, 16))


def op_counts(graph_path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    return dict(collections.Counter(node.op_type for node in model.graph.node))


def write_sidecar(graph_path: Path, info: dict) -> dict:
    counts = op_counts(graph_path)
    info = {**info, "op_counts": counts, "fused_ops": {op: counts[op] for op in FUSED_OPS if op in counts}}
    Path(graph_path).with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def export(model_dir: Path, out: Path, opset: int, parity_rtol: float) -> dict:
    """Export with the dynamo exporter, dynamic axes 0 (batch) and 1 (seq_len); check; compare with torch."""
    import onnx
    import torch

    from infbench import models

    manifest = artifacts.read_manifest(model_dir)
    module = models.load_module(model_dir, "fp32", "cpu")
    example = tuple(torch.from_numpy(a) for a in artifacts.make_inputs(manifest, 2, 16, seed=0).values())
    batch = torch.export.Dim("batch", min=1, max=4096)
    max_len = manifest["max_position_embeddings"] or 8192
    seq = torch.export.Dim("seq_len", min=2, max=max_len)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        module, example, input_names=manifest["input_names"], output_names=[manifest["output_name"]],
        # forward(*tensors): the varargs are one input whose spec is a tuple, one dict per tensor
        dynamic_shapes=(tuple({0: batch, 1: seq} for _ in example),), dynamo=True, opset_version=opset,
    )
    program.save(str(out))
    onnx.checker.check_model(str(out), full_check=True)

    def torch_fp32(inputs):
        with torch.inference_mode():
            return module(*(torch.from_numpy(a) for a in inputs.values())).numpy()

    parity = check_parity(torch_fp32, ort_cpu(out), manifest, parity_rtol, "exported graph vs torch")
    return write_sidecar(out, {"exporter": "torch.onnx dynamo", "opset": opset, "parity": parity})


def check_parity(expected_fn, got_fn, manifest: dict, rtol: float, what: str) -> list[dict]:
    """Compare two implementations on two shapes, so a wrong graph fails here rather than in every cell."""
    results = []
    for batch, seq_len in PARITY_SHAPES:
        inputs = artifacts.make_inputs(manifest, batch, seq_len, seed=1)
        expected, got = expected_fn(inputs), got_fn(inputs)
        rel = float(np.linalg.norm(got - expected) / np.linalg.norm(expected))
        results.append({"batch": batch, "seq_len": seq_len, "rel_l2": rel, "max_abs": float(np.abs(got - expected).max())})
        if not rel <= rtol:
            raise ValueError(f"{what}: parity check failed at batch={batch} seq_len={seq_len}: rel_l2 {rel:.3g} > {rtol:g}")
    return results


def ort_cpu(graph_path: Path):
    """A function inputs → first output of the graph on ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph_path), providers=["CPUExecutionProvider"])
    return lambda inputs: session.run(None, inputs)[0]


def optimize(exported: Path, out: Path, model_dir: Path, parity_rtol: float) -> dict:
    """Transformer fusions with onnxscript's ORT rewriter (ORT's own optimizer fuses no attention on a
    dynamo-exported graph), then a parity check of the fused graph against the exported one."""
    import onnx
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model, fusion_counts = optimize_for_ort(ir.load(str(exported)))
    out = Path(out)
    ir.save(model, str(out))
    onnx.checker.check_model(str(out))
    manifest = artifacts.read_manifest(model_dir)
    parity = check_parity(ort_cpu(exported), ort_cpu(out), manifest, parity_rtol, "optimized vs exported graph")
    info = write_sidecar(out, {"optimizer": "onnxscript optimize_for_ort", "parity": parity,
                               "fusions": {k: int(v) for k, v in fusion_counts.items() if v}})
    require_attention_fusion(info["fused_ops"], model_dir)
    return info


def require_attention_fusion(fused_ops: dict[str, int], model_dir: Path) -> None:
    """One fused attention op per layer, or an error: an unfused graph would be a silently slow number."""
    layers = json.loads((Path(model_dir) / "config.json").read_text()).get("num_hidden_layers")
    attention = sum(fused_ops.get(op, 0) for op in ("Attention", "MultiHeadAttention", "GroupQueryAttention"))
    if layers and attention != layers:
        raise ValueError(f"expected {layers} fused attention ops (one per layer), found {attention}: {fused_ops}")


def to_fp16(graph_path: Path, out: Path) -> dict:
    """fp16 weights and activations, converted after fusion (the fusion patterns match fp32 graphs only).

    Inputs (int64 ids) and the output stay in their original types, so cells feed and compare the same
    arrays at every precision; ORT's converter keeps its default list of numerically fragile ops in fp32.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(graph_path)), keep_io_types=True)
    onnx.save(model, str(out))
    onnx.checker.check_model(str(out))
    return write_sidecar(out, {"converter": "onnxruntime.transformers.float16 (keep_io_types)",
                               "source": Path(graph_path).name})
