"""TensorRT / TensorRT-RTX: real engine builds with TensorRT-RTX (it builds without a GPU), the build_engine
rule in the DAG with its invalidation, and everything around the runtime that needs no GPU (IO checks,
buffer sizes, dtype mapping, unavailable reasons). The timed execute path needs a GPU the library accepts."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, snakemake

from infbench import onnx_precision, trt_build
from infbench.engines import ort as ort_engine
from infbench.engines import tensorrt, torch_tensorrt
from infbench.engines.base import CellContext, CellUnusable

rtx = pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX wheels are in requirements.txt")

OPTIONS = {"library": "tensorrt_rtx", "tf32": False, "builder_optimization_level": None, "workspace_gib": None}
PROFILE = trt_build.profile_from_grid([1, 4, 2], [16, 8])


@pytest.fixture(scope="module")
def graphs(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """The tiny model's exported graph and its fp16 / bf16 typed conversions."""
    out = tmp_path_factory.mktemp("graphs")
    exported = out / "exported.onnx"
    shutil.copy(tiny_run / "results/onnx/tiny-bert/exported.onnx", exported)
    paths = {"fp32": exported}
    for precision in ("fp16", "bf16"):
        paths[precision] = out / f"exported_{precision}.onnx"
        onnx_precision.to_typed(exported, paths[precision], precision)
    return paths


def test_profile_spans_the_grid_with_the_middle_as_opt():
    assert PROFILE == {"min": [1, 8], "opt": [2, 16], "max": [4, 16]}
    assert trt_build.in_profile(PROFILE, 4, 8) is None
    assert "outside the engine profile" in trt_build.in_profile(PROFILE, 8, 8)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_rtx_builds_a_real_engine_and_its_plan_reloads(graphs, tmp_path, precision):
    plan = tmp_path / f"{precision}.plan"
    info = trt_build.build(graphs[precision], plan, "tensorrt_rtx", precision, PROFILE, OPTIONS)
    assert info["status"] == "ok", info.get("reason")
    assert info["plan_bytes"] > 100_000 and info["build_seconds"] > 0
    assert info["library_version"] == "1.7.1.116"
    data, sidecar = trt_build.read(plan)
    assert len(data) == info["plan_bytes"] and sidecar == json.loads(json.dumps(info))
    # binding order: the model's inputs as exported, then the output
    assert [(t["name"], t["mode"], t["dtype"]) for t in info["io"]] == [
        ("input_ids", "input", "int64"), ("attention_mask", "input", "int64"),
        ("token_type_ids", "input", "int64"), ("last_hidden_state", "output", "float32")]
    assert info["io"][-1]["shape"] == [-1, -1, 64]
    handling = info["precision_handling"]
    assert handling["typed_graph"] is True and handling["tf32"] is False
    if precision != "fp32":
        assert handling["kept_fp32_ops"] == ["LayerNormalization", "Softmax"]


def test_typed_graphs_keep_layernorm_and_softmax_in_fp32(graphs):
    import onnx

    for precision, elem in (("fp16", onnx.TensorProto.FLOAT16), ("bf16", onnx.TensorProto.BFLOAT16)):
        model = onnx.load(str(graphs[precision]))
        types_of = {t.name: t.data_type for t in model.graph.initializer}
        assert elem in set(types_of.values())
        assert {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16} - {elem} not in set(types_of.values())
        produced_by = {o: n for n in model.graph.node for o in n.output}
        for node in model.graph.node:
            if node.op_type in ("LayerNormalization", "Softmax"):
                source = produced_by[node.input[0]]
                assert source.op_type == "Cast" and source.attribute[0].i == onnx.TensorProto.FLOAT, node.name


def test_bf16_bits_round_to_nearest_even():
    import torch

    values = np.array([1.0, -2.5, 3.14159, 1e-30, 65504.0, 1.00390625, 1.01171875], dtype=np.float32)
    expected = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert (onnx_precision.bf16_bits(values) == expected).all()


