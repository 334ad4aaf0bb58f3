"""ONNX Runtime generation on the CPU: onnxruntime-genai's builder and infbench's exported decoder build tiny
Llamas (grouped-query and multi-head attention) and a GPT-2 through the workflow's own rules, once per model and
precision; both generators reproduce the fp32 reference through their own cache paths, the exported decoder
with its attention emitted as GroupQueryAttention (the default) and as exported SDPA; the exported decoder's
loop reuses the same bound buffers at every step; a cache wired wrong fails the accuracy check; families a
backend does not take are unsupported records decided up front; a new prompt length rebuilds nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import dry_run, snakemake

from infbench.workloads.generate import accuracy, ort, ort_build, session
from infbench.workloads.generate import model as decoder

pytest.importorskip("onnxruntime_genai")

TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "vocab_size": 512, "max_position_embeddings": 64}
MODELS = {
    "tiny-llama": {"model_type": "llama", "overrides": {**TINY, "num_key_value_heads": 2}},  # grouped-query
    "tiny-llama-mha": {"model_type": "llama", "overrides": {**TINY, "num_key_value_heads": 4}},
    "tiny-gpt2": {"model_type": "gpt2", "overrides": {"n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 512,
                                                      "n_positions": 64}},
    "tiny-t5": {"model_type": "t5", "overrides": {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_heads": 4,
                                                  "d_kv": 16, "vocab_size": 512}},
}
BACKENDS = {"ort-genai": {"engine": "ort_genai"}, "ort-decoder": {"engine": "ort_decoder"}}
PROMPT, NEW = 8, 6
# what each family gets: a build per engine that takes it
BUILT = {("tiny-llama", "ort_genai"), ("tiny-llama", "ort_decoder"), ("tiny-llama-mha", "ort_genai"),
         ("tiny-llama-mha", "ort_decoder"), ("tiny-gpt2", "ort_decoder")}
SDPA = {"attention": "sdpa"}  # the exported decoder's other attention, built for two of them (sdpa fixture)
SDPA_BUILT = ("tiny-llama", "tiny-gpt2")


def _config() -> dict:
    timing = {"warmup_s": 0.0, "warmup_min_iters": 1, "min_iters": 4, "max_iters": 6, "budget_s": 0.2,
              "target_ci_rel_width": 0.05, "rounds": 2}
    # copies: a test that changes a model's geometry must not change it for the tests after it
    return {"device": "cpu", "models": {}, "timing": timing,
            "generation": {"models": copy.deepcopy(MODELS), "backends": copy.deepcopy(BACKENDS), "batch_sizes": [2], "prompt_lens": [PROMPT],
                           "new_tokens": NEW}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A working directory where the workflow's own rules built every directory the config needs."""
    work = tmp_path_factory.mktemp("ort_generation")
    (work / "ort.yaml").write_text(yaml.safe_dump(_config()))
    targets = [ort_build.artifact_path(engine, model, "fp32") for model, engine in sorted(BUILT)]
    snakemake(work, *targets, "--configfile", "ort.yaml")
    return work


@pytest.fixture(scope="module")
def sdpa(tmp_path_factory) -> dict[str, str]:
    """The exported decoder with transformers' SDPA as exported, per model of SDPA_BUILT: its manifest."""
    work = tmp_path_factory.mktemp("ort_sdpa")
    built = {}
    for model in SDPA_BUILT:
        manifest = work / ort_build.artifact_path("ort_decoder", model, "fp32", SDPA)
        info = ort_build.build(ort_build.build_params("ort_decoder", {**MODELS[model], "seed": 0}, "fp32", "cpu",
                                                      SDPA), manifest)
        assert info["status"] == "ok", info["reason"]
        built[model] = str(manifest)
    return built


def _manifest(workdir: Path, model: str, engine: str) -> str:
    return str(workdir / ort_build.artifact_path(engine, model, "fp32"))


def _graph(manifest: str):
    import onnx

    return onnx.load(str(Path(manifest).parent / "decoder.onnx"), load_external_data=False).graph


def _reference(model: str):
    built, _ = decoder.build({**MODELS[model], "seed": 0}, "cpu")
    prompt = session.prompt_ids(int(built.config.vocab_size), 2, PROMPT, 0, "cpu")
    return built, prompt, accuracy.reference(built, prompt, NEW)


