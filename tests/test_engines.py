"""Engines on the tiny model built by the real workflow run (no mocks of the libraries themselves)."""

from pathlib import Path

import numpy as np
import pytest

from infbench import artifacts, cell, engines
from infbench.engines.base import CellContext
from infbench.measure.timing import TimingPolicy

QUICK = TimingPolicy(warmup_s=0.0, min_iters=3, max_iters=20, budget_s=0.2, target_ci_rel_width=0.5)


def spec(run_dir: Path, backend: str, engine: str, precision="fp32", options=None, graph=None, seq_len=8):
    return cell.CellSpec(
        key={"model": "tiny-bert", "backend": backend, "engine": engine, "precision": precision, "batch": 1,
             "seq_len": seq_len},
        options=options or {},
        model_dir=run_dir / "results/models/tiny-bert",
        graph_path=run_dir / f"results/onnx/tiny-bert/{graph}.onnx" if graph else None,
        reference=run_dir / f"results/reference/tiny-bert/b1_s{seq_len}.npz",
        device="cpu", threads=1, policy=QUICK, tolerance=1e-4,
    )


def context(run_dir: Path, seq_len=8, options=None, graph=None) -> CellContext:
    s = spec(run_dir, "x", "torch", options=options, graph=graph, seq_len=seq_len)
    manifest = artifacts.read_manifest(s.model_dir)
    inputs, _ = artifacts.load_reference(s.reference, manifest["input_names"])
    return CellContext(s.model_dir, s.graph_path, inputs, "fp32", options or {}, "cpu", 1)


def test_registry_names_every_configurable_engine():
    import yaml

    schema = yaml.safe_load((Path(__file__).parents[1] / "config/schema.yaml").read_text())
    engine_enum = schema["properties"]["backends"]["additionalProperties"]["properties"]["engine"]["enum"]
    assert sorted(engine_enum) == sorted(engines.ENGINES)
    with pytest.raises(KeyError, match="unknown engine"):
        engines.get("tensorflow")


def test_eager_cell_is_ok_and_accurate(tiny_run):
    record = cell.run(spec(tiny_run, "eager", "torch"))
    assert record["status"] == "ok", record["reason"]
    assert record["accuracy"]["passed"] and record["accuracy"]["rel_l2"] < 1e-5
    assert record["timing"]["n"] == sum(len(r["samples_ms"]) for r in record["timing"]["rounds"]) >= 3
    assert record["device"]["threads"] == 1
    assert record["env"]["torch"] and record["env"]["onnxruntime"]


def test_compiled_cell_records_compile_counters(tiny_run):
    record = cell.run(spec(tiny_run, "inductor", "torch_compile", options={"mode": "default"}))
    assert record["status"] == "ok", record["reason"]
    prepare = record["prepare"]
    assert prepare["graphs"] >= 1 and prepare["compile_seconds"] > 0
    assert prepare["recompiles"] == 0 and prepare["fallback"] is False
    assert prepare["compiled_runs"] >= record["timing"]["n"]
    assert prepare["graph_breaks"] == 0


def _limit_name():
    import torch._dynamo.config as dynamo_config

    return "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"


def test_recompile_limit_fallback_is_detected_not_timed(tiny_run):
    """Force dynamo past its recompile limit: the eager fallback must be caught, not reported as compiled."""
    import torch
    import torch._dynamo

    from infbench.engines import torch_compile

    runner = torch_compile.prepare(context(tiny_run, seq_len=8))
    assert runner.verify() is None
    with torch._dynamo.config.patch(**{_limit_name(): 1}):
        other = context(tiny_run, seq_len=16)
        runner.tensors = tuple(torch.from_numpy(a) for a in other.inputs.values())
        runner.run()  # a new static shape: over the limit, dynamo runs it eagerly
        reason = runner.verify()
    torch._dynamo.reset()  # dynamo now skips this frame for the process: clean up for the tests that follow
    assert reason is not None and "eager fallback" in reason
    assert runner.prepare["fallback"] is True


