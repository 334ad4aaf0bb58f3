"""ONNX Runtime's transformer fusions on an exported graph, per architecture family, and their evidence.

Why a module of its own: which fusions ORT has differs by architecture (no fused attention with relative
position bias; rotary / grouped-query fusions that break at batch > 1 for Llama-like models), and a fused
graph is only worth timing if the fusions it claims are there. ``infbench.onnx_graphs.optimize`` runs these.
"""

from __future__ import annotations

from pathlib import Path

from infbench import artifacts

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


def _cos_sin_cache(max_positions: int):
    """onnxscript's cos/sin cache fusion with its tables sized up front: without a size it computes them every
    call from ReduceMax(position_ids) and a Range whose limit ONNX Runtime's CUDA kernel reads on the host -- a
    copy from the device in every step, which also rules out CUDA graphs (the exported decoder's positions are
    a graph input)."""
    from onnxscript.rewriter import _fusion_utils, pattern
    from onnxscript.rewriter.ort_fusions.cos_sin_cache import CosSinCacheFusion

    class Sized(CosSinCacheFusion):
        def __init__(self, name, **kwargs):
            super().__init__(name, **kwargs)
            self.max_pos_id = max_positions - 1

    rules = [Sized.rule(f"CosSinCache_sized_{i}", cast=cast, const_freqs=const)
             for i, (cast, const) in enumerate([(True, False), (True, True), (False, True), (False, False)])]
    return _fusion_utils.apply_fusion_rules(pattern.RewriteRuleSet(rules))


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


def fuse_for_ort(model, skip=(), max_positions: int | None = None) -> tuple:
    """onnxscript 0.7's optimize_for_ort, step by step, so that a family can leave out a fusion that breaks
    its graph (optimize_for_ort takes no such option). Same order and passes as onnxscript's _core.
    ``max_positions``: the rotary cos/sin tables as constants of that many positions (``_cos_sin_cache``)."""
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
                       ("rotary_embedding", _core.fuse_rotary_embedding),
                       ("cos_sin_cache", _cos_sin_cache(max_positions) if max_positions else _core.fuse_cos_sin_cache)):
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