BUILDS = sorted((model, engine, None) for model, engine in BUILT) + [(m, "ort_decoder", "sdpa") for m in SDPA_BUILT]


@pytest.mark.parametrize("model,engine,attention", BUILDS)
def test_each_build_reproduces_the_reference_through_its_cache(workdir, sdpa, model, engine, attention):
    """Teacher-forced logits within fp32 noise of the cache-free reference, greedy tokens equal, the check passes;
    the manifest counts the fused ops: GroupQueryAttention but where the exported decoder keeps SDPA."""
    manifest = sdpa[model] if attention == "sdpa" else _manifest(workdir, model, engine)
    info = json.loads(Path(manifest).read_text())
    assert info["status"] == "ok", info["reason"]
    fused = info["fused_ops"]
    fused_attention = "MultiHeadAttention" if attention == "sdpa" else "GroupQueryAttention"
    assert fused.get(fused_attention) == 2, fused
    if model != "tiny-gpt2":
        assert fused.get("SkipSimplifiedLayerNormalization") and fused.get("SimplifiedLayerNormalization"), fused
    built, prompt, reference = _reference(model)
    generator = ort.create(engine, built, prompt, NEW, {"artifact": manifest})
    generator.generate(lambda: None)
    tokens = generator.tokens()
    forced = generator.teacher_forced(reference["tokens"])
    np.testing.assert_allclose(forced, reference["logits"], rtol=0, atol=1e-4)
    assert (tokens == reference["tokens"]).all()
    verdict = accuracy.judge(reference["logits"], reference["tokens"], forced, tokens, "fp32")
    assert verdict["passed"] and verdict["teacher_forced_top1"] == 1.0


def test_the_decoder_loop_binds_its_buffers_once(workdir):
    """Every step runs one fixed binding: after many generations no bound address has moved (ONNX Runtime wrote
    into the buffers, allocating nothing), the position advanced in place and the cache is the same buffers."""
    built, prompt, reference = _reference("tiny-llama")
    artifact = _manifest(workdir, "tiny-llama", "ort_decoder")
    generator = ort.create("ort_decoder", built, prompt, NEW, {"artifact": artifact})
    loop = generator.loop
    caches = [buffer.data_ptr() for buffer in loop.cache]
    marks = []
    for _ in range(3):
        generator.generate(lambda: marks.append(1))
    assert len(marks) == 3 * NEW
    assert loop.moved() == 0 and generator.verify() is None and generator.prepare["buffers_moved"] == 0
    assert [buffer.data_ptr() for buffer in loop.cache] == caches
    assert int(loop.position.numpy()[0]) == PROMPT + NEW - 1  # the last step's token was fed at this position
    # GroupQueryAttention reads the filled positions of buffers of prompt + new tokens
    assert generator.cache_info["allocated_len"] is None and generator.cache_info["buffer_len"] == PROMPT + NEW


def test_the_emitted_attention_writes_the_cache_in_place(workdir):
    """One GroupQueryAttention per layer takes the layer's past and gives its present (the cache write is
    inside it, in place where both are bound to one buffer), its seqlens_k computed from cache_position."""
    graph = _graph(_manifest(workdir, "tiny-llama", "ort_decoder"))
    producer = {out: node for node in graph.node for out in node.output}

    def reads(name: str) -> set[str]:
        node = producer.get(name)
        return {name} if node is None else set().union(*(reads(i) for i in node.input if i))

    attention = [node for node in graph.node if node.op_type == "GroupQueryAttention"]
    assert len(attention) == 2
    for layer, node in enumerate(attention):
        assert list(node.input[3:5]) == [f"past_key_{layer}", f"past_value_{layer}"]
        assert list(node.output[1:3]) == [f"present_key_{layer}", f"present_value_{layer}"]
        assert "cache_position" in reads(node.input[5])


