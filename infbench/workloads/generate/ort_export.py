"""infbench's own ONNX decoder for generation: the model exported with its KV cache as explicit inputs and outputs.

The graph (``ort_decoder``) takes ``input_ids`` [batch, seq], ``cache_position`` [seq] and, per layer, the past
keys and values [batch, kv_heads, cache_len, head_dim], and returns the last position's ``logits`` [batch,
vocab] (fp32), the greedy ``next_token`` [batch, 1] (ArgMax in the graph: the loop never reads the logits),
``next_position`` [1] and the present keys and values, of the past's shape with this call's positions written
in. Every output has the shape of an input it may be bound to, so the loop binds them to the same buffers:
the cache is written in place, the token and the position advance in place, and a decode step is one
``run_with_iobinding`` with nothing allocated and nothing copied (infbench.workloads.generate.ort).

Attention (``ATTENTIONS``, a build option): ``gqa`` (the default) emits ONNX Runtime's GroupQueryAttention, which
writes the step into the cache and reads its filled positions at the cache's own head count; ``sdpa`` exports
transformers' SDPA as it is, which the fusions turn into a ScatterND cache write, an Expand of the cache to every
query head and MultiHeadAttention over the whole allocated cache (docs/generation.md says what that costs).

After the fusions, each layer's Q, K and V projections become one MatMul and its rotary embedding moves inside
GroupQueryAttention (``pack_attention``), as onnxruntime-genai's builder writes them.

What the export needed is ``NEEDED`` and ``CACHE_WRITE`` (written into the manifest, ``needed``); a graph whose
host-read inputs depend on device values (``device_reads``) or whose layers escaped GroupQueryAttention fails
its build.
"""

from __future__ import annotations

import collections
import contextvars
import time
from pathlib import Path

NEEDED = [
    "a cache layer of infbench's (transformers CacheLayerMixin) whose tensors are the graph's past inputs: "
    "StaticCache mutates buffers it allocates itself and sizes its mask from a Python int, which an export cannot "
    "take as inputs",
    "position ids from cache_position, expanded to the batch (the RotaryEmbedding fusion breaks at batch > 1 "
    "with (1, seq) ids)",
    "greedy ArgMax and next_position inside the graph, next_position depending on the chosen token so that it can "
    "be bound to the cache_position buffer itself (written after every reader)",
    "the rotary cos/sin tables as constants of the model's positions (the fusion otherwise sizes them per call "
    "with a Range whose limit the CUDA kernel reads on the host: a copy from the device every step, no CUDA graphs)",
    "Gemm rewritten as MatMul + Add before the fusions (GPT-2's Conv1D; ORT refuses the fused rank-3 Gemm)",
    "weights in an external data file beside each graph (a 7B model is far above protobuf's 2 GB)",
]
ATTENTIONS = {
    "gqa": "infbench's attention function emits com.microsoft::GroupQueryAttention, which writes the step's keys "
           "and values into the shared past/present buffer and attends over the filled positions at the cache's "
           "own (key-value) head count",
    "sdpa": "transformers' SDPA attention, as exported: the cache written by ScatterND, repeat_kv an Expand to "
            "every query head, the fusions' MultiHeadAttention over the whole allocated cache behind a mask",
}
# how each attention's graph writes the cache (the last item of the manifest's ``needed``)
CACHE_WRITE = {
    "gqa": "GroupQueryAttention emitted by the export (a torch custom op, infbench::group_query_attention, "
           "translated through torch.onnx's custom_translation_table; transformers' AttentionInterface routes "
           "attention to it and the cache layer hands it the step's keys and values unwritten; its "
           "total_sequence_length, read on the host, computed from shapes alone): the fusions do not turn a cache "
           "written by ScatterND and repeated by Expand into GroupQueryAttention",
    "sdpa": "the cache layer writes each call's keys/values into the past tensors out of place at cache_position, "
            "every axis indexed (index_put: one ScatterND from past to present, run in place when both are bound "
            "to one buffer; index_copy on the position axis exports a Transpose of the whole past and one back), "
            "and reports the past's symbolic length as the mask size",
}
# the cache layers of the forward being run or traced, which the attention function (gqa) writes
_BOUND = contextvars.ContextVar("infbench_bound_layers")
EXPORT_POSITIONS = 8192  # the positions a graph serves where the model sets no limit (GPT-2 and Llama do)


