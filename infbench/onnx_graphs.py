"""ONNX graphs of a model: export with dynamic batch/sequence axes, check, and fuse for ONNX Runtime
(the fusions themselves: infbench.fusions; fp16/bf16 graphs: infbench.onnx_precision).

Each graph is written with a JSON sidecar (same stem) holding its op counts, fused-op counts and the parity
check, so that cells can record what they ran without re-reading the graph.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np

from infbench import artifacts
from infbench.fusions import FAMILIES, fuse_embed_layer_norm, fuse_for_ort, fusion_summary, gemm_to_matmul_add

# Ops that only exist after ORT's transformer fusions: their count is the evidence a fusion happened.
FUSED_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "SkipLayerNormalization",
             "EmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "SkipSimplifiedLayerNormalization",
             "SimplifiedLayerNormalization", "RotaryEmbedding")
PARITY_SHAPES = ((1, 8), (2, 16))


def op_counts(graph_path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    return dict(collections.Counter(node.op_type for node in model.graph.node))


def write_sidecar(graph_path: Path, info: dict) -> dict:
    counts = op_counts(graph_path)
    info = {"status": "ok", "reason": None, **info, "op_counts": counts, "sha256": artifacts.file_sha256(graph_path),
            "fused_ops": {op: counts[op] for op in FUSED_OPS if op in counts}}
    Path(graph_path).with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def write_failed(graph_path: Path, reason: str) -> dict:
    """A graph step that failed: an empty graph file (the rule's output) and a sidecar with the reason, so
    that the DAG goes on and every cell of the graph records the failure instead of the run stopping."""
    Path(graph_path).write_bytes(b"")
    info = {"status": "failed", "reason": reason, "op_counts": {}, "fused_ops": {}, "sha256": None}
    Path(graph_path).with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def read_sidecar(graph_path: Path) -> dict:
    """A graph's sidecar; raises if the graph file is not the one the sidecar describes (corrupt, swapped)."""
    info = json.loads(Path(graph_path).with_suffix(".json").read_text())
    if info.get("status", "ok") == "ok" and info.get("sha256") and artifacts.file_sha256(graph_path) != info["sha256"]:
        raise ValueError(f"ONNX graph {graph_path} does not match its sidecar's sha256: rebuild it")
    return info


def guarded(step: str, out: Path, build, upstream: Path | None = None) -> dict:
    """Run one graph step; a failure (or a failed upstream graph) becomes a failed sidecar, not a dead DAG."""
    import logging
    import traceback

    from infbench.records import one_line

    if upstream is not None:
        before = json.loads(Path(upstream).with_suffix(".json").read_text())
        if before.get("status", "ok") != "ok":
            return write_failed(out, f"{Path(upstream).stem} failed: {before['reason']}")
    try:
        return build()
    except Exception as error:  # noqa: BLE001 - the failure is recorded for every dependent cell
        logging.getLogger("infbench.onnx").error("%s failed:\n%s", step, traceback.format_exc())
        return write_failed(out, f"{step}: {describe(error, one_line)}")


def describe(error: BaseException, one_line) -> str:
    """The error and, where it wraps another (the exporter's "step 2/3 failed"), its root cause: one line
    (records.one_line strips the exporter's colour codes)."""
    text = f"{type(error).__name__}: {one_line(str(error))}"
    root = error
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    if root is not error:
        text = f"{text.split('. ')[0]}; cause: {type(root).__name__}: {one_line(str(root))}"
    return text


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

    def run_exporter():
        return torch.onnx.export(
            module, example, input_names=manifest["input_names"], output_names=[manifest["output_name"]],
            # forward(*tensors): the varargs are one input whose spec is a tuple, one dict per tensor
            dynamic_shapes=(tuple({0: batch, 1: seq} for _ in example),), dynamo=True, opset_version=opset,
        )

    attention = module.target.config._attn_implementation
    try:
        program = run_exporter()
    except Exception:  # noqa: BLE001 - retried once with the eager attention (a second failure is the reason)
        if attention == "eager":
            raise
        # T5's SDPA path views a non-contiguous tensor, which torch.export's decomposition refuses ("Cannot
        # view a tensor with shape ..."); the eager attention is the same function, written exportably.
        module.target.set_attn_implementation("eager")
        program, attention = run_exporter(), "eager"
    program.save(str(out))
    onnx.checker.check_model(str(out), full_check=True)

    def torch_fp32(inputs):
        with torch.inference_mode():
            return module(*(torch.from_numpy(a) for a in inputs.values())).numpy()

    parity = check_parity(torch_fp32, ort_cpu(out), manifest, parity_rtol, "exported graph vs torch")
    return write_sidecar(out, {"exporter": "torch.onnx dynamo", "opset": opset, "parity": parity,
                               "attn_implementation": attention})


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
    dynamo-exported graph), per family (FAMILIES), then a parity check of the fused graph against the
    exported one.

    The fused graph holds ORT-only ops, some in the ONNX domain (SimplifiedLayerNormalization for RMSNorm
    models), which onnx's checker rejects ("No Op registered for SimplifiedLayerNormalization with
    domain_version of 18") although ORT runs them: check_graph lets those through, and ORT loading the graph
    and the parity check validate it."""
    import onnx
    import onnx_ir as ir

    manifest = artifacts.read_manifest(model_dir)
    family = FAMILIES.get(manifest.get("model_type"), {})
    source = onnx.load(str(exported))
    attention_blocks = sum(node.op_type == "Softmax" for node in source.graph.node)  # one per attention
    gemms = gemm_to_matmul_add(source)
    model, fusion_counts = fuse_for_ort(ir.serde.deserialize_model(source), skip=family.get("skip", ()))
    out = Path(out)
    ir.save(model, str(out))
    fused = onnx.load(str(out))
    fusion_counts["embed_layer_normalization"] = fuse_embed_layer_norm(fused)
    onnx.save(fused, str(out))
    check_graph(out)
    parity = check_parity(ort_cpu(exported), ort_cpu(out), manifest, parity_rtol, "optimized vs exported graph")
    info = write_sidecar(out, {"optimizer": "onnxscript ORT fusions (per family) + EmbedLayerNormalization fusion",
                               "parity": parity, "fusions": {k: int(v) for k, v in fusion_counts.items() if v},
                               "gemm_to_matmul_add": gemms})
    info["fusion"] = fusion_summary(info["fused_ops"], attention_blocks, manifest.get("model_type"), family)
    Path(out).with_suffix(".json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


# ORT ops that ORT registers in the ONNX domain, unknown to onnx's checker: a graph holding them is checked by
# ORT loading it (and the parity check), not by onnx.checker.
ORT_OPS_IN_ONNX_DOMAIN = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")


def check_graph(graph_path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(graph_path))
    except onnx.checker.ValidationError as error:
        if not any(f"No Op registered for {op} " in str(error) for op in ORT_OPS_IN_ONNX_DOMAIN):
            raise
