"""The report rendered from a real CPU run's tables and from synthetic GPU-like tables (some cells host-bound,
some gpu-bound, one shape a tie), without a browser: the answer names what to use in words with display names,
a tie reads "Either A or B", the diagnostics are there (collapsed), the GPU part only where a GPU ran, the
host-bound note comes once, markup in names stays text, and every figure is written."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from infbench import figures, report, tables
from infbench.measure import gpu_busy, spread
from infbench.workloads.generate import tables as generation_tables

BASELINE = {"backend": "eager", "precision": "fp32"}
# A real CPU run of config/tiny.yaml; where it is absent the session's tiny_run fixture makes one.
CPU_RUN_TABLES = Path("/tmp/t1/results/tables")
HOSTILE = "bert<script>alert(1)</script>"


@pytest.fixture(scope="module")
def cpu_tables(request, tmp_path_factory) -> Path:
    """A copy of a real CPU run's tables (never the original: the test may not touch it)."""
    if (CPU_RUN_TABLES / "rounds.csv").exists():
        source = CPU_RUN_TABLES
    else:
        source = request.getfixturevalue("tiny_run") / "results/tables"
    target = tmp_path_factory.mktemp("cpu") / "tables"
    shutil.copytree(source, target)
    return target


# backend, precision → (latency at b1 s16 in ms, GPU busy share at b1 s16, round factors): eager is launch-bound
# at small shapes (host-bound, rounds spread), TensorRT keeps the GPU busy (gpu-bound, rounds agree).
GPU_CELLS = {("eager", "fp32"): (6.0, 0.12, (0.8, 1.0, 1.3)), ("eager", "fp16"): (5.5, 0.09, (0.75, 1.0, 1.4)),
             ("ort-fused", "fp16"): (1.2, 0.62, (0.95, 1.0, 1.06)), ("trt", "fp16"): (1.1, 0.93, (0.99, 1.0, 1.01))}
ENGINES = {"eager": "torch", "ort-fused": "onnxruntime", "trt": "tensorrt"}
SHAPES = [(1, 16), (1, 128), (8, 128)]


