"""tools/independent_check.py: an outside harness's re-measurement of published cells, and its coverage count."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "independent_check.py"
KEY = ["model", "backend", "engine", "precision", "batch", "seq_len"]


def _load():
    import importlib.util

    spec = importlib.util.spec_from_file_location("independent_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(backend, batch, median, lo, hi, bound):
    return {"model": "m", "backend": backend, "engine": "torch", "precision": "fp32", "batch": batch,
            "seq_len": 16, "median_ms": median, "ci_lo_ms": lo, "ci_hi_ms": hi, "bound": bound, "status": "ok"}


def test_coverage_counts_measured_medians_inside_the_published_intervals_by_class():
    published = pd.DataFrame([_cell("a", 1, 1.0, 0.9, 1.1, "gpu-bound"), _cell("a", 8, 2.0, 1.98, 2.02, "gpu-bound"),
                              _cell("b", 1, 1.0, 0.5, 2.0, "host-bound")])
    rows = [("a", 1, 1.1, 0), ("a", 8, 2.1, 0), ("b", 1, 1.9, 0), ("a", 1, 0.89, 1), ("a", 8, 2.0, 1)]
    def row(backend, batch, median, index, status="ok"):
        cell = _cell(backend, batch, median, 0, 0, "")
        return {**{k: cell[k] for k in KEY}, "median_ms": median, "status": status, "pass": index}

    measured = pd.DataFrame([row(*r) for r in rows] + [row("b", 1, None, 1, "failed")])
    cells, summary = _load().coverage(published, measured)
    first, second = summary.set_index("pass").loc[0], summary.set_index("pass").loc[1]
    # the interval's ends count as inside (1.1 at 1.1); 2.1 is outside ±1 %; a failed cell is not counted
    assert first["all_inside"] == "2/3" and first["gpu-bound_inside"] == "1/2" and first["host-bound_inside"] == "1/1"
    assert second["all_inside"] == "1/2" and second["host-bound_inside"] == "0/0" and second["mixed_inside"] == "0/0"
    assert first["gpu-bound_median_change"] == 0.075  # median of |1.1 - 1| and |2.1 / 2 - 1|
    assert len(cells) == 5 and set(cells.columns) >= {"inside", "ratio", "median_ms_published"}


def test_measure_and_compare_on_a_real_run(tiny_run, tmp_path):
    """On the CPU, against the tiny config's own run: one row per published ok cell of the chosen backends, each
    measured in a fresh process per (backend, precision) from the run's saved weights and ONNX graphs."""
    published = pd.read_csv(tiny_run / "results" / "tables" / "cells.csv")
    wanted = published[(published["status"] == "ok") & published["backend"].isin(["eager", "ort-fused"])]
    out = tmp_path / "recheck"
    run = subprocess.run([sys.executable, str(SCRIPT), "measure", "--published", str(tiny_run / "results" / "tables"),
                          "--results", str(tiny_run / "results"), "--out", str(out), "--device", "cpu",
                          "--passes", "1", "--backends", "eager,ort-fused", "--warmup-s", "0.01",
                          "--window-s", "0.05", "--order", "descending"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    measured = pd.read_csv(out / "measured.csv")
    assert len(measured) == len(wanted) and (measured["status"] == "ok").all(), measured[["backend", "reason"]]
    assert (measured["median_ms"] > 0).all() and (measured["n"] >= 20).all()
    assert set(map(tuple, measured[KEY].values)) == set(map(tuple, wanted[KEY].values))
    for _, process in measured.groupby(["backend", "precision"]):  # --order descending: the largest shape first
        shapes = list(zip(process.sort_values("position")["batch"], process.sort_values("position")["seq_len"]))
        assert shapes == sorted(shapes, reverse=True) and list(process["position"]) == list(range(len(process)))
    assert set(measured["order"]) == {"descending"}
    done = subprocess.run([sys.executable, str(SCRIPT), "compare", "--published", str(tiny_run / "results" / "tables"),
                           "--measured", str(out / "measured.csv"), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = pd.read_csv(out / "coverage.csv")
    assert summary["all_inside"].iloc[0].endswith(f"/{len(wanted)}")


def test_bad_arguments_name_the_key(tiny_run, tmp_path):
    tables = str(tiny_run / "results" / "tables")
    bad = subprocess.run([sys.executable, str(SCRIPT), "measure", "--published", tables, "--results", "x",
                          "--out", str(tmp_path), "--backends", "eager,nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("--backends: nope")
    for flag, given in (("--published", str(tmp_path)), ("--results", str(tmp_path))):
        args = {"--published": tables, "--results": str(tiny_run / "results"), flag: given}
        bad = subprocess.run([sys.executable, str(SCRIPT), "measure", *[x for kv in args.items() for x in kv],
                              "--out", str(tmp_path / "o")], capture_output=True, text=True)
        assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith(f"{flag}: no "), bad.stderr
    (tmp_path / "m.csv").write_text("backend,median_ms\neager,1.0\n")
    bad = subprocess.run([sys.executable, str(SCRIPT), "compare", "--published", tables, "--measured",
                          str(tmp_path / "m.csv"), "--out", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode != 0 and "--measured:" in bad.stderr and "lacks" in bad.stderr
