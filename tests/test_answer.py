"""The answer-first report's pieces, without a run: the tie rule with the practical margin, the best PyTorch
option beside the winner, display names and families, number formatting, each cell's own memory, and a roofline
that never puts a cell above its floor."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_tables import BASELINE, measured

from infbench import answer, names, report, roofline, tables
from infbench.measure import memory


def _engine(record: dict, engine: str) -> dict:
    record["key"]["engine"] = engine
    return record


def test_a_lead_below_the_practical_margin_is_a_tie_and_a_larger_one_is_not():
    # paired rounds share the host's drift, so a 3 % or 8 % lead is statistically clear: only the margin decides
    recs = [measured("eager", "fp32", 10.0, seed=1), _engine(measured("ort", "fp16", 1.0, seed=2), "onnxruntime"),
            measured("compiled", "fp16", 1.03, seed=3)]
    best = tables.best_per_shape(recs, tables.speedups(recs, BASELINE), practical_margin=0.05).iloc[0]
    assert best["backend"] == "ort" and bool(best["tie"]) and best["tie_why"] == "lead below 5 %"
    assert best["runner_up_ratio_lo"] > 1.0  # not a statistical tie: the margin made it one
    assert best["verdict"] == "ort fp16 ≈ compiled fp16 (lead below 5 %)"
    recs[2] = measured("compiled", "fp16", 1.08, seed=3)
    best = tables.best_per_shape(recs, tables.speedups(recs, BASELINE), practical_margin=0.05).iloc[0]
    assert not bool(best["tie"]) and pd.isna(best["tie_why"]) and best["verdict"] == "ort fp16"
    # margin 0: the statistical test alone, as before
    recs[2] = measured("compiled", "fp16", 1.03, seed=3)
    assert not bool(tables.best_per_shape(recs, tables.speedups(recs, BASELINE), 0.0).iloc[0]["tie"])


def test_an_interval_containing_one_is_a_tie_whatever_the_margin():
    ratio = {"ratio": 1.2, "lo": 0.95, "hi": 1.5}
    assert tables.tie_why(ratio, 0.0) == "interval contains 1"
    assert tables.tie_why({"ratio": 1.2, "lo": 1.1, "hi": 1.3}, 0.25) == "lead below 25 %"
    assert tables.tie_why({"ratio": 1.2, "lo": 1.1, "hi": 1.3}, 0.05) is None


def test_best_names_the_fastest_pytorch_option_and_its_ratio():
    recs = [measured("eager", "fp32", 10.0, seed=1), _engine(measured("ort", "fp16", 1.0, seed=2), "onnxruntime"),
            _engine(measured("ort2", "fp16", 1.5, seed=4), "onnxruntime"), measured("compiled", "fp16", 2.0, seed=3)]
    best = tables.best_per_shape(recs, tables.speedups(recs, BASELINE), 0.05).iloc[0]
    assert (best["native_backend"], best["native_precision"]) == ("compiled", "fp16")
    assert best["native_ratio"] == pytest.approx(2.0, rel=0.02) and best["native_ratio_lo"] <= best["native_ratio"]
    assert (best["runner_up_backend"], best["runner_up_precision"]) == ("ort2", "fp16")
    only_native = tables.best_per_shape(recs[:1], tables.speedups(recs[:1], BASELINE), 0.05).iloc[0]
    assert only_native["native_backend"] == "eager" and only_native["native_ratio"] == 1.0


@pytest.mark.parametrize("engine, options, expected", [
    ("torch", {}, "PyTorch eager"),
    ("torch", {"cuda_graph": True}, "PyTorch eager + CUDA graphs"),
    ("torch_compile", {"mode": "default"}, "torch.compile"),
    ("torch_compile", {"mode": "reduce-overhead"}, "torch.compile reduce-overhead"),
    ("torch_compile", {"mode": "default", "dynamic": True}, "torch.compile dynamic"),
    ("aot_inductor", {"dynamic": True}, "AOTInductor dynamic"),
    ("onnxruntime", {"graph": "exported"}, "ONNX Runtime"),
    ("onnxruntime", {"graph": "optimized", "cuda_graph": True}, "ONNX Runtime fused + CUDA graphs"),
    ("onnxruntime", {"provider": "tensorrt"}, "ONNX Runtime TensorRT EP"),
    ("tensorrt", {"library": "tensorrt_rtx"}, "TensorRT-RTX"),
    ("torch_tensorrt", {}, "Torch-TensorRT"),
])
def test_display_names_follow_engine_and_options(engine, options, expected):
    assert names.display_name(engine, options) == expected
    assert names.display_name(engine, options, label="mine") == "mine"


def test_families_group_what_a_user_chooses_between():
    assert names.family("torch_compile") == names.family("aot_inductor") == "PyTorch"
    assert names.family("onnxruntime", {"provider": "cuda"}) == "ONNX Runtime"
    assert names.family("onnxruntime", {"provider": "tensorrt"}) == names.family("torch_tensorrt") == "TensorRT"
    cells = pd.DataFrame([{"backend": "inductor-cudagraphs", "engine": "torch_compile",
                           "options": json.dumps({"mode": "reduce-overhead"})},
                          {"backend": "x", "engine": "onnxruntime", "options": "{}"}])
    catalogue = names.catalogue(cells, {"x": "my ORT"})
    named = names.with_names(pd.DataFrame({"backend": ["inductor-cudagraphs", "x", "gone"]}), catalogue)
    assert named["display"].tolist() == ["torch.compile reduce-overhead", "my ORT", "gone"]
    assert named["family"].tolist() == ["PyTorch", "ONNX Runtime", "other"]


def test_numbers_are_formatted_by_type():
    assert [answer.ms(v) for v in (0.4589957, 0.5, 2.3045, 8.2848, 123.4, None)] == \
        ["0.459", "0.500", "2.30", "8.28", "123", "–"]
    assert answer.times(1.50873) == "1.51×" and answer.times(float("nan")) == "–"
    frame = pd.DataFrame({"backend": ["a"], "median_ms": [0.4589957], "accuracy_passed": [True], "tie": [False],
                          "break_even_requests": [12345.6], "backend_peak_gib": [1.23456], "cv": [0.123456]})
    html = report.styled(frame)
    for text in (">Latency (ms)</th>", ">0.459<", ">yes<", ">no<", ">12,346<", ">Peak memory (GiB)</th>", ">1.23<",
                 ">0.123<"):
        assert text in html, text
    assert "True" not in html and "False" not in html


def test_shapes_are_described_in_words():
    assert answer.shapes_text([(1, 16), (1, 128), (8, 16)], every=9) == "batch 1 (seq 16, 128), batch 8 (seq 16)"
    assert answer.shapes_text([(1, 16), (8, 16)], every=2) == "every shape measured"


def test_the_banner_appears_only_for_useless_intervals():
    cells = pd.DataFrame({"status": ["ok"] * 3, "median_ms": [1.0, 2.0, 3.0], "rounds": [3] * 3,
                          "ci_lo_ms": [0.9, 1.8, 2.7], "ci_hi_ms": [1.1, 2.2, 3.3]})
    assert answer.banner(cells) is None
    wide = cells.assign(ci_lo_ms=cells["median_ms"] * 0.2, ci_hi_ms=cells["median_ms"] * 3)
    assert "cannot rank" in answer.banner(wide)
    assert "round(s)" in answer.banner(cells.assign(rounds=1))


def test_each_cell_measures_its_own_memory_on_the_cpu():
    tracker = memory.Tracker("torch", "cpu")
    tracker.start()
    held = np.ones(32 * 2**20 // 8)  # 32 MiB kept by the "cell"
    held[::512] = 2.0  # touched, so resident
    tracker.prepared()
    tracker.call(lambda: np.ones(64 * 2**20 // 8).sum())  # a transient of 64 MiB, freed after the call
    out = tracker.record()
    assert out["backend_method"] == memory.RSS
    assert 24 * 2**20 <= out["backend_held_bytes"] <= 64 * 2**20, out
    assert out["backend_peak_bytes"] >= out["backend_held_bytes"]
    assert memory.method("onnxruntime", "cuda") == memory.NVML
    assert memory.method("torch_compile", "cuda") == memory.TORCH_ALLOCATOR
    del held


def test_a_cell_faster_than_a_measured_peak_raises_it():
    peaks = {"matmul_flops_per_s": {"fp32": 1e9}, "copy_bytes_per_s": 1e9}
    raised, which = roofline.raised_peaks(peaks, [("fp32", 2e9, 5e8), ("fp32", 5e8, 3e9)])
    assert raised["matmul_flops_per_s"]["fp32"] == 2e9 and raised["copy_bytes_per_s"] == 3e9
    assert which == ["copy", "matmul fp32"]
    same, none = roofline.raised_peaks(peaks, [("fp32", 5e8, 5e8)])
    assert same == peaks and none == []