def test_each_layers_attention_takes_one_projection_and_rotates_inside(workdir):
    """pack_attention: Q, K and V come from one MatMul (GroupQueryAttention's packed query, no key or value
    input) and the rotary embedding is GroupQueryAttention's own (do_rotary, the fused caches): no RotaryEmbedding
    or Transpose is left. A layer whose projection is read twice is left as exported. (The loop's agreement with
    the reference through these graphs: test_each_build_reproduces_the_reference_through_its_cache.)"""
    import onnx
    from onnx import helper

    from infbench.workloads.generate import ort_export

    directory = Path(_manifest(workdir, "tiny-llama", "ort_decoder")).parent
    graph = _graph(_manifest(workdir, "tiny-llama", "ort_decoder"))
    producer = {out: node for node in graph.node for out in node.output}
    ops = {node.op_type for node in graph.node}
    assert "RotaryEmbedding" not in ops and "Transpose" not in ops
    for node in graph.node:
        if node.op_type == "GroupQueryAttention":
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            assert attributes["do_rotary"] == 1 and attributes["rotary_interleaved"] == 0
            assert list(node.input[1:3]) == ["", ""] and producer[node.input[0]].op_type == "MatMul"
            assert all(node.input[i] for i in (ort_export.GQA_COS, ort_export.GQA_SIN))
    assert ort_export.pack_attention(onnx.load(str(directory / "decoder.onnx"))) == 0  # nothing left to pack
    # a graph as exported, its first layer's Q projection also read elsewhere: only the second layer is packed
    import onnx_ir as ir

    model, _ = ort_export.load_fp32({**MODELS["tiny-llama"], "seed": 0}, "cpu")
    ort_export.export(model, workdir / "unpacked" / "exported.onnx")
    fused, _ = ort_export.fuse(workdir / "unpacked" / "exported.onnx", model.config.max_position_embeddings)
    unpacked = ir.serde.serialize_model(fused)
    onnx.external_data_helper.load_external_data_for_model(unpacked, str(workdir / "unpacked"))
    producer = {out: node for node in unpacked.graph.node for out in node.output}
    first = next(n for n in unpacked.graph.node if n.op_type == "GroupQueryAttention")
    rotary = producer[producer[producer[first.input[0]].input[0]].input[0]]  # Reshape ← Transpose ← rotary
    assert rotary.op_type == "RotaryEmbedding"
    unpacked.graph.output.append(onnx.ValueInfoProto(name=rotary.output[0]))
    assert ort_export.pack_attention(unpacked) == 1
    assert sum(n.op_type == "RotaryEmbedding" for n in unpacked.graph.node) == 2  # the first layer's Q and K


def test_no_graph_reads_a_device_value_on_the_host(workdir, sdpa):
    """Every input ONNX Runtime's CUDA kernels read on the host (GroupQueryAttention's total_sequence_length,
    a Range's limit, a Reshape's shape …) comes from shapes and constants in every exported graph, so no step
    copies from the device (which would synchronize and rule out CUDA graphs); a Range sized by a position, as
    the rotary tables were before they got a fixed size, is found."""
    from onnx import TensorProto, helper

    from infbench.workloads.generate import ort_export

    for manifest in [_manifest(workdir, m, "ort_decoder") for m, e in BUILT if e == "ort_decoder"] + list(sdpa.values()):
        assert ort_export.device_reads(Path(manifest).parent / "decoder.onnx") == [], manifest
    zero, one = (helper.make_tensor(n, TensorProto.INT64, [], [v]) for n, v in (("zero", 0), ("one", 1)))
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["cache_position"], ["last"], keepdims=0),
         helper.make_node("Range", ["zero", "last", "one"], ["positions"])], "sized",
        [helper.make_tensor_value_info("cache_position", TensorProto.INT64, ["s"])],
        [helper.make_tensor_value_info("positions", TensorProto.INT64, None)], initializer=[zero, one])
    path = workdir / "sized.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    assert ort_export.device_reads(path) == ["Range  input 1 from ['cache_position']"]