def test_a_tampered_plan_is_refused(graphs, tmp_path):
    plan = tmp_path / "fp32.plan"
    trt_build.build(graphs["fp32"], plan, "tensorrt_rtx", "fp32", PROFILE, OPTIONS)
    data = bytearray(plan.read_bytes())
    data[len(data) // 2] ^= 0xFF
    plan.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its sidecar"):
        trt_build.read(plan)


def test_a_missing_library_is_an_unavailable_build_not_a_crash(graphs, tmp_path, monkeypatch):
    def missing(library):
        raise ImportError(f"{library} not importable (tensorrt: No module named 'tensorrt')")

    monkeypatch.setattr(trt_build, "import_library", missing)
    info = trt_build.build(graphs["fp32"], tmp_path / "x.plan", "tensorrt", "fp16", PROFILE, OPTIONS)
    assert info["status"] == "unavailable" and "not importable" in info["reason"]
    assert (tmp_path / "x.plan").read_bytes() == b""
    context = CellContext(Path("."), None, {}, "fp16", {"library": "tensorrt"}, "cuda", 1, tmp_path / "x.plan")
    with pytest.raises(CellUnusable) as error:
        tensorrt.prepare(context)
    assert error.value.status == "unavailable" and "not importable" in str(error.value)


class FakeLayer:
    def __init__(self, kind):
        self.type = f"LayerType.{kind}"
        self.num_outputs = 1
        self.precision = None
        self.output_types = {}

    def set_output_type(self, index, dtype):
        self.output_types[index] = dtype


def test_tensorrt_fp16_constrains_normalization_and_softmax_to_fp32():
    """The weakly typed TensorRT path (no TensorRT here): the flags and per-layer constraints it sets."""
    fake = types.SimpleNamespace(BuilderFlag=types.SimpleNamespace(TF32="TF32", FP16="FP16", BF16="BF16",
                                                                   OBEY_PRECISION_CONSTRAINTS="OBEY"),
                                 float32="float32")
    layers = [FakeLayer(k) for k in ("MATRIX_MULTIPLY", "NORMALIZATION", "SOFTMAX", "NORMALIZATION", "GATHER")]
    network = types.SimpleNamespace(num_layers=len(layers), get_layer=layers.__getitem__)
    flags = {"TF32": True}
    config = types.SimpleNamespace(clear_flag=lambda f: flags.update({f: False}), set_flag=lambda f: flags.update({f: True}))
    done = trt_build.configure_precision(fake, network, config, "tensorrt", "fp16", {"tf32": False})
    assert flags == {"TF32": False, "FP16": True, "OBEY": True}
    assert done["kept_fp32_layers"] == {"NORMALIZATION": 2, "SOFTMAX": 1}
    assert [layer.precision for layer in layers] == [None, "float32", "float32", "float32", None]
    assert layers[1].output_types == {0: "float32"}
    flags.clear()
    done = trt_build.configure_precision(fake, network, config, "tensorrt", "fp32", {"tf32": True})
    assert flags == {} and done == {"tf32": True, "typed_graph": False}


def test_dtype_mapping_and_buffer_sizes():
    assert trt_build.dtype_name(rtx.float16) == "float16"
    assert trt_build.dtype_name(rtx.bfloat16) == "bfloat16"
    assert trt_build.dtype_name(rtx.int64) == "int64"
    assert trt_build.dtype_name(rtx.float32) == "float32"
    with pytest.raises(ValueError, match="no buffer mapping"):
        trt_build.dtype_name(rtx.fp8)
    output = {"name": "last_hidden_state", "mode": "output", "dtype": "float16", "shape": [-1, -1, 768]}
    assert trt_build.concrete_shape(output, 4, 128) == [4, 128, 768]
    assert trt_build.buffer_bytes(output, 4, 128) == 4 * 128 * 768 * 2
    ids = {"name": "input_ids", "mode": "input", "dtype": "int64", "shape": [-1, -1]}
    assert trt_build.buffer_bytes(ids, 8, 16) == 8 * 16 * 8


class FakeEngine:
    """The part of ICudaEngine the runtime reads, for binding-order tests."""

    def __init__(self, tensors):
        self.tensors = tensors
        self.num_io_tensors = len(tensors)

    def get_tensor_name(self, index):
        return self.tensors[index][0]

    def get_tensor_mode(self, name):
        return dict((n, m) for n, m, _ in self.tensors)[name]

    def get_tensor_dtype(self, name):
        return dict((n, d) for n, _, d in self.tensors)[name]


def test_engine_io_is_checked_against_the_build():
    built = [{"name": "input_ids", "mode": "input", "dtype": "int64", "shape": [-1, -1]},
             {"name": "attention_mask", "mode": "input", "dtype": "int64", "shape": [-1, -1]},
             {"name": "out", "mode": "output", "dtype": "float32", "shape": [-1, -1, 64]}]
    engine = FakeEngine([("attention_mask", rtx.TensorIOMode.INPUT, rtx.int64),
                         ("input_ids", rtx.TensorIOMode.INPUT, rtx.int64),
                         ("out", rtx.TensorIOMode.OUTPUT, rtx.float32)])
    io = tensorrt.engine_io(rtx, engine)
    assert [t["name"] for t in io] == ["attention_mask", "input_ids", "out"]  # the engine's order
    tensorrt.check_io(io, built, ["input_ids", "attention_mask"])
    with pytest.raises(ValueError, match="not the model's inputs"):
        tensorrt.check_io(io, built, ["input_ids", "attention_mask", "token_type_ids"])
    half = FakeEngine([(n, m, rtx.float16 if n == "out" else d) for n, m, d in engine.tensors])
    with pytest.raises(ValueError, match="stale or foreign plan"):
        tensorrt.check_io(tensorrt.engine_io(rtx, half), built, ["input_ids", "attention_mask"])


def test_unavailable_reasons(monkeypatch):
    import torch

    assert tensorrt.supports("fp16", "cpu") == "TensorRT runs on CUDA devices only"
    assert tensorrt.supports("bf16", "cuda") is None
    assert "not importable" in tensorrt.available("cuda", {"library": "tensorrt"})  # no TensorRT here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    assert tensorrt.available("cuda", {"library": "tensorrt_rtx"}) == (
        "TensorRT-RTX does not run on compute capability 9.0 (Hopper data-centre GPUs)")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 9))
    assert tensorrt.available("cuda", {"library": "tensorrt_rtx"}) is None
    assert torch_tensorrt.supports("fp32", "cpu") == "Torch-TensorRT runs on CUDA devices only"
    assert "torch_tensorrt not importable" in torch_tensorrt.available("cuda", {})