def _layer_class():
    """The cache layer, defined on first use (transformers is imported lazily: the workflow imports this
    package at parse time)."""
    import torch
    from transformers.cache_utils import CacheLayerMixin

    class BoundLayer(CacheLayerMixin):
        """One layer's cache as graph inputs: the past keys and values, written at ``position``, returned.
        ``deferred`` (gqa): ``update`` hands the step's keys and values back unwritten; the attention function
        writes them with GroupQueryAttention and sets ``keys``/``values`` to its present outputs."""

        is_compileable = True
        is_sliding = False

        def __init__(self, keys, values, position, deferred=False):
            super().__init__()
            self.keys, self.values, self.position, self.deferred = keys, values, position, deferred
            self.is_initialized = True
            self.written = not deferred  # deferred: until GroupQueryAttention has written the step

        def lazy_initialization(self, key_states, value_states) -> None:
            """Never needed: the tensors are the graph's inputs."""

        def update(self, key_states, value_states, *args, **kwargs):
            if self.deferred:
                return key_states, value_states
            # every axis indexed (batch, head, position): one ScatterND straight from past to present. index_copy
            # on the position axis exports as a Transpose of the whole past, a ScatterND and a Transpose back
            batch, heads = self.keys.shape[:2]
            device = self.keys.device
            at = (torch.arange(batch, device=device).view(-1, 1, 1), torch.arange(heads, device=device).view(1, -1, 1),
                  self.position.view(1, 1, -1))
            self.keys = self.keys.index_put(at, key_states)
            self.values = self.values.index_put(at, value_states)
            return self.keys, self.values

        def get_mask_sizes(self, query_length):
            return self.keys.shape[2], 0

        def get_seq_length(self):
            return self.position[0]

        def get_max_length(self):
            return self.keys.shape[2]

    return BoundLayer


_GQA: dict = {}