def test_the_custom_op_computes_what_onnx_runtimes_kernel_computes():
    """infbench::group_query_attention (the op the export traces) against ONNX Runtime's GroupQueryAttention
    on one shared past/present buffer: a first prompt, then steps whose total_sequence_length is the buffer's,
    with and without a sliding window; a multi-token call after the prompt is refused, as ONNX Runtime does."""
    import onnxruntime
    import torch
    from onnx import TensorProto, helper

    from infbench.workloads.generate import ort_export

    ort_export._gqa()  # registers the op
    op = torch.ops.infbench.group_query_attention
    batch, heads, kv_heads, dim, length = 2, 4, 2, 8, 10
    rng = np.random.default_rng(0)
    for window in (-1, 3):
        node = helper.make_node("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "seqlens_k", "total"],
                                ["out", "present_k", "present_v"], domain="com.microsoft", num_heads=heads,
                                kv_num_heads=kv_heads, local_window_size=window)
        tensor = lambda name, kind, shape: helper.make_tensor_value_info(name, kind, shape)  # noqa: E731
        graph = helper.make_graph([node], "gqa", [
            tensor("q", TensorProto.FLOAT, [batch, "s", heads * dim]), tensor("k", TensorProto.FLOAT, [batch, "s", kv_heads * dim]),
            tensor("v", TensorProto.FLOAT, [batch, "s", kv_heads * dim]),
            tensor("pk", TensorProto.FLOAT, [batch, kv_heads, length, dim]), tensor("pv", TensorProto.FLOAT, [batch, kv_heads, length, dim]),
            tensor("seqlens_k", TensorProto.INT32, [batch]), tensor("total", TensorProto.INT32, [])],
            [tensor(n, TensorProto.FLOAT, None) for n in ("out", "present_k", "present_v")])
        model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18),
                                                                       helper.make_opsetid("com.microsoft", 1)])
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        cache = [onnxruntime.OrtValue.ortvalue_from_numpy(np.zeros((batch, kv_heads, length, dim), np.float32))
                 for _ in range(2)]
        past = [torch.zeros(batch, kv_heads, length, dim) for _ in range(2)]
        for filled, seq in [(0, 6), (6, 1), (7, 1), (8, 1)]:
            q, k, v = (rng.standard_normal((batch, seq, n * dim)).astype(np.float32) for n in (heads, kv_heads, kv_heads))
            total = seq if filled == 0 else length  # as the export computes it: the prompt's, the buffer's
            seqlens = np.full(batch, filled + seq - 1, np.int32)
            binding = session.io_binding()
            for name, value in (("q", q), ("k", k), ("v", v), ("seqlens_k", seqlens), ("total", np.array(total, np.int32))):
                binding.bind_cpu_input(name, value)
            for name, buffer in zip(("pk", "pv"), cache):
                binding.bind_ortvalue_input(name, buffer)
            binding.bind_output("out")
            for name, buffer in zip(("present_k", "present_v"), cache):
                binding.bind_ortvalue_output(name, buffer)
            session.run_with_iobinding(binding)
            out, *past = op(*(torch.from_numpy(x) for x in (q, k, v)), *past, torch.from_numpy(seqlens),
                            torch.tensor(total, dtype=torch.int32), heads, kv_heads, dim ** -0.5, window)
            np.testing.assert_allclose(binding.get_outputs()[0].numpy(), out.numpy(), atol=1e-5)
            for buffer, ours in zip(cache, past):
                np.testing.assert_allclose(buffer.numpy(), ours.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="chunked prefill"):
        op(*(torch.zeros(batch, 3, n * dim) for n in (heads, kv_heads, kv_heads)), *past,
           torch.full((batch,), 10, dtype=torch.int32), torch.tensor(length, dtype=torch.int32), heads, kv_heads, 1.0, -1)


def test_a_sliding_window_is_the_attentions_local_window(tmp_path):
    """Mistral with a 3-position window: the export sets GroupQueryAttention's local_window_size, and the fp32
    graph passes the build's parity check over 9 positions (a window ignored would not)."""
    spec = {"model_type": "mistral", "seed": 0, "overrides": {**TINY, "num_key_value_heads": 2, "sliding_window": 3}}
    info = ort_build.build(ort_build.build_params("ort_decoder", spec, "fp32", "cpu"), tmp_path / "manifest.json")
    assert info["status"] == "ok", info["reason"]
    assert info["parity"]["prompt_len"] + info["parity"]["steps"] > 3
    windows = {attribute.i for node in _graph(str(tmp_path / "manifest.json")).node
               if node.op_type == "GroupQueryAttention" for attribute in node.attribute
               if attribute.name == "local_window_size"}
    assert windows == {3}


