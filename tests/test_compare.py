"""Comparing two result sets: exactly the cells that changed are marked, with the right direction, and a
rerun's reproducibility is measured against the first run's intervals."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, snakemake
from test_tables import BASELINE, failed, measured

from infbench import compare, tables


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
