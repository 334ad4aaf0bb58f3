"""Comparing two result sets: exactly the cells that changed are marked, with the right direction, and a
rerun's reproducibility is measured against the first run's intervals."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from conftest import REPO, snakemake
from test_tables import BASELINE, failed, measured

from infbench import compare, records, tables


def write_tables(path, recs):
    frames = tables.build(recs, BASELINE)
    path.mkdir(parents=True)
    for name in tables.TABLES:
        frames[name].to_csv(path / f"{name}.csv", index=False)


def two_runs(tmp_path):
    a = [measured("eager", "fp32", 10.0, seed=1), measured("ort", "fp32", 4.0, seed=2),
         measured("inductor", "fp32", 6.0, seed=3), measured("ort-fused", "fp32", 3.0, seed=4)]
    b = [measured("eager", "fp32", 10.0, seed=11), measured("ort", "fp32", 10.0, seed=12),  # ort got 2.5x slower
         measured("inductor", "fp32", 6.0 * 0.98, seed=13),  # within noise: not a change
         failed("ort-fused", "fp32", status="failed", reason="boom")]
    b[-1]["key"]["engine"] = "torch"  # the same cell as in A, now failed
    write_tables(tmp_path / "a", a)
    write_tables(tmp_path / "b", b)
    return tmp_path / "a", tmp_path / "b"


def test_only_real_changes_are_marked(tmp_path):
    a, b = two_runs(tmp_path)
    table = compare.changes(compare.load(a), compare.load(b), min_change=0.05).set_index("backend")
    assert table.loc["ort", "verdict"] == "slower" and table.loc["ort", "ratio_lo"] > 1
    assert abs(table.loc["ort", "ratio_b_over_a"] - 2.5) < 0.05
    assert table.loc["eager", "verdict"] == "same" and table.loc["inductor", "verdict"] == "same"
    assert table.loc["ort-fused", "verdict"] == "status ok → failed"


def test_reproducibility_counts_b_medians_inside_a_intervals(tmp_path):
    a, b = two_runs(tmp_path)
    table = compare.changes(compare.load(a), compare.load(b))
    summary = compare.reproducibility(table).set_index("class")
    assert summary.loc["all", "cells"] == 3  # measured in both runs
    assert summary.loc["all", "b_inside_a"] == 2  # eager and inductor reproduce; ort moved 2.5x
    assert abs(summary.loc["all", "max_between_run"] - 1.5) < 0.05


def test_compare_page_and_rule(tiny_run, tmp_path):
    a, _ = two_runs(tmp_path)
    out = tmp_path / "compare.html"
    result = snakemake(tiny_run, "-n", "--configfile", "tiny.yaml", "--config", f"compare={{'against': '{a}'}}",
                       check=False)
    assert "rule compare" in result.stdout, result.stdout[-2000:]
    subprocess.run([sys.executable, "-m", "scripts.compare_runs", str(a), str(tiny_run / "results/tables"),
                    "--label-a", "<b>run A</b>", "--out", str(out)], cwd=REPO, check=True)
    html = out.read_text()
    assert "&lt;b&gt;run A&lt;/b&gt;" in html and "<b>run A</b>" not in html
    assert 'id="reproducibility"' in html


def test_host_drift_is_estimated_from_how_far_the_host_work_moved(tmp_path):
    """B's host is 25 % slower: the CPU cells (all host work) move 1.25x, a GPU cell with 10 % host work
    1.025x; the estimate is log(1.25), and a plain rerun (same host speed) estimates about nothing."""
    def run(name, host_speed, seed):
        cpu = [measured(backend, "fp32", median * host_speed, seed=seed + i)
               for i, (backend, median) in enumerate([("eager", 10.0), ("ort", 4.0), ("inductor", 6.0)])]
        gpu = measured("ort-cuda", "fp16", 2.0 * (0.9 + 0.1 * host_speed), seed=seed + 9)
        gpu["gpu_busy"] = {"kernel_ms": 1.8, "share": 0.9, "class": "gpu-bound"}
        write_tables(tmp_path / name, [*cpu, gpu])
        return compare.load(tmp_path / name)

    a, slower, same = run("a", 1.0, 0), run("slower", 1.25, 20), run("same", 1.0, 40)
    drift = compare.between_run_drift(a, slower)
    # within 0.04: the estimator subtracts what the rounds' spread explains, which these fixtures repeat
    # identically in both runs (test_tables.DRIFT) rather than draw afresh
    assert drift["cells"] == 4 and abs(drift["host_drift"] - math.log(1.25)) < 0.04, drift
    assert compare.between_run_drift(a, same)["host_drift"] < 0.02


def test_resummarize_applies_a_calibrated_drift_by_each_cells_host_response(tmp_path):
    """A new host drift reaches measured records without re-measuring: a CPU cell (all host work) widens by
    the whole term, a GPU cell with 90 % GPU work (no replay) by a tenth of it, a CUDA-graph replay whose
    latency never waits on the host not at all -- until a GPU-side systematic_rel widens it; medians stay."""
    cpu, gpu = measured("eager", "fp32", 10.0, seed=1), measured("ort-cuda", "fp16", 2.0, seed=2)
    graph = measured("ort-cuda-graph", "fp16", 1.0, seed=3)
    gpu["gpu_busy"] = {"kernel_ms": 1.8, "share": 0.9, "class": "gpu-bound"}
    graph["gpu_busy"] = {"kernel_ms": 0.93, "share": 0.93, "class": "gpu-bound",
                         "host_response": {"factors": [0.5, 2.0], "ratios": [1.0, 1.0]}}
    for record in (cpu, gpu, graph):
        record["device"] = {"name": "x", "sm_clock_mhz": None}
        records.write(record, tmp_path / "cells" / f"{record['key']['backend']}.json")
    before = {r["key"]["backend"]: r["timing"] for r in (cpu, gpu, graph)}
    subprocess.run([sys.executable, "-m", "scripts.resummarize", str(tmp_path / "cells"), "--host-drift", "0.2"],
                   cwd=REPO, check=True, capture_output=True)
    after = {name: records.read(tmp_path / "cells" / f"{name}.json")["timing"] for name in before}
    assert after["eager"]["between_run_half_width"] == pytest.approx(1.96 * 0.2, rel=1e-3)
    assert after["ort-cuda"]["between_run_half_width"] == pytest.approx(1.96 * 0.2 * 0.1, rel=1e-3)
    assert after["ort-cuda-graph"]["between_run_half_width"] == 0
    assert after["ort-cuda-graph"]["ci95_ms"] == pytest.approx(before["ort-cuda-graph"]["ci95_ms"])
    for name in before:
        assert after[name]["median_ms"] == pytest.approx(before[name]["median_ms"])
        assert after[name]["policy"]["host_drift"] == 0.2 and "resummarized_at" in after[name]
        if name != "ort-cuda-graph":
            assert after[name]["ci95_ms"][1] > before[name]["ci95_ms"][1]
    subprocess.run([sys.executable, "-m", "scripts.resummarize", str(tmp_path / "cells"), "--systematic-rel", "0.01"],
                   cwd=REPO, check=True, capture_output=True)
    graph_after = records.read(tmp_path / "cells" / "ort-cuda-graph.json")["timing"]
    assert graph_after["policy"]["systematic_rel"] == 0.01 and graph_after["policy"]["host_drift"] == 0.2
    assert graph_after["ci95_ms"][1] > after["ort-cuda-graph"]["ci95_ms"][1]


def test_coverage_matrix_counts_every_ordered_pair_by_one_runs_classes(tmp_path):
    a, b = two_runs(tmp_path)
    out = tmp_path / "coverage.csv"
    subprocess.run([sys.executable, "-m", "scripts.coverage_matrix", "--run", f"first={a}", "--run", f"rerun={b}",
                    "--classes-from", "first", "--out", str(out)], cwd=REPO, check=True)
    import pandas as pd

    table = pd.read_csv(out).set_index(["intervals_of", "medians_of"])
    assert list(table.index) == [("first", "rerun"), ("rerun", "first")]
    direct = compare.reproducibility(compare.changes(compare.load(a), compare.load(b))).set_index("class")
    assert table.loc[("first", "rerun"), "all_inside"] == f"{direct.loc['all', 'b_inside_a']}/3"
    # the CPU fixtures have no busy share: every cell counts as host work, in both directions
    assert table.loc[("rerun", "first"), "host-bound_inside"].endswith("/3")
    bad = subprocess.run([sys.executable, "-m", "scripts.coverage_matrix", "--run", f"first={a}", "--run", f"rerun={b}",
                          "--classes-from", "third", "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "--classes-from 'third'" in bad.stderr and len(bad.stderr.strip().splitlines()) <= 3


def test_generation_rerun_is_judged_by_the_first_runs_intervals(tiny_run, tmp_path):
    """A rerun's time per token inside or outside the first run's interval, cell by cell, on the page too."""
    import pandas as pd

    gen = pd.read_csv(tiny_run / "results/tables/generation.csv")
    ok = gen["status"] == "ok"
    assert ok.sum() >= 2
    for name in ("a", "b"):
        write_tables(tmp_path / name, [])
    gen.to_csv(tmp_path / "a/generation.csv", index=False)
    moved = gen.copy()
    first = moved.index[ok][0]
    moved.loc[first, "tpot_ms"] = moved.loc[first, "tpot_hi_ms"] * 1.5  # outside A's interval
    moved.to_csv(tmp_path / "b/generation.csv", index=False)
    table = compare.generation_changes(compare.load(tmp_path / "a"), compare.load(tmp_path / "b"))
    assert len(table) == ok.sum() and table["tpot_b_inside_a"].sum() == ok.sum() - 1
    out = tmp_path / "compare.html"
    subprocess.run([sys.executable, "-m", "scripts.compare_runs", str(tmp_path / "a"), str(tmp_path / "b"),
                    "--out", str(out)], cwd=REPO, check=True)
    assert f"{ok.sum() - 1} of {ok.sum()} generation cells" in out.read_text()