@pytest.mark.parametrize("model", SDPA_BUILT)
def test_the_exported_cache_write_is_one_scatter_from_past_to_present(sdpa, model):
    """With SDPA as exported, each layer's present keys/values come from one ScatterND whose data is its past,
    read by nothing else but a Shape, so ONNX Runtime writes it in place in the bound buffer: no Transpose or
    copy of the whole cache."""
    graph = _graph(sdpa[model])
    producer = {out: node for node in graph.node for out in node.output}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    presents = [out.name for out in graph.output if out.name.startswith("present_")]
    assert presents
    for present in presents:
        node = producer[present]
        assert node.op_type == "ScatterND" and node.input[0] == present.replace("present", "past", 1), present
        data_readers = [op for op in readers[node.input[0]] if op != "Shape"]  # Shape reads no data
        assert data_readers == ["ScatterND"], (present, readers[node.input[0]])


def test_a_cache_wired_wrong_fails_the_check(workdir):
    """fault_misindexed_cache: the position never advances, every step rewrites one slot: clear steps disagree."""
    built, prompt, reference = _reference("tiny-llama")
    options = {"artifact": _manifest(workdir, "tiny-llama", "ort_decoder"), "fault_misindexed_cache": True}
    generator = ort.create("ort_decoder", built, prompt, NEW, options)
    generator.generate(lambda: None)
    forced = generator.teacher_forced(reference["tokens"])
    verdict = accuracy.judge(reference["logits"], reference["tokens"], forced, generator.tokens(), "fp32")
    assert not verdict["passed"] and verdict["teacher_forced_top1"] < 1.0


def test_a_typed_decoder_keeps_its_cache_typed_and_its_function(tmp_path):
    """fp16 (a GPU's precision; ONNX Runtime's CPU kernels run this tiny one too): converted after the fusions,
    weights in an external data file, the cache buffers fp16 and the logits fp32, within fp16's error."""
    import onnx

    params = ort_build.build_params("ort_decoder", {**MODELS["tiny-llama"], "seed": 0}, "fp16", "cpu")
    info = ort_build.build(params, tmp_path / "fp16" / "manifest.json")
    assert info["status"] == "ok", info["reason"]
    assert info["fused_ops"]["GroupQueryAttention"] == 2 and "RotaryEmbedding" not in info["fused_ops"]
    graph = tmp_path / "fp16" / info["graph"]
    proto = onnx.load(str(graph), load_external_data=False).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*proto.input, *proto.output)}
    assert types["past_key_0"] == types["present_value_1"] == onnx.TensorProto.FLOAT16
    assert types["logits"] == onnx.TensorProto.FLOAT and graph.with_name("decoder.onnx.data").exists()
    built, prompt, reference = _reference("tiny-llama")
    loop = ort.BoundDecoder(graph, info, built.config, prompt.numpy(), NEW, "cpu", "fp16")
    forced = loop.forced(reference["tokens"])
    rel = np.linalg.norm(forced - reference["logits"]) / np.linalg.norm(reference["logits"])
    assert rel < accuracy.TOLERANCE["fp16"]


def test_families_are_decided_up_front():
    """GPT-2 is not the builder's, T5 is neither engine's: one line each, and no build is asked for (the
    workflow builds exactly BUILT); fp32 only on the CPU; CUDA graphs only on a GPU."""
    gpt2, t5 = MODELS["tiny-gpt2"], MODELS["tiny-t5"]
    assert {(m, e) for m in MODELS for e in ort_build.ENGINES if ort_build.needs_build(e, MODELS[m], "fp32", "cpu")} \
        == BUILT
    assert "GPT2LMHeadModel" in ort_build.family_support("ort_genai", gpt2)
    assert ort_build.family_support("ort_decoder", gpt2) is None
    for engine in ort_build.ENGINES:
        assert "encoder–decoder" in ort_build.family_support(engine, t5)
        assert not ort_build.needs_build(engine, t5, "fp32", "cpu")
        assert "CPU" in ort_build.supports(engine, "bf16", "cpu", MODELS["tiny-llama"])
    assert ort.available("ort_genai", "cpu", {"cuda_graph": True, "artifact": "x"}) == "CUDA graphs need a CUDA device"
    mixtral = {"model_type": "mixtral", "overrides": {**TINY, "num_key_value_heads": 2, "num_local_experts": 4}}
    assert "mixture-of-experts" in ort_build.family_support("ort_decoder", mixtral)  # its export would fail minutes in