def _gpu_frames() -> dict[str, pd.DataFrame]:
    """Every table a GPU run writes, small and made up, with the columns the report reads."""
    cells, rounds = [], []
    for (backend, precision), (ms, share, factors) in GPU_CELLS.items():
        for batch, seq_len in SHAPES:
            scale = batch * seq_len / 16
            median = ms * (1 + 0.1 * scale)
            cell_share = min(0.99, share * (1 + 0.15 * scale))
            key = {"model": HOSTILE, "backend": backend, "engine": ENGINES[backend], "precision": precision,
                   "batch": batch, "seq_len": seq_len}
            medians = [median * f for f in factors]
            cells.append({**key, "environment_id": "e1", "status": "ok", "reason": None, "median_ms": median,
                          "ci_lo_ms": min(medians) * 0.9, "ci_hi_ms": max(medians) * 1.1, "p90_ms": median * 1.1,
                          "p99_ms": median * 1.2, "cv": 0.02, "n": 300, "rounds": len(factors),
                          "between_round_cv": pd.Series(medians).std() / pd.Series(medians).mean(),
                          "round_spread": max(medians) / min(medians), "round_min_ms": min(medians),
                          "round_max_ms": max(medians), "stop_reason": "converged",
                          "gpu_kernel_ms": median * cell_share, "gpu_busy_share": cell_share,
                          "bound": gpu_busy.classify(cell_share), "host_probe_ms": 1.1,
                          "host_probe_spread": 1.3 if cell_share < gpu_busy.HOST_BOUND_BELOW else 1.02,
                          "sequences_per_s": 1000 * batch / median, "tokens_per_s": 1000 * batch * seq_len / median,
                          "accuracy_passed": True, "rel_l2": 1e-3, "max_abs": 1e-3, "cosine": 1.0, "tolerance": 1e-2,
                          "unstable": False, "unstable_why": None, "prepare_s": 2.0, "compile_s": 0.0,
                          "build_s": 30.0 if backend == "trt" else 0.0, "peak_bytes": 1e9, "device_peak_bytes": 2e9,
                          "sm_clock_before": 1980, "sm_clock_after": 1980, "temp_c_after": 50, "power_w_after": 300,
                          "spread_cause": spread.CLOCK if backend == "trt" else spread.NONE,
                          "spread_evidence": "1695-1845 MHz, R2 0.90" if backend == "trt" else "",
                          "device": "NVIDIA H100 80GB HBM3", "options": "{}", "log": "logs/x.log"})
            rounds += [{**key, "session": f"s{batch}-{seq_len}", "round": i, "started_at": "2026-01-01T00:00:00+00:00",
                        "offset_s": 20.0 * i, "position": i, "median_ms": m, "n": 100, "stop_reason": "converged",
                        "host_probe_ms": 1.1, "cpu_mhz": 3000.0, "steal_pct": 0.0, "load1": 1.0}
                       for i, m in enumerate(medians)]
    cells = pd.DataFrame(cells)
    base = cells[(cells["backend"] == "eager") & (cells["precision"] == "fp32")].set_index(["batch", "seq_len"])["median_ms"]
    speedup = cells[[*tables.KEY, "environment_id", "accuracy_passed"]].assign(
        speedup=[base[(b, s)] / m for b, s, m in zip(cells["batch"], cells["seq_len"], cells["median_ms"])])
    speedup = speedup.assign(speedup_lo=speedup["speedup"] * 0.9, speedup_hi=speedup["speedup"] * 1.1,
                             significant=True, paired_rounds=3, method="paired rounds")
    best = []
    for batch, seq_len in SHAPES:
        tie = (batch, seq_len) == (1, 16)  # trt and ort-fused within noise of each other
        best.append({"model": HOSTILE, "batch": batch, "seq_len": seq_len, "backend": "trt", "precision": "fp16",
                     "median_ms": 1.0, "speedup": 5.0, "speedup_lo": 4.5, "speedup_hi": 5.5, "runner_up": "ort-fused fp16",
                     "runner_up_backend": "ort-fused", "runner_up_precision": "fp16",
                     "runner_up_ms": 1.05, "runner_up_ratio": 1.05 if tie else 1.12,
                     "runner_up_ratio_lo": 0.97 if tie else 1.08, "runner_up_ratio_hi": 1.12 if tie else 1.16, "tie": tie,
                     "tie_why": "interval contains 1" if tie else None, "native_backend": "eager",
                     "native_precision": "fp16", "native_ms": 5.5, "native_ratio": 5.5, "native_ratio_lo": 5.0,
                     "native_ratio_hi": 6.0, "verdict": "trt fp16 ≈ ort-fused fp16" if tie else "trt fp16"})
    return {"cells": cells, "rounds": pd.DataFrame(rounds), "speedup": speedup, "best": pd.DataFrame(best),
            "samples": pd.DataFrame(columns=[*tables.KEY, "round", "iteration", "latency_ms"]),
            "environment": pd.DataFrame([{"environment_id": "e1", "torch": "2.5", "device": "NVIDIA H100", "cells": len(cells)}]),
            "roofline": tables.roofline(cells, None, {}), "cost": tables.costs(cells, BASELINE)}


def _write_tables(frames: dict[str, pd.DataFrame], target: Path) -> Path:
    """The frames written as a run's tables directory, so the report reads them back as it reads a real run."""
    target.mkdir(parents=True)
    for name, frame in frames.items():
        frame.to_csv(target / f"{name}.csv", index=False)
    return target


@pytest.fixture(scope="module")
def gpu_tables(tmp_path_factory) -> Path:
    """The synthetic GPU run written as CSV."""
    return _write_tables(_gpu_frames(), tmp_path_factory.mktemp("gpu") / "tables")


