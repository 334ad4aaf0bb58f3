"""Comparing two result sets: exactly the cells that changed are marked, with the right direction."""

from __future__ import annotations

import shutil

import pandas as pd
from conftest import REPO, snakemake

from infbench import compare


def two_runs(tiny_run, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_run / "results/tables", a)
    shutil.copytree(tiny_run / "results/tables", b)
    samples = pd.read_csv(b / "samples.csv")
    samples.loc[samples["backend"] == "ort", "latency_ms"] *= 1.5  # ort got 50% slower in B
    samples.loc[samples["backend"] == "inductor", "latency_ms"] *= 0.98  # within noise: not a change
    samples.to_csv(b / "samples.csv", index=False)
    cells = pd.read_csv(b / "cells.csv")
    flipped = (cells["backend"] == "ort-fused") & (cells["precision"] == "fp32") & (cells["seq_len"] == 8)
    cells.loc[flipped, "status"] = "failed"
    cells.to_csv(b / "cells.csv", index=False)
    return a, b


def test_only_real_changes_are_marked(tiny_run, tmp_path):
    a, b = two_runs(tiny_run, tmp_path)
    table = compare.changes(compare.load(a), compare.load(b), min_change=0.05)
    ort = table[(table["backend"] == "ort") & (table["status_a"] == "ok")]
    assert len(ort) == 2 and (ort["verdict"] == "slower").all()
    assert ort["ratio_b_over_a"].round(6).eq(1.5).all() and (ort["ratio_lo"] > 1).all()
    assert (table[table["backend"].isin(["eager", "inductor"])]["verdict"].isin(["same", "not measured"])).all()
    assert table[table["verdict"].str.startswith("status")]["backend"].tolist() == ["ort-fused"]
    assert set(table["verdict"]) <= {"same", "not measured", "slower", "status ok → failed"}


def test_compare_page_and_rule(tiny_run, tmp_path):
    a, _ = two_runs(tiny_run, tmp_path)
    out = tmp_path / "compare.html"
    result = snakemake(tiny_run, "-n", "--configfile", "tiny.yaml", "--config", f"compare={{'against': '{a}'}}",
                       check=False)
    assert "rule compare" in result.stdout, result.stdout[-2000:]
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "scripts.compare_runs", str(a), str(tiny_run / "results/tables"),
                    "--label-a", "<b>run A</b>", "--out", str(out)], cwd=REPO, check=True)
    html = out.read_text()
    assert "&lt;b&gt;run A&lt;/b&gt;" in html and "<b>run A</b>" not in html