@pytest.mark.parametrize("model_type", ["qwen3", "qwen2"])
def test_the_builder_gets_an_end_of_sequence_id_inside_the_vocabulary(tmp_path, model_type):
    """Qwen3's config has no eos_token_id, and onnxruntime-genai's builder refuses such a model; for Qwen2 it
    took the family tokenizer's end of sequence, id 512 in a vocabulary of 512, which the generator refuses. The
    saved copy and its tokenizer name id 0 (generations run to their length whatever it is)."""
    spec = {"model_type": model_type, "overrides": {**TINY, "num_key_value_heads": 2, "head_dim": 16}, "seed": 0}
    manifest = tmp_path / "manifest.json"
    info = ort_build.build(ort_build.build_params("ort_genai", spec, "fp32", "cpu"), manifest)
    assert info["status"] == "ok", info["reason"]
    assert json.loads((tmp_path / "genai_config.json").read_text())["model"]["eos_token_id"] in (0, [0])


def test_a_build_names_the_wheel_that_imports(monkeypatch):
    """Where the GPU wheels are installed beside the CPU ones (the GPU image's CPU onnxruntime, the carried
    onnxruntime-gpu first on the path), a build depends on, and records, the GPU wheels' versions."""
    installed = {"onnxruntime": "1.30.0", "onnxruntime-gpu": "1.31.1", "onnxruntime-genai": "0.17.0",
                 "onnxruntime-genai-cuda": "0.18.0", "torch": "2.11.0", "transformers": "5.17.0", "onnxscript": "0.7.2"}
    from infbench import environment

    monkeypatch.setattr(environment.metadata, "version", lambda package: installed[package])
    decoder_build = ort_build.build_params("ort_decoder", MODELS["tiny-llama"], "fp16", "cuda")["libraries"]
    genai_build = ort_build.build_params("ort_genai", MODELS["tiny-llama"], "fp16", "cuda")["libraries"]
    assert decoder_build["onnxruntime"] == decoder_build["ort_decoder"] == genai_build["onnxruntime"] == "1.31.1"
    assert genai_build["ort_genai"] == "0.18.0"


def test_a_build_of_an_unsupported_family_is_a_failed_manifest_not_a_crash(tmp_path):
    params = ort_build.build_params("ort_genai", MODELS["tiny-t5"], "fp32", "cpu")
    info = ort_build.build(params, tmp_path / "genai" / "manifest.json")
    assert info["status"] == "failed" and "unsupported: t5 is an encoder–decoder" in info["reason"]
    with pytest.raises(RuntimeError, match="encoder–decoder"):
        ort_build.read_manifest(tmp_path / "genai" / "manifest.json")


def _request(workdir: Path, model: str, cells: list[tuple[str, str, dict]]) -> dict:
    """A shape session's request, each ORT cell reading the directory the workflow built (as rules/common.smk
    passes it)."""
    keyed = []
    for backend, engine, options in cells:
        artifact = workdir / ort_build.artifact_path(engine, model, "fp32")
        keyed.append({"key": session.cell_key(model, backend, engine, "fp32", 2, PROMPT, NEW),
                      "options": {**options, **({"artifact": str(artifact)} if artifact.exists() else {})}})
    return {"device": "cpu", "batch": 2, "prompt_len": PROMPT, "new_tokens": NEW, "spec": {**MODELS[model], "seed": 0},
            "seed": 0, "timing": _config()["timing"], "cells": keyed,
            "bandwidth_bytes_per_s": 1e10}


def test_a_session_times_both_backends_and_gates_them_on_accuracy(workdir):
    """Through the shape session: both ORT backends timed beside the baseline in the same rounds, their
    accuracy passed, what the build did in their prepare section; the faulty loop fails the accuracy gate."""
    cells = [("generate", "hf_generate", {}), ("ort-genai", "ort_genai", {}), ("ort-decoder", "ort_decoder", {}),
             ("ort-decoder-fault", "ort_decoder", {"fault_misindexed_cache": True})]
    recs = {r["key"]["backend"]: r for r in session.run_shape(_request(workdir, "tiny-llama", cells))}
    for name in ("generate", "ort-genai", "ort-decoder"):
        record = recs[name]
        assert record["status"] == "ok", record["reason"]
        assert record["accuracy"]["passed"] and record["accuracy"]["teacher_forced_top1"] == 1.0
        gen = record["generation"]
        assert gen["ttft_ms"] > 0 and gen["tpot_ms"] > 0 and len(record["timing"]["rounds"]) == 2
    decoder_prep, genai_prep = recs["ort-decoder"]["prepare"], recs["ort-genai"]["prepare"]
    assert decoder_prep["fused_ops"]["GroupQueryAttention"] == 2 and decoder_prep["buffers_moved"] == 0
    assert decoder_prep["needed"] and decoder_prep["build_s"] > 0
    assert genai_prep["fused_ops"]["GroupQueryAttention"] == 2
    assert recs["ort-decoder"]["generation"]["cache"]["buffer_len"] == PROMPT + NEW
    assert not recs["ort-decoder-fault"]["accuracy"]["passed"]  # timed, and gated out as every backend is


