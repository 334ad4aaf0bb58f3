"""ONNX graphs of a model: export with dynamic batch/sequence axes, check, and fuse for ONNX Runtime.

Each graph is written with a JSON sidecar (same stem) holding its op counts, fused-op counts and the parity
check, so that cells can record what they ran without re-reading the graph.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import numpy as np

from infbench import artifacts

# Ops that only exist after ORT's transformer fusions: their count is the evidence a fusion happened.
FUSED_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "SkipLayerNormalization",
             "EmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "SkipSimplifiedLayerNormalization",
             "SimplifiedLayerNormalization", "RotaryEmbedding")
PARITY_SHAPES = ((1, 8), (2, 16))
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the exporter colours its messages; a reason is plain text


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
    """The error and, where it wraps another (the exporter's "step 2/3 failed"), its root cause: one line,
    colour codes stripped."""
    text = f"{type(error).__name__}: {one_line(ANSI.sub('', str(error)))}"
    root = error
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    if root is not error:
        text = f"{text.split('. ')[0]}; cause: {type(root).__name__}: {one_line(ANSI.sub('', str(root)))}"
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


ATTENTION_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention")

# What ORT's fusions do per architecture (manifest model_type). 'attention': does ORT have a fused attention
# for it (False: relative position bias inside the softmax, which no fused attention op takes — the graph is
# still fused otherwise and its cells say attention runs unfused). 'skip': onnxscript fusions left out
# because they yield a graph that fails at batch > 1 (the parity check's second shape): for Llama / Qwen2
# the GroupQueryAttention fusion derives seqlens_k with one element whatever the batch ("seqlens_k must
# have batch_size (2) elements, got 1") and the RotaryEmbedding fusion keeps the (1, seq_len) position_ids
# ("position_ids dimension 0 should be of size batch_size, got 1"); without them their attention is fused as
# MultiHeadAttention (the SDPA → MHA rewrite), rotary embeddings unfused.
ROPE_GQA = ("rotary_embedding", "cos_sin_cache", "partial_rotary_embedding", "gqa", "packed_qkv_for_gqa")
NO_FUSED_ATTENTION = "relative position bias in the attention scores: ORT has no fused attention for it"
FAMILIES = {
    "deberta": {"attention": False, "why": NO_FUSED_ATTENTION},
    "deberta-v2": {"attention": False, "why": NO_FUSED_ATTENTION},
    "mpnet": {"attention": False, "why": NO_FUSED_ATTENTION},
    "t5": {"attention": False, "why": NO_FUSED_ATTENTION},
    "llama": {"skip": ROPE_GQA},
    "qwen2": {"skip": ROPE_GQA},
    "mistral": {"skip": ROPE_GQA},
}


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


def fusion_summary(fused_ops: dict[str, int], attention_blocks: int, model_type: str | None, family: dict) -> dict:
    """Which fusions were found and which are missing, in one line the cells can carry (prepare.fusion).

    Where ORT has a fused attention for the family, one per attention block of the exported graph is
    required: an unfused graph would be a silently slow number."""
    attention = sum(fused_ops.get(op, 0) for op in ATTENTION_OPS)
    found = ", ".join(f"{op} x{n}" for op, n in sorted(fused_ops.items())) or "none"
    summary = {"found": fused_ops, "attention_blocks": attention_blocks, "fused_attention": attention,
               "skipped": list(family.get("skip", ())), "missing": []}
    if family.get("attention", True):
        require_attention_fusion(fused_ops, attention_blocks)
        summary["note"] = f"fused: {found}"
    else:
        summary["missing"] = ["attention"]
        summary["note"] = f"fused: {found}; attention unfused ({model_type}: {family['why']})"
    return summary


def fuse_for_ort(model, skip=()) -> tuple:
    """onnxscript 0.7's optimize_for_ort, step by step, so that a family can leave out a fusion that breaks
    its graph (optimize_for_ort takes no such option). Same order and passes as onnxscript's _core."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.ort_fusions import _core
    from onnxscript.rewriter.rules.common import _gemm_to_matmul_add

    rewrite(model, [_gemm_to_matmul_add.gemm_to_matmul_add_rule])
    model = _core._pre_optimize(model)
    counts: dict[str, int] = {}

    def fuse(name, func, **kwargs):
        counts[name] = 0 if name in skip else func(model, **kwargs)

    for name, func in (("erf_gelu", _core.fuse_erfgelu), ("rms_normalization", _core.fuse_rms_normalization),
                       ("skip_layer_normalization", _core.fuse_skip_layer_normalization),
                       ("skip_rms_normalization", _core.fuse_skip_rms_normalization),
                       ("rotary_embedding", _core.fuse_rotary_embedding), ("cos_sin_cache", _core.fuse_cos_sin_cache)):
        fuse(name, func)
    common_passes.CommonSubexpressionEliminationPass()(model)
    fuse("partial_rotary_embedding", _core.fuse_partial_rotary_embedding)
    fuse("sdpa", _core.fuse_sdpa, apply_shape_inference=True)
    for name, func in (("gqa", _core.fuse_gqa), ("packed_qkv_for_gqa", _core.fuse_qkv_gqa), ("mha1", _core.fuse_mha1),
                       ("mha2", _core.fuse_mha2), ("mha_scale", _core.fuse_mha_scale)):
        fuse(name, func)
    if counts["mha1"] or counts["mha2"]:
        fuse("mha_bias", _core.fuse_mha_bias)
        fuse("attention", _core.fuse_attention)
    for name, func in (("gelu", _core.fuse_gelu), ("bias_gelu", _core.fuse_bias_gelu),
                       ("sdpa_via_mha", _core.replace_sdpa_by_mha)):
        fuse(name, func)
    _core.optimize(model)
    rewrite(model, _core.ORT_PATTERN_REWRITE_RULES)
    ir.passes.Sequential(
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1),
        common_passes.RemoveInitializersFromInputsPass(),
        common_passes.ShapeInferencePass(),
    )(model)
    return model, counts


