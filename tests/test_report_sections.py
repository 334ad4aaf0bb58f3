"""The report's verdict, reproducibility (rounds) and GPU busy share sections, rendered from a real CPU run's
tables and from synthetic GPU-like tables (some cells host-bound, some gpu-bound, one shape a tie), without a
browser: the sections and their ids are there, a tie names both backends, the host-bound note comes once above
the host-bound cells, markup in names stays text, and every figure is written."""

from __future__ import annotations

import random
import re
import shutil
from collections import namedtuple
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from infbench import figures, report, tables
from infbench.measure import gpu_busy, spread

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
                     "runner_up_ms": 1.05, "runner_up_ratio": 1.05, "runner_up_ratio_lo": 0.97 if tie else 1.02,
                     "runner_up_ratio_hi": 1.12, "tie": tie,
                     "verdict": "trt fp16 ≈ ort-fused fp16 (cannot be told apart)" if tie else "trt fp16"})
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
    frames = tables.read_all(table_dir)
    paths = figures.write_all(frames, BASELINE, out / "figures")
    return report.render(frames, paths, {"baseline": BASELINE}, out / "index.html"), paths


def _section(html: str, section_id: str) -> str:
    """The page from a section's heading to the next one."""
    start = html.index(f'<h2 id="{section_id}">')
    following = html.find("<h2 ", start + 1)
    return html[start:following if following > 0 else None]


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_run_has_the_rounds_section_and_says_there_is_no_gpu_busy_share(cpu_tables, tmp_path):
    html, paths = _render(cpu_tables, tmp_path)
    assert set(paths) == set(figures.FIGURES) and all(_is_png(p) for p in paths.values())
    rounds = _section(html, "rounds")
    assert "round medians" in rounds and "fresh round" in rounds
    assert re.search(r"timed in \d+(–\d+)? rounds", rounds)
    assert all(column in rounds for column in ("interval_width_pct", "between_round_cv", "round_min_ms", "round_max_ms"))
    measured = pd.read_csv(cpu_tables / "cells.csv").query("status == 'ok'")
    assert rounds.count("<tr>") == len(measured) + 1  # one row per measured cell, plus the header
    busy = _section(html, "gpu-busy")
    assert "No GPU busy share" in busy and "<img" not in busy and gpu_busy.HOST_BOUND_NOTE not in html
    assert len(re.findall(r"<img ", html)) == len(figures.FIGURES) - 1  # the GPU busy figure is left out
    cells = _section(html, "cells")
    assert all(f">{c}</th>" in cells for c in ("rounds", "between_round_cv", "gpu_busy_share", "bound", "host_probe_ms"))
    for verdict in pd.read_csv(cpu_tables / "best.csv")["verdict"]:
        assert verdict in _section(html, "verdict")


def test_gpu_run_marks_ties_and_lists_host_bound_cells_under_one_note(gpu_tables, tmp_path):
    html, paths = _render(gpu_tables, tmp_path)
    verdict = _section(html, "verdict")
    assert "trt fp16 ≈ ort-fused fp16 (cannot be told apart)" in verdict
    assert re.search(r"1 of 3 shapes\s+have no single winner", verdict)
    assert re.search(r"background: ?#fff4d6", verdict)  # the tie row is marked
    busy = _section(html, "gpu-busy")
    assert 'id="gpu-busy"' in busy and "<img " in busy
    assert html.count(gpu_busy.HOST_BOUND_NOTE) == 1
    host_bound = busy[busy.index(gpu_busy.HOST_BOUND_NOTE):busy.index('id="wide-gpu-bound"')]
    cells = pd.read_csv(gpu_tables / "cells.csv")
    expected = cells[cells["bound"] == "host-bound"]
    assert len(expected) >= 2 and (cells["bound"] == "gpu-bound").any()
    assert host_bound.count("<tr>") == len(expected) + 1
    assert "eager" in host_bound and "trt" not in host_bound
    assert all(f">{c}</th>" in host_bound for c in ("host_probe_ms", "host_probe_spread", "round_spread"))
    wide = busy[busy.index('id="wide-gpu-bound"'):]
    gpu_bound = cells[cells["gpu_busy_share"] >= gpu_busy.GPU_BOUND_FROM]
    assert re.search(rf"0 of {len(gpu_bound)} GPU-bound cells have a 95% interval within ±3 %", wide)
    clock = int((gpu_bound["spread_cause"] == spread.CLOCK).sum())
    assert 0 < clock < len(gpu_bound) and wide.count("1695-1845 MHz") == clock
    for name, n in gpu_bound["spread_cause"].value_counts().items():
        assert re.search(rf"{name} {n}[,.]", wide)
    assert wide.count("<tr>") == len(gpu_bound) + 1
    assert len(re.findall(r"<img ", html)) == len(figures.FIGURES)
    assert "<script>alert(1)" not in html and "bert&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_gpu_figures_are_drawn_not_placeholders(gpu_tables, tmp_path):
    _, paths = _render(gpu_tables, tmp_path)
    placeholder = tmp_path / "empty.png"
    figures._empty(placeholder, "nothing")
    for name in ("round_spread", "gpu_busy_share", "verdict_heatmap"):
        height = matplotlib.image.imread(paths[name]).shape[0]
        assert height > matplotlib.image.imread(placeholder).shape[0] * 1.5, name


def test_verdict_heatmap_label_names_both_backends_of_a_tie():
    Row = namedtuple("Row", "backend precision tie runner_up speedup speedup_lo speedup_hi")
    assert figures.verdict_label(Row("trt", "fp16", True, "ort-fused fp16", 5.0, 4.5, 5.5)).startswith(
        "trt fp16\n≈ ort-fused fp16\n5.00x")
    assert "≈" not in figures.verdict_label(Row("trt", "fp16", False, "ort-fused fp16", 5.0, 4.5, 5.5))
    assert "≈" not in figures.verdict_label(Row("trt", "fp16", float("nan"), None, float("nan"), None, None))


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
    under the wide GPU-bound cells, with both shares, and names no other cell."""
    html, _ = _render(_write_tables(_order_frames(), tmp_path / "tables"), tmp_path / "out")
    section = _section(html, "gpu-busy")
    named = section[section.index('id="level-order"'):]
    assert re.search(r"3 GPU-bound cells have rounds on two levels; \d+ % of their\s+60 windows", named)
    items = re.findall(r"<li>after ([^:]+): (\d+) % on the faster level", named)
    assert [cell for cell, _ in items] == ["ort-fused/fp16"] and int(items[0][1]) == 0
    assert re.search(r"without it before them: 100 %", named)
    # the plain synthetic run: its rounds (3 per cell) form no two levels, so there is nothing to say
    assert 'id="level-order"' not in _section(_render(gpu_tables, tmp_path / "plain")[0], "gpu-busy")