def test_unsupported_families_are_records_not_crashes(workdir):
    """GPT-2 through onnxruntime-genai, T5 through either: unsupported, one line, no directory read."""
    recs = session.run_shape(_request(workdir, "tiny-gpt2", [("ort-genai", "ort_genai", {})]))
    assert recs[0]["status"] == "unsupported" and "GPT2LMHeadModel" in recs[0]["reason"]
    both = [("ort-genai", "ort_genai", {}), ("ort-decoder", "ort_decoder", {})]
    for record in session.run_shape(_request(workdir, "tiny-t5", both)):
        assert record["status"] == "unsupported" and "encoder–decoder" in record["reason"], record["reason"]


def test_directories_are_built_once_per_model_and_never_for_a_new_shape(workdir):
    """One build per model and engine, whatever the shapes: a new prompt length and a new batch size add shape
    sessions only; a new geometry rebuilds that model's directories alone."""
    config = _config()
    config["generation"]["prompt_lens"].append(2 * PROMPT)
    config["generation"]["batch_sizes"].append(1)
    jobs = dry_run(workdir, config)
    assert "build_ort_genai" not in jobs and "export_decoder" not in jobs, jobs
    assert len(jobs["bench_generate"]) == 4 * len(MODELS)
    config = _config()
    config["generation"]["models"]["tiny-llama"]["overrides"]["num_hidden_layers"] = 3
    jobs = dry_run(workdir, config)
    assert jobs["build_ort_genai"] == [ort_build.artifact_path("ort_genai", "tiny-llama", "fp32")]
    assert jobs["export_decoder"] == [ort_build.artifact_path("ort_decoder", "tiny-llama", "fp32")]


def test_the_exported_decoders_attention_is_a_build_of_its_own(workdir):
    """A backend with the other attention asks for one more export per model that takes it, and leaves the
    built ones alone; its cells read that directory."""
    config = _config()
    config["generation"]["backends"]["ort-decoder-sdpa"] = {"engine": "ort_decoder", "options": SDPA}
    jobs = dry_run(workdir, config)
    assert "build_ort_genai" not in jobs
    assert sorted(jobs["export_decoder"]) == sorted(ort_build.artifact_path("ort_decoder", m, "fp32", SDPA)
                                                    for m, e in BUILT if e == "ort_decoder")
    assert ort_build.build_name("ort_decoder", SDPA) == "ort_decoder-sdpa"
    assert ort_build.build_name("ort_decoder", {}) == "ort_decoder-gqa"


@pytest.mark.parametrize("engine, options, key", [
    *[(engine, options, key) for engine in ort_build.ENGINES for options, key in [
        ({"cuda_graph": True}, "generation.backends.x.options.cuda_graph"),  # a CPU run
        ({"cache": "static"}, "generation.backends.x.options"),  # another engine's option
    ]],
    ("ort_decoder", {"attention": "flash"}, "generation.backends.x.options.attention"),
    ("ort_genai", SDPA, "generation.backends.x.options"),  # the builder's attention is its own
])
def test_bad_ort_options_are_one_line_naming_the_key(engine, options, key):
    from infbench import config as config_io

    generation = {"models": {"tl": MODELS["tiny-llama"]}, "backends": {"x": {"engine": engine, "options": options}}}
    with pytest.raises(config_io.ConfigError) as error:
        config_io.validate({"device": "cpu", "models": {}, "generation": generation})
    message = str(error.value)
    assert message.startswith(f"invalid config: {key}") and "\n" not in message, message