def _gqa() -> dict:
    """The custom op, its ONNX translation and the attention function that calls it, registered once:
    ``infbench::group_query_attention(query, key, value, past_key, past_value, seqlens_k, total_sequence_length,
    num_heads, kv_num_heads, scale) -> (output, present_key, present_value)`` with ONNX Runtime's contrib op's
    semantics: query/key/value [batch, seq, heads * head_dim]; seqlens_k [batch] the filled length - 1 after this
    call, the step's keys and values written at its last ``seq`` positions of the past (present has the past's
    shape); causal attention over the filled positions, each key-value head serving num_heads / kv_num_heads
    query heads; total_sequence_length tells a first prompt (= seq) from a step (seq 1, any bound)."""
    if _GQA:
        return _GQA
    import onnxscript
    import torch
    from onnx.defs import OpSchema
    from transformers import AttentionInterface

    # the schema spelled out: this module's annotations are strings (from __future__), which torch cannot read
    @torch.library.custom_op(
        "infbench::group_query_attention", mutates_args=(),
        schema="(Tensor query, Tensor key, Tensor value, Tensor past_key, Tensor past_value, Tensor seqlens_k, "
               "Tensor total_sequence_length, int num_heads, int kv_num_heads, float scale, int local_window_size) "
               "-> (Tensor, Tensor, Tensor)")
    def group_query_attention(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, num_heads,
                              kv_num_heads, scale, local_window_size):
        batch, seq, _ = query.shape
        dim = past_key.shape[-1]
        # ONNX Runtime's rule: seq == total_sequence_length is a first prompt (written from position 0), seq 1 a
        # step after seqlens_k[b] filled positions; anything else (a chunked prefill) it refuses above batch 1
        if seq == int(total_sequence_length):
            start = 0
        elif seq == 1:
            start = int(seqlens_k[0])  # every sequence of the batch at one length
        else:
            raise ValueError(f"group_query_attention: {seq} new positions after a first prompt (chunked prefill) "
                             "is not supported")
        total = start + seq
        present_key, present_value = past_key.clone(), past_value.clone()
        present_key[:, :, start:total] = key.view(batch, seq, kv_num_heads, dim).transpose(1, 2)
        present_value[:, :, start:total] = value.view(batch, seq, kv_num_heads, dim).transpose(1, 2)
        groups = num_heads // kv_num_heads
        keys = present_key[:, :, :total].repeat_interleave(groups, 1)
        values = present_value[:, :, :total].repeat_interleave(groups, 1)
        keys_at = torch.arange(total, device=query.device).view(1, -1)
        queries_at = torch.arange(start, total, device=query.device).view(-1, 1)
        causal = keys_at <= queries_at
        if local_window_size >= 0:  # transformers' sliding window: the last local_window_size positions
            causal &= keys_at > queries_at - local_window_size
        out = torch.nn.functional.scaled_dot_product_attention(
            query.view(batch, seq, num_heads, dim).transpose(1, 2), keys, values, attn_mask=causal, scale=scale)
        return out.transpose(1, 2).reshape(batch, seq, num_heads * dim), present_key, present_value

    @group_query_attention.register_fake
    def _(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, num_heads, kv_num_heads, scale,
          local_window_size):
        return torch.empty_like(query), torch.empty_like(past_key), torch.empty_like(past_value)

    formal = OpSchema.FormalParameter
    schema = OpSchema(
        "GroupQueryAttention", "com.microsoft", 1,
        inputs=[formal(name, "T") for name in ("query", "key", "value", "past_key", "past_value")]
        + [formal("seqlens_k", "M"), formal("total_sequence_length", "M")],
        outputs=[formal(name, "T") for name in ("output", "present_key", "present_value")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], ""),
                          ("M", ["tensor(int32)"], "")],
        attributes=[OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, ""),
                    OpSchema.Attribute("kv_num_heads", OpSchema.AttrType.INT, ""),
                    OpSchema.Attribute("scale", OpSchema.AttrType.FLOAT, ""),
                    OpSchema.Attribute("local_window_size", OpSchema.AttrType.INT, "")])
    contrib = onnxscript.values.Op(onnxscript.values.Opset("com.microsoft", 1), "GroupQueryAttention", schema)

    def to_onnx(query, key, value, past_key, past_value, seqlens_k, total_sequence_length, num_heads: int,
                kv_num_heads: int, scale: float, local_window_size: int):
        return contrib(query, key, value, past_key, past_value, seqlens_k, total_sequence_length,
                       num_heads=num_heads, kv_num_heads=kv_num_heads, scale=scale,
                       local_window_size=local_window_size)

    def attention(module, query, key, value, attention_mask, scaling=None, sliding_window=None, **kwargs):
        """transformers' attention interface: query [batch, heads, seq, dim] and the step's key/value [batch,
        kv_heads, seq, dim] (the deferred cache layer's); returns [batch, seq, heads, dim] and no weights.
        A sliding window is GroupQueryAttention's local_window_size; what it has no attribute for raises."""
        unsupported = sorted(k for k in ("softcap", "s_aux") if kwargs.get(k) is not None)
        if unsupported:
            raise ValueError(f"the GroupQueryAttention export has no {', '.join(unsupported)}: use attention: sdpa")
        bound = _BOUND.get()[module.layer_idx]
        batch, heads, seq, dim = query.shape
        flat = lambda t: t.transpose(1, 2).reshape(batch, seq, -1)  # noqa: E731
        # seqlens_k (on the device): the filled length - 1, from the position. total_sequence_length (a host
        # input of the CUDA kernel) from shapes alone, so that reading it copies nothing from the device: the
        # prompt's length for a multi-token call (GroupQueryAttention's first prompt), the buffer's for a step
        # (its bound on seqlens_k). A multi-token call after the first (chunked prefill) is not supported.
        seqlens = bound.position[-1:].to(torch.int32).expand(batch)
        length = bound.keys.shape[2]
        total = torch.full((), seq + (length - seq) * torch.sym_max(0, 2 - seq), dtype=torch.int32)
        out, bound.keys, bound.values = torch.ops.infbench.group_query_attention(
            flat(query), flat(key), flat(value), bound.keys, bound.values, seqlens, total,
            heads, key.shape[1], float(scaling if scaling is not None else dim ** -0.5),
            -1 if sliding_window is None else int(sliding_window))
        bound.written = True
        return out.view(batch, seq, heads, dim), None

    AttentionInterface.register("infbench_gqa", attention)
    _GQA.update(translation={torch.ops.infbench.group_query_attention.default: to_onnx},
                implementation="infbench_gqa")
    return _GQA