def test_recompile_inside_timed_region_is_detected(tiny_run):
    import torch

    from infbench.engines import torch_compile

    runner = torch_compile.prepare(context(tiny_run, seq_len=8))
    other = context(tiny_run, seq_len=16)
    runner.tensors = tuple(torch.from_numpy(a) for a in other.inputs.values())
    runner.run()
    reason = runner.verify()
    assert reason is not None and "recompile" in reason
    assert runner.prepare["recompiles"] == 1


@pytest.mark.parametrize("graph", ["exported", "optimized"])
def test_ort_io_binding_writes_the_preallocated_buffer(tiny_run, graph):
    import onnxruntime as ort

    from infbench.engines import ort as ort_engine

    ctx = context(tiny_run, graph=graph, options={"graph": graph})
    runner = ort_engine.prepare(ctx)
    buffer = runner.out.data_ptr()
    runner.run()
    assert runner.out.data_ptr() == buffer  # the output lands in the buffer bound once, not a new allocation
    assert runner.prepare["providers"][0] == "CPUExecutionProvider"
    plain = ort.InferenceSession(str(ctx.graph_path), providers=["CPUExecutionProvider"]).run(None, ctx.inputs)[0]
    np.testing.assert_allclose(runner.output(), plain, rtol=1e-5, atol=1e-6)


def test_fused_graph_really_has_fused_attention(tiny_run):
    import json

    info = json.loads((tiny_run / "results/onnx/tiny-bert/optimized.json").read_text())
    assert info["fused_ops"].get("Attention", 0) + info["fused_ops"].get("MultiHeadAttention", 0) == 2
    assert info["fused_ops"]["SkipLayerNormalization"] >= 2
    exported = json.loads((tiny_run / "results/onnx/tiny-bert/exported.json").read_text())
    assert "Attention" not in exported["fused_ops"]
    assert all(check["rel_l2"] < 1e-4 for check in info["parity"] + exported["parity"])


def test_unsupported_precision_is_a_record_not_an_error(tiny_run):
    record = cell.run(spec(tiny_run, "ort", "onnxruntime", precision="bf16", graph="exported"))
    assert record["status"] == "unsupported"
    assert "bf16" in record["reason"]
    assert record["timing"] is None


def test_unavailable_engine_is_a_record(tiny_run, monkeypatch):
    from infbench.engines import ort as ort_engine

    monkeypatch.setattr(ort_engine, "available", lambda device, options: "onnxruntime not importable: test")
    record = cell.run(spec(tiny_run, "ort", "onnxruntime", graph="exported"))
    assert record["status"] == "unavailable" and record["reason"] == "onnxruntime not importable: test"


def test_engine_crash_becomes_a_failed_record(tiny_run, monkeypatch):
    from infbench.engines import torch_eager

    def boom(context):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(torch_eager, "prepare", boom)
    record = cell.run(spec(tiny_run, "eager", "torch"))
    assert record["status"] == "failed"
    assert record["reason"] == "RuntimeError: out of memory"


def test_ort_reads_the_graph_of_its_precision():
    from infbench.engines import ort as ort_engine

    assert ort_engine.graph({"graph": "optimized"}, "fp32") == "optimized"
    assert ort_engine.graph({"graph": "optimized"}, "fp16") == "optimized_fp16"
    assert ort_engine.supports("fp16", "cuda") is None
    assert "fp16" in ort_engine.supports("fp16", "cpu")
    cuda = ort_engine.providers(CellContext(Path("."), None, {}, "fp16", {"cuda_graph": True}, "cuda", 1))
    assert cuda == [("CUDAExecutionProvider", {"device_id": 0, "enable_cuda_graph": "1", "use_tf32": "0"})]


