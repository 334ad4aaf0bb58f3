"""Tidy tables derived from the records (one row per cell, or per sample); never edited by hand.

Everything downstream (figures, report) reads these tables, not the records, so there is one derivation of
each number.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from infbench import records as record_io
from infbench.stats import ratio_of_medians_ci

KEY = ["model", "backend", "engine", "precision", "batch", "seq_len"]
SHAPE = ["model", "batch", "seq_len"]
ENV_COLUMNS = ["python", "torch", "transformers", "onnx", "onnxruntime", "onnxscript", "tensorrt", "snakemake",
               "git_commit", "container"]


def load(paths) -> list[dict]:
    return [record_io.read(path) for path in paths]


def _row(record: dict) -> dict:
    timing = record.get("timing") or {}
    accuracy = record.get("accuracy") or {}
    prepare = record.get("prepare") or {}
    throughput = record.get("throughput") or {}
    policy = timing.get("policy") or {}
    ci = timing.get("ci95_ms") or [None, None]
    return {
        **record["key"],
        "status": record["status"],
        "reason": record.get("reason"),
        "median_ms": timing.get("median_ms"),
        "ci_lo_ms": ci[0],
        "ci_hi_ms": ci[1],
        "p90_ms": timing.get("p90_ms"),
        "p99_ms": timing.get("p99_ms"),
        "mean_ms": timing.get("mean_ms"),
        "stdev_ms": timing.get("stdev_ms"),
        "cv": timing.get("cv"),
        "n": timing.get("n"),
        "stop_reason": policy.get("stop_reason"),
        "sequences_per_s": throughput.get("sequences_per_s"),
        "tokens_per_s": throughput.get("tokens_per_s"),
        "accuracy_passed": accuracy.get("passed"),
        "rel_l2": accuracy.get("rel_l2"),
        "max_abs": accuracy.get("max_abs"),
        "cosine": accuracy.get("cosine"),
        "tolerance": accuracy.get("tolerance"),
        "prepare_s": prepare.get("seconds"),
        "compile_s": prepare.get("compile_seconds"),
        "build_s": prepare.get("build_seconds", prepare.get("engine_build_or_load_seconds")),
        "engine_bytes": prepare.get("engine_bytes"),
        "graphs": prepare.get("graphs"),
        "graph_breaks": prepare.get("graph_breaks"),
        "recompiles": prepare.get("recompiles"),
        "fallback": prepare.get("fallback"),
        "fused_ops": json.dumps(prepare["fused_ops"], sort_keys=True) if prepare.get("fused_ops") else None,
        "peak_bytes": (record.get("memory") or {}).get("peak_bytes"),
        "process_s": (record.get("cost") or {}).get("process_s"),
        "overhead_s": (record.get("cost") or {}).get("overhead_s"),
        "device": (record.get("device") or {}).get("name"),
        "threads": (record.get("device") or {}).get("threads"),
        "options": json.dumps(record.get("options") or {}, sort_keys=True),
        "log": record.get("log"),
    }


def cells(recs: list[dict]) -> pd.DataFrame:
    """One row per cell, every status included."""
    return pd.DataFrame([_row(r) for r in recs]).sort_values(KEY, kind="stable").reset_index(drop=True)


def samples(recs: list[dict]) -> pd.DataFrame:
    """One row per timed iteration of every measured cell (the raw data behind every statistic)."""
    rows = [
        {**r["key"], "iteration": i, "latency_ms": ms}
        for r in recs
        if r["status"] == "ok"
        for i, ms in enumerate(r["timing"]["samples_ms"])
    ]
    return pd.DataFrame(rows, columns=[*KEY, "iteration", "latency_ms"])


def speedups(recs: list[dict], baseline: dict) -> pd.DataFrame:
    """Speedup of every measured cell vs the baseline cell of the same model and shape, with a 95 % CI.

    speedup = median(baseline) / median(cell), so > 1 is faster. ``significant`` is True when the bootstrap
    interval excludes 1: only then does the report call a backend faster or slower.
    """
    base = {
        (r["key"]["model"], r["key"]["batch"], r["key"]["seq_len"]): r
        for r in recs
        if r["status"] == "ok"
        and r["key"]["backend"] == baseline["backend"]
        and r["key"]["precision"] == baseline["precision"]
    }
    rows = []
    for r in recs:
        if r["status"] != "ok":
            continue
        ref = base.get((r["key"]["model"], r["key"]["batch"], r["key"]["seq_len"]))
        if ref is None:
            continue
        point, lo, hi = ratio_of_medians_ci(ref["timing"]["samples_ms"], r["timing"]["samples_ms"])
        rows.append({**r["key"], "speedup": point, "speedup_lo": lo, "speedup_hi": hi,
                     "significant": bool(lo > 1 or hi < 1), "accuracy_passed": r["accuracy"]["passed"]})
    return pd.DataFrame(rows, columns=[*KEY, "speedup", "speedup_lo", "speedup_hi", "significant",
                                       "accuracy_passed"])


def environments(recs: list[dict]) -> pd.DataFrame:
    """Distinct software environments and devices the records came from, with how many cells each."""
    rows = [{**{c: (r.get("env") or {}).get(c) for c in ENV_COLUMNS},
             "container": container_label((r.get("env") or {}).get("container")),
             "device": (r.get("device") or {}).get("name")} for r in recs]
    frame = pd.DataFrame(rows, columns=[*ENV_COLUMNS, "device"]).astype("string").fillna("-")
    return frame.value_counts().rename("cells").reset_index()


def container_label(container: dict | None) -> str | None:
    """An image as one cell of the environment table: path and the start of its sha256."""
    if not container:
        return None
    digest = container.get("sha256")
    return f"{container['image']} (sha256:{digest[:12]})" if digest else container["image"]


def best_per_shape(cells_frame: pd.DataFrame, speedup_frame: pd.DataFrame) -> pd.DataFrame:
    """For each shape, the fastest measured (backend, precision) that passes the accuracy check."""
    ok = cells_frame[(cells_frame["status"] == "ok") & (cells_frame["accuracy_passed"] == True)]  # noqa: E712
    if ok.empty:
        return pd.DataFrame(columns=[*SHAPE, "backend", "precision", "median_ms", "speedup", "speedup_lo",
                                     "speedup_hi"])
    best = ok.loc[ok.groupby(SHAPE)["median_ms"].idxmin(), [*SHAPE, "backend", "precision", "median_ms"]]
    merged = best.merge(speedup_frame[[*SHAPE, "backend", "precision", "speedup", "speedup_lo", "speedup_hi"]],
                        on=[*SHAPE, "backend", "precision"], how="left")
    return merged.sort_values(SHAPE).reset_index(drop=True)


TABLES = ("cells", "samples", "speedup", "best", "environment")


def write_all(record_paths, baseline: dict, out_dir: Path) -> dict[str, pd.DataFrame]:
    recs = load(record_paths)
    frames = {"cells": cells(recs), "samples": samples(recs), "speedup": speedups(recs, baseline),
              "environment": environments(recs)}
    frames["best"] = best_per_shape(frames["cells"], frames["speedup"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        frames[name].to_csv(out_dir / f"{name}.csv", index=False)
    return frames


def read_all(table_dir: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(Path(table_dir) / f"{name}.csv") for name in TABLES}