def _render(table_dir: Path, out: Path) -> tuple[str, dict[str, Path]]:
    frames = {**tables.read_all(table_dir), **(generation_tables.read_all(table_dir) or {})}
    paths = figures.write_all(frames, BASELINE, out / "figures")
    return report.render(frames, paths, {"baseline": BASELINE, "aggregate": {"practical_margin": 0.05}},
                         out / "index.html"), paths


def _section(html: str, section_id: str) -> str:
    """The page from a section's opening tag (a heading, the answer box or a details block) to the next one."""
    start = re.search(rf'<(h2|section|details)[^>]* id="{section_id}"', html).start()
    following = re.search(r"<(h2|details|section) ", html[start + 1:])
    return html[start:start + 1 + following.start() if following else None]


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_run_answers_first_and_keeps_diagnostics_collapsed(cpu_tables, tmp_path):
    html, paths = _render(cpu_tables, tmp_path)
    assert set(paths) == set(figures.FIGURES) and all(_is_png(p) for p in paths.values())
    answer = _section(html, "answer")
    best = pd.read_csv(cpu_tables / "best.csv")
    assert re.search(r"<strong>(Either )?(PyTorch eager|torch.compile|ONNX Runtime)[^<]*</strong> at ", answer)
    assert re.search(r"\d ms \(95 % interval ±\d+", answer) and "How sure" in answer
    assert "TensorRT: not part of this matrix." in answer  # the tiny config has no TensorRT backend
    assert len(re.findall(r'<li class="(?:lead|tie)">', answer)) == best.assign(  # forward lines
        call=best["verdict"].str.split(" ≈ ").map(lambda p: "|".join(sorted(p)))).groupby("model")["call"].nunique().sum()
    fastest = _section(html, "fastest")
    assert fastest.count("<tr>") == len(best) + 1 and "inductor" not in fastest  # display names, not config keys
    rounds = _section(html, "rounds")
    assert "fresh round" in rounds and re.search(r"timed in \d+(–\d+)? rounds", rounds)
    measured = pd.read_csv(cpu_tables / "cells.csv").query("status == 'ok'")
    assert rounds.count("<tr>") == len(measured) + 1  # one row per measured cell, plus the header
    assert all(f">{h}</th>" in rounds for h in ("Latency (ms)", "Interval (± %)", "Round CV", "Why it spreads"))
    assert 'id="gpu-busy"' not in html and gpu_busy.HOST_BOUND_NOTE not in html  # no GPU, no GPU section
    assert len(re.findall(r"<img ", html)) == len(figures.FIGURES) - 1  # the GPU busy figure is left out
    assert "False" not in _section(html, "cells") and "runner_up_ratio" not in html.split('id="config"')[0]


def test_gpu_run_says_either_for_a_tie_and_lists_host_bound_cells_under_one_note(gpu_tables, tmp_path):
    html, paths = _render(gpu_tables, tmp_path)
    answer = _section(html, "answer")
    assert "<strong>Either TensorRT fp16 or ONNX Runtime fp16</strong> at batch 1 (seq 16)" in answer
    assert "<strong>TensorRT fp16</strong> at batch 1 (seq 128), batch 8 (seq 128)" in answer
    assert "1.12× faster than the runner-up (ONNX Runtime fp16; 95 % interval from 1.08×)" in answer
    assert "Against the best PyTorch option (PyTorch eager fp16): 5.50× faster." in answer
    assert re.search(r"typically ±[\d.]+ % for gpu-bound cells \(\d+\), ±[\d.]+ % for mixed", answer)
    fastest = _section(html, "fastest")
    assert re.search(r"background: ?#fff4d6", fastest) and ">either<" in fastest and ">lead<" in fastest
    busy = _section(html, "gpu-busy")
    assert "<img " in busy and html.count(gpu_busy.HOST_BOUND_NOTE) == 1
    cells = pd.read_csv(gpu_tables / "cells.csv")
    expected = cells[cells["bound"] == "host-bound"]
    assert len(expected) >= 2 and (cells["bound"] == "gpu-bound").any()
    host_bound = busy[busy.index(gpu_busy.HOST_BOUND_NOTE):]
    assert host_bound.count("<tr>") == len(expected) + 1
    assert "PyTorch eager" in host_bound and "TensorRT" not in host_bound
    assert all(f">{h}</th>" in host_bound for h in ("Host probe (ms)", "Host probe max/min", "Round max/min"))
    assert len(re.findall(r"<img ", html)) == len(figures.FIGURES) - 1  # no generation figure: no generation cells
    assert "<script>alert(1)" not in html and "bert&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_gpu_figures_are_drawn_not_placeholders(gpu_tables, tmp_path):
    _, paths = _render(gpu_tables, tmp_path)
    placeholder = tmp_path / "empty.png"
    figures._empty(placeholder, "nothing")
    for name in ("round_spread", "gpu_busy_share", "relative_heatmap", "family_latency"):
        height = matplotlib.image.imread(paths[name]).shape[0]
        assert height > matplotlib.image.imread(placeholder).shape[0] * 1.5, name