def gemm_to_matmul_add(model) -> int:
    """Every plain Gemm (no transposes, alpha = beta = 1) as MatMul + Add, before the fusions: onnxscript's
    MHA pattern absorbs the Reshape to 2-D in front of GPT-2's Conv1D Gemm, leaving it a rank-3 input that
    ORT refuses to load ("Gemm ... Input 0 expected to have rank 2 but has rank 3"). MatMul takes either
    rank, with the same result. Returns the number of Gemms replaced."""
    from onnx import helper

    graph, replaced = model.graph, 0
    for node in list(graph.node):
        if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx"):
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("transA", 0) or attributes.get("transB", 0) or attributes.get("alpha", 1.0) != 1.0 \
                or attributes.get("beta", 1.0) != 1.0:
            continue
        has_bias = len(node.input) > 2 and node.input[2]
        product = node.output[0] + "_matmul" if has_bias else node.output[0]
        new = [helper.make_node("MatMul", list(node.input[:2]), [product], name=f"{node.name}_matmul")]
        if has_bias:
            new.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_add"))
        index = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, replacement in enumerate(new):
            graph.node.insert(index + offset, replacement)
        replaced += 1
    return replaced


def fuse_embed_layer_norm(model) -> int:
    """Fuse BERT's embeddings (word + token-type + position Gathers, two Adds, LayerNormalization) into ORT's
    EmbedLayerNormalization, as ORT's own optimizer does for the legacy exporter's graph; neither it nor
    onnxscript's rewriter matches the dynamo exporter's form, where positions are a Slice of the
    ``position_ids`` buffer. Only that exact form is fused (positions 0..S-1, so the op's implicit ones are
    the same); anything else is left alone. Returns the number of fusions (0 or 1)."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    weights = {t.name: t for t in graph.initializer}
    inputs = {i.name for i in graph.input}

    def gather(name):
        node = producer.get(name)
        if node is None or node.op_type != "Gather" or node.input[0] not in weights:
            return None
        return node

    for norm in graph.node:
        if norm.op_type != "LayerNormalization" or len(norm.input) < 3:
            continue
        outer = producer.get(norm.input[0])
        if outer is None or outer.op_type != "Add":
            continue
        for inner_name, position_name in ((outer.input[0], outer.input[1]), (outer.input[1], outer.input[0])):
            inner, position = producer.get(inner_name), gather(position_name)
            if inner is None or inner.op_type != "Add" or position is None:
                continue
            first, second = gather(inner.input[0]), gather(inner.input[1])
            if first is None or second is None:
                continue
            by_input = {g.input[1]: g for g in (first, second)}
            if not {"input_ids", "token_type_ids"} <= set(by_input) or not {"input_ids", "token_type_ids"} <= inputs:
                continue
            positions = producer.get(position.input[1])
            if positions is None or positions.op_type != "Slice" or positions.input[0] not in weights:
                continue
            ids = numpy_helper.to_array(weights[positions.input[0]]).reshape(-1)
            start = weights.get(positions.input[1])
            if not np.array_equal(ids, np.arange(ids.size)) or start is None or numpy_helper.to_array(start).reshape(-1)[0] != 0:
                continue
            epsilon = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-12)
            cast_ids = helper.make_node("Cast", ["input_ids"], ["input_ids_int32"], to=6, name="embed_cast_input_ids")
            cast_types = helper.make_node("Cast", ["token_type_ids"], ["token_type_ids_int32"], to=6,
                                          name="embed_cast_token_type_ids")
            fused = helper.make_node(
                "EmbedLayerNormalization",
                ["input_ids_int32", "token_type_ids_int32", by_input["input_ids"].input[0], position.input[0],
                 by_input["token_type_ids"].input[0], norm.input[1], norm.input[2]],
                [norm.output[0], "embed_mask_index"], domain="com.microsoft", epsilon=epsilon,
                name="EmbedLayerNormalization_0")
            index = list(graph.node).index(norm)
            graph.node.remove(norm)
            for offset, node in enumerate((cast_ids, cast_types, fused)):
                graph.node.insert(index + offset, node)
            _prune(graph)
            if not any(o.domain == "com.microsoft" for o in model.opset_import):
                model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
            return 1
    return 0


def _prune(graph) -> None:
    """Drop nodes whose outputs nothing uses (the replaced embedding nodes)."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output if o)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def require_attention_fusion(fused_ops: dict[str, int], expected: int | Path) -> None:
    """One fused attention op per attention block, or an error: an unfused graph would be a silently slow
    number. ``expected``: the count, or a model directory whose manifest has it (attention_blocks)."""
    if not isinstance(expected, int):
        expected = artifacts.read_manifest(Path(expected)).get("attention_blocks") or 0
    attention = sum(fused_ops.get(op, 0) for op in ATTENTION_OPS)
    if expected and attention != expected:
        raise ValueError(f"expected {expected} fused attention ops (one per attention block), found {attention}: "
                         f"{fused_ops}")


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