def test_ort_tensorrt_provider_gets_explicit_profiles_and_a_cache():
    inputs = {"input_ids": np.zeros((1, 8), np.int64), "attention_mask": np.zeros((1, 8), np.int64)}
    options = {"provider": "tensorrt", "profile": PROFILE, "engine_cache_dir": "results/cache/ort-trt/m/b/fp16"}
    context = CellContext(Path("."), None, inputs, "fp16", options, "cuda", 1)
    (name, trt_options), (cuda, cuda_options) = ort_engine.providers(context)
    assert (name, cuda) == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert trt_options["trt_profile_min_shapes"] == "input_ids:1x8,attention_mask:1x8"
    assert trt_options["trt_profile_opt_shapes"] == "input_ids:2x16,attention_mask:2x16"
    assert trt_options["trt_profile_max_shapes"] == "input_ids:4x16,attention_mask:4x16"
    assert trt_options["trt_fp16_enable"] is True and trt_options["trt_engine_cache_enable"] is True
    assert ort_engine.graph(options, "fp16") == "exported"
    assert "TensorrtExecutionProvider not in this onnxruntime build" in ort_engine.available("cuda", options)


def trt_config() -> dict:
    config = yaml.safe_load((REPO / "config/tiny.yaml").read_text())
    config["device"] = "cuda"  # the DAG of a GPU host; only engine targets are built here
    config["precisions"] = ["fp32", "fp16", "bf16"]
    config["backends"] = {
        "eager": {"engine": "torch"},
        "trt-rtx": {"engine": "tensorrt", "options": {"library": "tensorrt_rtx"}},
        "trt-rtx-shape": {"engine": "tensorrt", "options": {"library": "tensorrt_rtx", "per_shape": True},
                          "precisions": ["fp16"]},
        "trt": {"engine": "tensorrt", "precisions": ["fp16"]},
    }
    return config


def dry_jobs(workdir: Path, config: dict, *targets: str) -> dict[str, list[str]]:
    """rule → its planned outputs (plans and graphs only, not their sidecars)."""
    from test_workflow import dry_run

    (workdir / "changed.yaml").write_text(yaml.safe_dump(config))
    jobs = dry_run(workdir, None, *targets, "--configfile", "changed.yaml")  # --configfile takes all after it
    return {rule: [p for p in outputs if not p.endswith(".json")] for rule, outputs in jobs.items()}


def test_build_engine_jobs_in_the_dag_and_their_invalidation(tiny_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True, ignore=shutil.ignore_patterns("cells", "cache", "*.sock"))
    config = trt_config()
    jobs = dry_jobs(workdir, config)
    assert sorted(jobs["build_engine"]) == sorted(
        [f"results/engines/tiny-bert/trt-rtx/{p}/grid.plan" for p in ("fp32", "fp16", "bf16")]
        + [f"results/engines/tiny-bert/trt-rtx-shape/fp16/b1_s{s}.plan" for s in (8, 16)]
        + ["results/engines/tiny-bert/trt/fp16/grid.plan"])
    assert sorted(jobs["convert_precision"]) == ["results/onnx/tiny-bert/exported_bf16.onnx",
                                                 "results/onnx/tiny-bert/exported_fp16.onnx"]
    targets = [p for p in jobs["build_engine"] if "/trt/" not in p]
    (workdir / "changed.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, *targets, "--configfile", "changed.yaml")  # real builds, on this CPU machine
    for plan in targets:
        info = json.loads((workdir / plan).with_suffix(".json").read_text())
        assert info["status"] == "ok" and (workdir / plan).stat().st_size == info["plan_bytes"]
    shape = json.loads((workdir / "results/engines/tiny-bert/trt-rtx-shape/fp16/b1_s16.json").read_text())
    assert shape["profile"] == {"min": [1, 16], "opt": [1, 16], "max": [1, 16]}

    assert dry_jobs(workdir, config, *targets) == {}
    # a runtime option reruns the cells, never the build
    config["backends"]["trt-rtx"]["options"]["cuda_graph"] = True
    jobs = dry_jobs(workdir, config)
    assert not [p for p in jobs.get("build_engine", []) if p in targets]
    # a new sequence length widens the grid profile: those engines rebuild; per-shape engines only gain one
    config["seq_lens"].append(32)
    jobs = dry_jobs(workdir, config, *targets, "results/engines/tiny-bert/trt-rtx-shape/fp16/b1_s32.plan")
    assert sorted(jobs["build_engine"]) == sorted(
        [f"results/engines/tiny-bert/trt-rtx/{p}/grid.plan" for p in ("fp32", "fp16", "bf16")]
        + ["results/engines/tiny-bert/trt-rtx-shape/fp16/b1_s32.plan"])