def test_figures_hold_long_names(tmp_path):
    """A 100-character model name and a long backend name (issue 29: the legend's layout crashed): every
    figure is still drawn, no wider than the page shows it."""
    frames = _gpu_frames()
    long_model = "m" * 100
    for name in ("cells", "rounds", "speedup", "best"):
        frames[name] = frames[name].assign(model=long_model)
    frames["cells"] = frames["cells"].replace({"backend": {"ort-fused": "onnxruntime-exported-graph-all-optimizations-v2"}})
    paths = figures.write_all(frames, BASELINE, tmp_path, labels={"onnxruntime-exported-graph-all-optimizations-v2": "x" * 60})
    for name, path in paths.items():
        width = matplotlib.image.imread(path).shape[1]
        assert _is_png(path) and width <= 1400, (name, width)


def _order_frames() -> dict[str, pd.DataFrame]:
    """The synthetic GPU run with 20 shuffled rounds per shape in which the GPU-bound cell (trt) is 10 % slower
    whenever ort-fused came earlier in its round: a two-level cell whose level follows the order."""
    frames = _gpu_frames()
    rng = random.Random(3)
    rounds = []
    for batch, seq_len in SHAPES:
        for index in range(20):
            order = list(GPU_CELLS)
            rng.shuffle(order)
            for position, (backend, precision) in enumerate(order):
                slow = backend == "trt" and order.index(("ort-fused", "fp16")) < position
                rounds.append({"model": HOSTILE, "backend": backend, "engine": ENGINES[backend], "precision": precision,
                               "batch": batch, "seq_len": seq_len, "session": f"s{batch}-{seq_len}", "round": index,
                               "started_at": "2026-01-01T00:00:00+00:00", "offset_s": 20.0 * index,
                               "position": position, "median_ms": GPU_CELLS[(backend, precision)][0] * (1.1 if slow else 1.0)
                               * (1 + 0.001 * rng.random()), "n": 100, "stop_reason": "converged"})
    return {**frames, "rounds": pd.DataFrame(rounds)}


def test_gpu_run_names_the_cell_before_the_slow_level(tmp_path, gpu_tables):
    """A GPU-bound cell on two levels, slow whenever ort-fused came earlier in its round: the report says so
    in the rounds diagnostics, with both shares, and names no other cell."""
    html, _ = _render(_write_tables(_order_frames(), tmp_path / "tables"), tmp_path / "out")
    section = _section(html, "rounds")
    named = section[section.index('id="level-order"'):]
    assert re.search(r"3 GPU-bound cells have rounds on two levels \(small CUDA-graph replays\); \d+ % of\s+their 60 windows", named)
    items = re.findall(r"<li>after ([^:]+): (\d+) % on the faster level", named)
    assert [cell for cell, _ in items] == ["ort-fused/fp16"] and int(items[0][1]) == 0
    assert re.search(r"without it before them: 100 %", named)
    # the plain synthetic run: its rounds (3 per cell) form no two levels, so there is nothing to say
    assert 'id="level-order"' not in _section(_render(gpu_tables, tmp_path / "plain")[0], "rounds")