def wrapper(model, attention: str = "gqa"):
    """The module the export traces (module docstring): flat tensors in, flat tensors out. ``attention``
    (ATTENTIONS): ``gqa`` routes the model's attention to GroupQueryAttention (``_gqa``) from here on;
    ``restore()`` gives the model back its own implementation."""
    import torch
    from transformers.cache_utils import Cache

    layer = _layer_class()
    deferred = attention == "gqa"

    class Decoder(torch.nn.Module):
        def __init__(self, target):
            super().__init__()
            self.target = target
            self.own = target.config._attn_implementation
            if deferred:
                target.set_attn_implementation(_gqa()["implementation"])
                if target.config._attn_implementation != _gqa()["implementation"]:  # transformers only warns
                    raise ValueError(f"{type(target).__name__} does not route its attention through transformers' "
                                     "AttentionInterface: use attention: sdpa")

        def restore(self):
            self.target.set_attn_implementation(self.own)

        def forward(self, input_ids, cache_position, *past):
            layers = [layer(past[2 * i], past[2 * i + 1], cache_position, deferred) for i in range(len(past) // 2)]
            positions = cache_position.unsqueeze(0).expand(input_ids.shape[0], -1)
            context = _BOUND.set(layers)
            try:
                out = self.target(input_ids=input_ids, cache_position=cache_position, position_ids=positions,
                                  past_key_values=Cache(layers=layers), use_cache=True, logits_to_keep=1)
            finally:
                _BOUND.reset(context)
            unwritten = [i for i, cached in enumerate(layers) if not cached.written]
            if unwritten:  # a layer whose attention did not come through the attention function
                raise ValueError(f"{type(self.target).__name__}: layers {unwritten} never called the attention "
                                 "interface with their cache: use attention: sdpa")
            logits = out.logits[:, -1].float()
            token = torch.argmax(logits, dim=-1, keepdim=True)
            # always 1, but only once the token is chosen: see the module docstring
            advance = (token[0] >= 0).to(cache_position.dtype)
            present = [t for bound in layers for t in (bound.keys, bound.values)]
            return (logits, token, cache_position[-1:] + advance, *present)

    return Decoder(model).eval()


def io_names(layers: int) -> tuple[list[str], list[str]]:
    """The graph's input and output names (past_key_0, past_value_0, … / present_…)."""
    past = [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
    return (["input_ids", "cache_position", *past],
            ["logits", "next_token", "next_position", *[n.replace("past", "present", 1) for n in past]])


def export(model, out: Path, attention: str = "gqa", opset: int = 18) -> dict:
    """Trace ``model`` (fp32, CPU) through ``wrapper`` with the dynamo exporter; returns what it took. The weights
    go to an external data file beside the graph (a 7B model is far above protobuf's 2 GB)."""
    import torch

    from infbench.workloads.generate.model import geometry

    g = geometry(model.config)
    batch, seq = 2, 5  # distinct example sizes, so that no two dynamic axes are unified
    cache_len = seq + 6
    ids = torch.randint(1, g["vocab"], (batch, seq))
    dtype = next(model.parameters()).dtype  # the cache's type is the model's
    past = tuple(torch.zeros(batch, g["kv_heads"], cache_len, g["head_dim"], dtype=dtype) for _ in range(2 * g["layers"]))
    limit = g["positions"] or EXPORT_POSITIONS
    dims = (torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=1, max=limit),
            torch.export.Dim("cache_len", min=2, max=limit))
    inputs, outputs = io_names(g["layers"])
    start = time.perf_counter()
    translation = _gqa()["translation"] if attention == "gqa" else None
    traced = wrapper(model, attention)
    try:
        program = torch.onnx.export(
            traced, (ids, torch.arange(seq), *past), input_names=inputs, output_names=outputs,
            dynamo=True, opset_version=opset, custom_translation_table=translation,
            # forward(input_ids, cache_position, *past): the varargs are one input whose spec is a tuple
            dynamic_shapes=({0: dims[0], 1: dims[1]}, {0: dims[1]}, tuple({0: dims[0], 2: dims[2]} for _ in past)))
    finally:
        traced.restore()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(out), external_data=True)
    return {"exporter": "torch.onnx dynamo", "opset": opset, "attention": attention,
            "export_s": time.perf_counter() - start}


def fuse(exported: Path, max_positions: int | None = None):
    """The forward graphs' fusion step (infbench.fusions.fuse_for_ort, every fusion: the batch-sized position
    ids keep the rotary fusion correct), after the Gemm rewrite where the graph has Gemms, the rotary tables
    constants of ``max_positions`` rows. Returns the fused model (onnx_ir; its weights still read lazily from
    the export's data file) and what each fusion matched."""
    import onnx
    import onnx_ir as ir

    from infbench.fusions import fuse_for_ort, gemm_to_matmul_add

    start = time.perf_counter()
    model, gemms = ir.load(str(exported)), 0  # weights read lazily from the external data
    if any(node.op_type == "Gemm" for node in model.graph):  # GPT-2's Conv1D: a small model, rewritten as a proto
        source = onnx.load(str(exported))
        gemms = gemm_to_matmul_add(source)
        model = ir.serde.deserialize_model(source)
    model, counts = fuse_for_ort(model, max_positions=max_positions)
    return model, {"fusions": {k: int(v) for k, v in counts.items() if v}, "gemm_to_matmul_add": gemms,
                   "fuse_s": time.perf_counter() - start}


# GroupQueryAttention's inputs, by position (ONNX Runtime's contrib op)
GQA_QUERY, GQA_KEY, GQA_VALUE, GQA_COS, GQA_SIN = 0, 1, 2, 7, 8
# the exported chains from a projection to GroupQueryAttention's input, walked back from it
_ROTATED = ("Reshape", "Transpose", "RotaryEmbedding", "Transpose", "Reshape", "MatMul")
_PLAIN = ("Reshape", "Reshape", "MatMul")
_BIASED = {chain: chain[:-1] + ("Add", "MatMul") for chain in (_ROTATED, _PLAIN)}  # a projection with a bias (Qwen2)


def pack_attention(model) -> int:
    """Each layer's Q, K and V projections as one MatMul feeding GroupQueryAttention's packed query, and the rotary
    embedding inside it (``do_rotary``, its cos/sin caches those of the fused RotaryEmbedding), as
    onnxruntime-genai's builder writes it: one GEMM where the export has three, two RotaryEmbedding and four
    Transpose kernels. GroupQueryAttention rotates each position by its place in the cache (seqlens_k), which is
    the exported positions' (cache_position) in infbench's loop: a prompt from position 0, then one step at a
    time. Projections with a bias (Qwen2) get one packed bias Add after the packed MatMul, as the builder writes
    them. A layer whose chains differ (partial rotary, a bias on some projections only, a projection used twice)
    is left as exported. ``model``: an onnx.ModelProto with its weights loaded; returns the number of layers
    packed."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    uses = collections.Counter(name for node in graph.node for name in node.input)
    uses.update(value.name for value in graph.output)
    weights = {tensor.name: tensor for tensor in graph.initializer}

    def walk(name: str, ops: tuple) -> list | None:
        nodes = []
        for op in ops:
            node = producer.get(name)
            if node is None or node.op_type != op or uses[name] != 1:
                return None
            nodes.append(node)
            name = node.input[0]
        return nodes

    def chain(name: str, ops: tuple) -> list | None:
        """The chain of ``ops`` back from ``name`` to its projection, or of the same with the projection's bias
        (an Add of a 1-D initializer) before it."""
        return walk(name, ops) or walk(name, _BIASED[ops])

    def bias(nodes: list):
        add = nodes[-2]
        return add if add.op_type == "Add" else None

    def attributes(node) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    dropped, before, packed = set(), {}, 0  # the chains' nodes; the packed MatMul before each attention
    for gqa in [node for node in graph.node if node.op_type == "GroupQueryAttention"]:
        q, k, v = chain(gqa.input[GQA_QUERY], _ROTATED), chain(gqa.input[GQA_KEY], _ROTATED), \
            chain(gqa.input[GQA_VALUE], _PLAIN)
        if not (q and k and v) or attributes(gqa).get("do_rotary"):
            continue
        projections, (rotary_q, rotary_k) = (q[-1], k[-1], v[-1]), (q[2], k[2])
        biases = [bias(c) for c in (q, k, v)]
        rotary = {**attributes(rotary_q), "num_heads": None}  # Q's and K's head counts differ (GQA)
        if len({p.input[0] for p in projections}) != 1 or any(p.input[1] not in weights for p in projections) \
                or rotary_q.input[2:4] != rotary_k.input[2:4] or rotary != {**attributes(rotary_k), "num_heads": None} \
                or rotary.get("rotary_embedding_dim", 0) or rotary.get("is_packed_batching", 0) \
                or (any(biases) and not all(b is not None and b.input[1] in weights
                                             and len(weights[b.input[1]].dims) == 1 for b in biases)):
            continue
        weight = numpy_helper.from_array(np.concatenate(
            [numpy_helper.to_array(weights[p.input[1]]) for p in projections], axis=1), f"{gqa.name}.qkv.weight")
        graph.initializer.append(weight)
        matmul = helper.make_node("MatMul", [projections[0].input[0], weight.name], [f"{gqa.name}.qkv"],
                                  name=f"{gqa.name}.qkv")
        packed_nodes = [matmul]
        if all(biases):
            joined = numpy_helper.from_array(np.concatenate(
                [numpy_helper.to_array(weights[b.input[1]]) for b in biases]), f"{gqa.name}.qkv.bias")
            graph.initializer.append(joined)
            packed_nodes.append(helper.make_node("Add", [matmul.output[0], joined.name], [f"{gqa.name}.qkv_biased"],
                                                 name=f"{gqa.name}.qkv_bias"))
        inputs = list(gqa.input) + [""] * (GQA_SIN + 1 - len(gqa.input))
        inputs[GQA_QUERY], inputs[GQA_KEY], inputs[GQA_VALUE] = packed_nodes[-1].output[0], "", ""
        inputs[GQA_COS], inputs[GQA_SIN] = rotary_q.input[2], rotary_q.input[3]
        del gqa.input[:]
        gqa.input.extend(inputs)
        gqa.attribute.extend([helper.make_attribute("do_rotary", 1),
                              helper.make_attribute("rotary_interleaved", int(rotary.get("interleaved", 0)))])
        dropped.update(node.output[0] for node in (*q, *k, *v))
        before[gqa.output[0]] = packed_nodes
        packed += 1
    if packed:
        nodes = [n for node in graph.node if node.output[0] not in dropped
                 for n in ((*before[node.output[0]], node) if node.output[0] in before else (node,))]
        del graph.node[:]
        graph.node.extend(nodes)
        _drop_unused(graph)
    return packed


def _drop_unused(graph) -> None:
    """Nodes none of whose outputs is read (the position ids the rotary embeddings took), then initializers
    nothing reads (the separate projections' weights), each deleted in place: a 7B model's weights are never
    copied."""
    outputs = {value.name for value in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        unread = [i for i, node in enumerate(graph.node) if not any(name in read for name in node.output)]
        for i in reversed(unread):
            del graph.node[i]
        if not unread:
            break
    for i in reversed([i for i, tensor in enumerate(graph.initializer) if tensor.name not in read]):
        del graph.initializer[i]


def typed(fused, out: Path, precision: str) -> dict:
    """The fused graph at fp16 / bf16, its cache too (logits stay fp32): infbench.onnx_precision after fusion."""
    from infbench.onnx_precision import to_typed

    start = time.perf_counter()
    fp32_ops = ("Sin", "Cos") if precision == "bf16" else ()  # the rotary tables': no bfloat16 in their schema
    to_typed(fused, out, precision, keep_io_types=["logits"], keep_fp32_ops=fp32_ops, external_data=True)
    Path(out).with_suffix(".json").unlink(missing_ok=True)  # the manifest describes it
    return {"convert_s": time.perf_counter() - start, "converter": "onnxruntime.transformers.float16, logits fp32",
            "kept_fp32_ops": list(fp32_ops)}


# Inputs that ONNX Runtime's CUDA kernels read on the host (their kernels' CPU inputs), by op
HOST_INPUTS = {"Reshape": (1,), "Expand": (1,), "Slice": (1, 2, 3, 4), "Squeeze": (1,), "Unsqueeze": (1,),
               "Range": (0, 1, 2), "ConstantOfShape": (0,), "Tile": (1,), "Split": (1,), "ReduceMax": (1,),
               "ReduceSum": (1,), "TopK": (1,), "Pad": (1, 2, 3), "GroupQueryAttention": (6,)}


def device_reads(graph: Path) -> list[str]:
    """The nodes whose host-read inputs (HOST_INPUTS) are computed from a graph input's values rather than from
    shapes and constants: each would copy from the device, and synchronize, in every step, and rules out CUDA
    graphs. Empty for a graph fit for a decode loop."""
    import onnx

    graph = onnx.load(str(graph), load_external_data=False).graph
    # the graph inputs each value is computed from, in the nodes' (topological) order; a Shape reads no values
    sources: dict[str, frozenset] = {value.name: frozenset([value.name]) for value in graph.input}
    for node in graph.node:
        read = frozenset() if node.op_type == "Shape" else frozenset().union(
            *(sources.get(name, frozenset()) for name in node.input if name))
        sources.update((name, read) for name in node.output)
    return [f"{node.op_type} {node.name} input {i} from {sorted(sources[node.input[i]])}"
            for node in graph.node for i in HOST_INPUTS.get(node.op_type, ())
            if i < len(node.input) and node.input[i] and sources.get(node.input[i])]


def op_counts(graph: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    return dict(collections.Counter(node.op_type for node in model.graph.node))


def remove(graph: Path) -> None:
    """A graph and its external data file."""
    for path in (graph, graph.with_name(f"{graph.name}.data")):
        path.unlink(missing_ok=True)


def load_fp32(spec: dict, device: str):
    """The fp32 model of ``spec`` (drawn on ``device``, as the session's are) on the CPU, and the seconds it took."""
    from infbench.workloads.generate import model as decoder

    start = time.perf_counter()
    model, _ = decoder.build(spec, device, "fp32")
    return model.cpu(), time.perf_counter() - start


def _export_fp32(spec: dict, device: str, out: Path, attention: str) -> dict:
    """Build the model and export it, in a process of its own (``build``)."""
    from infbench.workloads.generate.model import geometry

    model, seconds = load_fp32(spec, device)
    return {**export(model, out, attention), "weights_s": seconds, "geometry": geometry(model.config)}


def build(spec: dict, device: str, out_dir: Path, precision: str, attention: str = "gqa", parity=None) -> dict:
    """Export, fuse, pack, convert: ``out_dir/decoder.onnx`` (+ ``.data``) at ``precision`` and the facts for the
    manifest, for the model of ``spec`` drawn on ``device``. ``parity(model, graph, facts)`` checks the fp32
    graph against the model. A typed build exports in a child process -- torch.onnx keeps every weight it traced
    alive until its process ends, and a 7B fp32 model is 27 GB --, then every build fuses the export, serializes
    it (reading each weight from the export's data file once), packs its attention (``pack_attention``) and
    writes it, converted where typed: its host-memory peak is the serialized fp32 graph and the converter's
    copies (2.0× the fp32 model measured), its disk peak the fp32 export alone (footprint.build_gb)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import onnx
    import onnx_ir as ir

    from infbench.onnx_graphs import check_graph
    from infbench.workloads.generate.model import geometry

    out_dir = Path(out_dir)
    exported, graph = out_dir / "exported.onnx", out_dir / "decoder.onnx"
    model = None
    if precision == "fp32":  # the model stays for the parity check
        model, seconds = load_fp32(spec, device)
        facts = {**export(model, exported, attention), "weights_s": seconds, "geometry": geometry(model.config)}
    else:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            facts = child.submit(_export_fp32, spec, device, exported, attention).result()
    shape = facts.pop("geometry")
    layers, positions = shape["layers"], shape["positions"] or EXPORT_POSITIONS
    inputs, outputs = io_names(layers)
    facts.update(graph=graph.name, inputs=inputs, outputs=outputs,
                 needed=[*NEEDED, CACHE_WRITE[attention]])
    fused, found = fuse(exported, positions)
    facts.update(found)
    proto = ir.serde.serialize_model(fused)  # its weights still in the export's data file
    del fused
    onnx.external_data_helper.load_external_data_for_model(proto, str(out_dir))  # read once: the export can go
    remove(exported)
    facts["fusions"]["packed_attention"] = pack_attention(proto)
    if precision == "fp32":
        remove(graph)  # onnx.save appends to an existing data file
        onnx.save(proto, str(graph), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{graph.name}.data")
        check_graph(graph)
    else:
        facts.update(typed(proto, graph, precision))
    _check_decoder(graph, attention, layers)
    if parity is not None and model is not None:
        facts["parity"] = parity(model, graph, facts)
    return facts


def _check_decoder(graph: Path, attention: str, layers: int) -> None:
    """A GroupQueryAttention export has one per layer (the typed build has no parity check to catch a layer
    that escaped it), and no graph reads a value from the device on the host (``device_reads``)."""
    found = op_counts(graph).get("GroupQueryAttention", 0)
    if attention == "gqa" and found != layers:
        raise ValueError(f"the export has {found} GroupQueryAttention nodes for {layers} layers")
    reads = device_reads(graph)
    if reads:
        raise ValueError(f"the graph reads device values on the host in every step: {'; '.join(reads)}")