def test_fp16_conversion_keeps_io_types_and_fusions(tiny_run, tmp_path):
    import json

    import onnxruntime as ort

    from infbench import onnx_precision

    source = tiny_run / "results/onnx/tiny-bert/optimized.onnx"
    info = onnx_precision.to_typed(source, tmp_path / "optimized_fp16.onnx", "fp16")
    assert info["fused_ops"]["Attention"] == 2
    session = ort.InferenceSession(str(tmp_path / "optimized_fp16.onnx"), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(int64)"] * 3
    assert session.get_outputs()[0].type == "tensor(float)"
    assert json.loads((tmp_path / "optimized_fp16.json").read_text())["source"] == "optimized.onnx"


def test_fp16_conversion_never_serializes_the_weights_for_shape_inference(tiny_run, tmp_path, monkeypatch):
    """ONNX's shape inference serializes the model it is given, which fails above protobuf's 2 GB (a 7B export):
    the conversion infers types on the graph without its weights' bytes, then converts the whole graph."""
    import math

    import onnx

    from infbench import onnx_precision

    source = tiny_run / "results/onnx/tiny-bert/optimized.onnx"
    weights = sum(len(t.raw_data) for t in onnx.load(str(source)).graph.initializer)
    seen, infer = [], onnx.shape_inference.infer_shapes

    def spy(model, *args, **kwargs):  # the weights' bytes (small tensors, shapes and axes, keep their values)
        seen.append(sum(len(t.raw_data) for t in model.graph.initializer if math.prod(t.dims) >= 1024))
        return infer(model, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", spy)
    info = onnx_precision.to_typed(source, tmp_path / "optimized_fp16.onnx", "fp16")
    assert weights > 0 and seen == [0] and info["fused_ops"]["Attention"] == 2
    converted = onnx.load(str(tmp_path / "optimized_fp16.onnx"))
    assert sum(len(t.raw_data) for t in converted.graph.initializer) > weights / 3  # the weights came through


def test_fp16_conversion_is_onnxruntimes_value_for_value(tiny_run, tmp_path):
    """to_typed's faster clamp and header-only type inference change nothing: the graph, its value types and its
    weights are what ONNX Runtime's converter gives; converting again into the same file does not grow its data."""
    import numpy as np
    import onnx
    from onnxruntime.transformers import float16

    from infbench import onnx_precision

    edge = np.array([0, -0.0, 1e-9, -1e-9, 5.96e-08, -5.96e-08, 1e5, -1e5, 65504, -65504, np.inf, -np.inf,
                     np.nan, 1.0, -2.5], np.float32)
    values = np.concatenate([edge, np.random.default_rng(0).standard_normal(10_000).astype(np.float32) * 1e-6])
    assert np.array_equal(onnx_precision.clamped_float16(values).view(np.uint16),
                          float16.convert_np_to_float16(values).view(np.uint16))
    source = tiny_run / "results/onnx/tiny-bert/optimized.onnx"
    out = tmp_path / "fp16.onnx"
    onnx_precision.to_typed(source, out, "fp16", external_data=True)
    size = (tmp_path / "fp16.onnx.data").stat().st_size
    onnx_precision.to_typed(source, out, "fp16", external_data=True)
    assert (tmp_path / "fp16.onnx.data").stat().st_size == size
    ours = onnx.load(str(out))
    blocked = list(float16.DEFAULT_OP_BLOCK_LIST) + list(onnx_precision.KEEP_FP32_OPS)
    theirs = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True, op_block_list=blocked)
    assert sorted((t.name, t.data_type, t.raw_data) for t in ours.graph.initializer) == \
        sorted((t.name, t.data_type, t.raw_data) for t in theirs.graph.initializer)
    assert sorted(n.op_type for n in ours.graph.node) == sorted(n.op_type for n in theirs.graph.node)


def test_missing_attention_fusion_is_an_error(tiny_run):
    from infbench import fusions

    with pytest.raises(ValueError, match="expected 2 fused attention ops"):
        fusions.require_attention_fusion({"SkipLayerNormalization": 4}, tiny_run / "results/models/tiny-bert")
    fusions.require_attention_fusion({"Attention": 2}, tiny_run / "results/models/tiny-bert")


def test_nvml_absence_is_data_not_a_crash(monkeypatch):
    import sys

    from infbench import environment

    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert environment.nvml_sample() == {"nvml": "nvidia-ml-py not installed"}
    device = environment.cuda_device()
    assert device["kind"] == "cuda" and device["sm_clock_mhz"] is None
    merged = environment.before_after({"sm_clock_mhz": 1000, "temp_c": 40}, {"sm_clock_mhz": 900})
    assert merged["sm_clock_mhz"] == [1000, 900] and merged["temp_c"] == [40, None]


def test_accuracy_reports_fp32_and_fp64_references():
    from infbench import accuracy

    ref = np.linspace(1, 2, 64).reshape(2, 32)
    result = accuracy.judge(ref * (1 + 1e-3), {"fp32": ref.astype(np.float32), "fp64": ref}, tolerance=1e-2)
    assert result["passed"] and result["rel_l2"] == pytest.approx(1e-3, rel=1e-3)
    assert result["fp64"]["rel_l2"] == pytest.approx(1e-3, rel=1e-6)
    bad = accuracy.judge(np.full_like(ref, np.nan), {"fp32": ref}, tolerance=1.0)
    assert not bad["passed"] and not bad["finite"]


def test_output_is_preallocated_from_the_graph_dims_without_a_run(tiny_run):
    """With ORT CUDA graphs the first run is the capture: the output buffer must exist before it."""
    import onnxruntime as ort

    from infbench.engines import ort as ort_engine

    ctx = context(tiny_run, seq_len=16, graph="optimized")
    session = ort.InferenceSession(str(ctx.graph_path), providers=["CPUExecutionProvider"])
    assert ort_engine.output_shape(session, ctx.inputs) == [1, 16, 64]

    class NoPlainRun:
        """The session, except that an unbound ``run`` (which a CUDA graph would capture) is an error."""

        def __getattr__(self, name):
            if name == "run":
                raise AssertionError("OrtRunner ran the session before binding its output")
            return getattr(session, name)

    runner = ort_engine.OrtRunner(NoPlainRun(), ctx, {})
    runner.run()
    np.testing.assert_allclose(runner.output(), session.run(None, ctx.inputs)[0], rtol=1e-5, atol=1e-6)


def test_cuda_provider_is_true_fp32_unless_tf32_is_asked():
    from infbench.engines import ort as ort_engine

    fp32 = ort_engine.providers(CellContext(Path("."), None, {}, "fp32", {}, "cuda", 1))
    assert fp32[0][1]["use_tf32"] == "0"
    tf32 = ort_engine.providers(CellContext(Path("."), None, {}, "fp32", {"tf32": True}, "cuda", 1))
    assert tf32[0][1]["use_tf32"] == "1"


def test_a_failed_engine_build_gives_its_cells_the_build_reason(tiny_run, monkeypatch, tmp_path):
    """A cell of an engine whose build failed records the build's status and reason (not a generic crash)."""
    from infbench import trt_build
    from infbench.engines import tensorrt

    plan = tmp_path / "grid.plan"
    trt_build._write(plan, b"", {"status": "failed", "reason": "ONNX parser: unsupported op X"})
    monkeypatch.setattr(tensorrt, "supports", lambda precision, device: None)
    monkeypatch.setattr(tensorrt, "available", lambda device, options: None)
    cell_spec = spec(tiny_run, "trt", "tensorrt")
    cell_spec.engine_path = plan
    record = cell.run(cell_spec)
    assert record["status"] == "failed"
    assert record["reason"] == "engine build failed: ONNX parser: unsupported op X"