def test_display_names_and_family():
    from infbench import names

    assert names.display_name("ort_genai", {"cuda_graph": True}) == "onnxruntime-genai + CUDA graphs"
    assert names.display_name("ort_decoder", {}) == "ONNX Runtime exported decoder"
    assert names.display_name("ort_decoder", SDPA) == "ONNX Runtime exported decoder, SDPA as exported"
    assert names.family("ort_genai") == names.family("ort_decoder") == "ONNX Runtime"


def test_the_decoder_backends_share_one_session_per_graph(workdir):
    """Two cells of one exported graph hold one ONNX Runtime session (one copy of the weights), each with its own
    buffers, and both generate the reference's greedy tokens."""
    built, prompt, reference = _reference("tiny-llama")
    artifact = _manifest(workdir, "tiny-llama", "ort_decoder")
    first, second = (ort.create("ort_decoder", built, prompt, NEW, {"artifact": artifact}) for _ in range(2))
    assert first.loop.session is second.loop.session
    assert first.loop.cache[0].data_ptr() != second.loop.cache[0].data_ptr()
    for generator in (first, second):
        np.testing.assert_array_equal(generator.tokens(), np.asarray(reference["tokens"]))


def test_a_build_the_disk_cannot_hold_fails_at_once_saying_both_numbers(tmp_path, monkeypatch):
    """Before anything is written: a failed manifest naming what the build needs and what is free."""
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 10**8, 10**8))
    params = ort_build.build_params("ort_decoder", MODELS["tiny-llama"], "fp32", "cpu")
    info = ort_build.build(params, tmp_path / "decoder" / "manifest.json")
    assert info["status"] == "failed" and "not enough disk" in info["reason"] and "0 GB free" in info["reason"]
    assert "\n" not in info["reason"] and list((tmp_path / "decoder").iterdir()) == [tmp_path / "decoder" / "manifest.json"]


def test_onnxruntime_genais_graph_failure_above_batch_1_says_why(monkeypatch):
    """The GPU failure (onnxruntime-genai 0.18, CUDA graphs, batch 8) is kept as a failure, with its cause named;
    any other error passes through as it was."""
    class Failing:
        message = "batch_size must be 1 when sequence_length > 1 and past context is given."

        def __init__(self, *args):
            pass

        def generate(self, mark):
            raise RuntimeError(self.message)

    monkeypatch.setattr(ort, "GenAIGenerator", Failing)
    with pytest.raises(RuntimeError) as caught:
        ort.create("ort_genai", None, None, 4, {"cuda_graph": True})
    assert Failing.message in str(caught.value) and ort.GRAPH_BATCH in str(caught.value)
    Failing.message = "out of memory"
    with pytest.raises(RuntimeError, match="^out of memory$"):
        ort.create("ort_genai", None, None, 4, {"cuda_graph": True})


def test_projections_with_a_bias_are_packed_with_one_bias(tmp_path, monkeypatch):
    """Qwen2's Q, K and V projections carry biases: packed, they are one MatMul and one Add of the three biases
    (as onnxruntime-genai's builder writes them), and the graph still computes the model (the build's parity
    check, against biases drawn at random: a built Qwen2's are zeros, which would hide a bias in the wrong
    place)."""
    import torch
    from onnx import numpy_helper

    from infbench.workloads.generate import ort_export

    spec = {"model_type": "qwen2", "overrides": {**MODELS["tiny-llama"]["overrides"]}, "seed": 0}
    model, _ = ort_export.load_fp32(spec, "cpu")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in model.model.layers:
            for projection in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                projection.bias.copy_(torch.randn(projection.bias.shape, generator=generator))
    monkeypatch.setattr(ort_export, "load_fp32", lambda spec, device: (model, 0.0))
    facts = ort_export.build(spec, "cpu", tmp_path, "fp32", parity=ort_build.parity)
    assert facts["fusions"]["packed_attention"] == model.config.num_hidden_layers
    assert facts["parity"]["rel_l2"] <= facts["parity"]["rtol"]
    import onnx

    graph = onnx.load(str(tmp_path / "decoder.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    attention = model.model.layers[0].self_attn
    for node in (n for n in graph.node if n.op_type == "GroupQueryAttention"):
        add = producer[node.input[0]]
        assert add.op_type == "Add" and producer[add.input[0]].op_type == "MatMul"
        assert weights[add.input[1]].shape == (attention.q_proj.out_features + 2 * attention.k_proj.out_features,)