# Numerically fragile in fp16 (overflow of the variance / the exponent sums): kept fp32 in typed graphs.
KEEP_FP32_OPS = ("LayerNormalization", "Softmax")


def to_typed(graph_path: Path, out: Path, precision: str) -> dict:
    """The graph with fp16 (or bf16) weights and activations, converted after fusion (the fusion patterns
    match fp32 graphs only).

    Inputs (int64 ids) and the output keep their types, so cells feed and compare the same arrays at every
    precision. LayerNormalization and Softmax stay fp32 (with casts around them) besides ORT's default list:
    this is what a strongly typed TensorRT-RTX build runs, and ORT's fused ops are unaffected. bf16 is the
    fp16 conversion retyped (ONNX Runtime's converter knows only fp16); its weights round from fp32.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source = onnx.load(str(graph_path))
    fp32_weights = {t.name: onnx.numpy_helper.to_array(t) for t in source.graph.initializer
                    if t.data_type == onnx.TensorProto.FLOAT}
    model = convert_float_to_float16(source, keep_io_types=True,
                                     op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(KEEP_FP32_OPS))
    model = _topologically_sorted(_without_duplicate_nodes(model))
    if precision == "bf16":
        _retype_fp16_to_bf16(model, fp32_weights)
    onnx.save(model, str(out))
    check_graph(out)
    return write_sidecar(out, {"converter": "onnxruntime.transformers.float16 (keep_io_types)",
                               "precision": precision, "kept_fp32_ops": list(KEEP_FP32_OPS),
                               "source": Path(graph_path).name})


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
