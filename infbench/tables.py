"""Tidy tables derived from the records (one row per cell, or per sample); never edited by hand.

Everything downstream (figures, report) reads these tables, not the records, so there is one derivation of
each number.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from infbench import records as record_io
from infbench.measure import host_response, spread, stats

KEY = ["model", "backend", "engine", "precision", "batch", "seq_len"]
SHAPE = ["model", "batch", "seq_len"]
ENV_COLUMNS = ["python", "torch", "transformers", "onnx", "onnxruntime", "onnxscript", "tensorrt", "snakemake",
               "git_commit", "container"]


class CorruptRecords(ValueError):
    """Records that cannot be read (truncated, not JSON, no key or status): every one named at once."""

    def __init__(self, errors: list[record_io.Unreadable]):
        self.paths = [error.path for error in errors]
        super().__init__("; ".join(str(error) for error in errors))


def load(paths) -> list[dict]:
    """Every record, or CorruptRecords naming each that cannot be read (never a bare JSON error)."""
    recs, errors = [], []
    for path in paths:
        try:
            record = record_io.read(path)
            missing = [k for k in ("key", "status") if not isinstance(record.get(k), (dict, str))]
            if missing:
                raise record_io.Unreadable(path, f"no {', '.join(missing)}")
            recs.append(record)
        except record_io.Unreadable as error:
            errors.append(error)
    if errors:
        raise CorruptRecords(errors)
    return recs


# What makes two numbers comparable: the same device (model, driver, CUDA) and the same libraries and image.
SIGNATURE_ENV = ("python", "torch", "transformers", "onnx", "onnxruntime", "tensorrt")
SIGNATURE_DEVICE = ("name", "driver", "cuda")


def signature(record: dict) -> dict:
    env, device = record.get("env") or {}, record.get("device") or {}
    container = env.get("container") or {}
    return {**{k: env.get(k) for k in SIGNATURE_ENV}, **{f"device_{k}": device.get(k) for k in SIGNATURE_DEVICE},
            "image_sha256": container.get("sha256")}


def environment_id(record: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(signature(record), sort_keys=True).encode()).hexdigest()[:8]


class MixedEnvironments(ValueError):
    """Records from unlike environments in one aggregation (refused unless asked for)."""


def check_environments(recs: list[dict], allow_mixed: bool) -> None:
    """Refuse to put numbers from different devices / library versions in one table unless told to: a
    speedup across two GPUs or two torch versions is not a speedup of a backend."""
    measured = [r for r in recs if r.get("status") == "ok"]
    signatures = {environment_id(r): signature(r) for r in measured}
    if len(signatures) <= 1 or allow_mixed:
        return
    keys = sorted({k for s in signatures.values() for k in s})
    differing = [k for k in keys if len({json.dumps(s.get(k)) for s in signatures.values()}) > 1]
    detail = "; ".join(f"{k}: {sorted({str(s.get(k)) for s in signatures.values()})}" for k in differing)
    raise MixedEnvironments(f"records come from {len(signatures)} environments ({detail}): aggregate each "
                            "separately, or set aggregate.mix_environments: true to keep them apart in one report")


def _row(record: dict) -> dict:
    timing = record.get("timing") or {}
    accuracy = record.get("accuracy") or {}
    prepare = record.get("prepare") or {}
    throughput = record.get("throughput") or {}
    rounds = timing.get("rounds") or []
    ci = timing.get("ci95_ms") or [None, None]
    gpu = record.get("gpu_busy") or {}
    probes = [r["host"]["probe_ms"] for r in rounds if (r.get("host") or {}).get("probe_ms") is not None]
    device = record.get("device") or {}
    fp64 = accuracy.get("fp64") or {}
    stability = record.get("stability") or {}

    sensitivity = host_response.elasticity(host_response.of_record(record)) if timing else None
    why = (spread.cause([r["median_ms"] for r in rounds], [(r.get("device") or {}).get("sm_clock_mhz") for r in rounds],
                        [r.get("position") for r in rounds], timing.get("rounds_half_width"),
                        timing.get("between_run_half_width"), sensitivity)
           if len(rounds) >= 3 else {})

    def before_after(key: str, index: int):
        value = device.get(key)
        return value[index] if isinstance(value, list) else value

    return {
        **record["key"],
        "environment_id": environment_id(record),
        "benchmarked": record.get("benchmarked"),
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
        "rounds": timing.get("rounds_n"),
        "between_round_cv": timing.get("between_round_cv"),
        "rounds_half_width": timing.get("rounds_half_width"),
        "between_run_half_width": timing.get("between_run_half_width"),
        "spread_cause": why.get("cause"),
        "spread_evidence": why.get("evidence"),
        "clock_range": why.get("clock_range"),
        "clock_r2": why.get("clock_r2"),
        "round_spread": timing.get("round_spread"),
        "round_min_ms": min(medians) if (medians := timing.get("round_medians_ms")) else None,
        "round_max_ms": max(medians) if medians else None,
        "stop_reason": ", ".join(sorted({r["window"]["stop_reason"] for r in rounds})) or None,
        "gpu_kernel_ms": gpu.get("kernel_ms"),
        "gpu_busy_share": gpu.get("share"),
        "bound": gpu.get("class"),
        "host_sensitivity": sensitivity,
        "host_probe_ms": float(pd.Series(probes).median()) if probes else None,
        "host_probe_spread": max(probes) / min(probes) if probes and min(probes) > 0 else None,
        "sequences_per_s": throughput.get("sequences_per_s"),
        "tokens_per_s": throughput.get("tokens_per_s"),
        "accuracy_passed": accuracy.get("passed"),
        "rel_l2": accuracy.get("rel_l2"),
        "max_abs": accuracy.get("max_abs"),
        "cosine": accuracy.get("cosine"),
        "tolerance": accuracy.get("tolerance"),
        "rel_l2_fp64": fp64.get("rel_l2"),
        "max_abs_fp64": fp64.get("max_abs"),
        "unstable": stability.get("unstable"),
        "unstable_why": stability.get("why"),
        "prepare_s": prepare.get("seconds"),
        "compile_s": prepare.get("compile_seconds"),
        "build_s": prepare.get("build_seconds", prepare.get("engine_build_or_load_seconds")),
        "engine_bytes": prepare.get("engine_bytes"),
        "graphs": prepare.get("graphs"),
        "graph_breaks": prepare.get("graph_breaks"),
        "recompiles": prepare.get("recompiles"),
        "fallback": prepare.get("fallback"),
        "fused_ops": json.dumps(prepare["fused_ops"], sort_keys=True) if prepare.get("fused_ops") else None,
        "fusion": (prepare.get("fusion") or {}).get("note") if isinstance(prepare.get("fusion"), dict) else prepare.get("fusion"),
        "peak_bytes": (record.get("memory") or {}).get("peak_bytes"),
        "device_peak_bytes": (record.get("memory") or {}).get("device_peak_bytes"),
        "backend_peak_bytes": (record.get("memory") or {}).get("backend_peak_bytes"),
        "backend_held_bytes": (record.get("memory") or {}).get("backend_held_bytes"),
        "memory_method": (record.get("memory") or {}).get("backend_method"),
        "sm_clock_before": before_after("sm_clock_mhz", 0),
        "sm_clock_after": before_after("sm_clock_mhz", 1),
        "temp_c_after": before_after("temp_c", 1),
        "power_w_after": before_after("power_w", 1),
        "process_s": (record.get("cost") or {}).get("process_s"),
        "overhead_s": (record.get("cost") or {}).get("overhead_s"),
        "device": (record.get("device") or {}).get("name"),
        "driver": (record.get("device") or {}).get("driver"),
        "cuda": (record.get("device") or {}).get("cuda"),
        "threads": (record.get("device") or {}).get("threads"),
        "options": json.dumps(record.get("options") or {}, sort_keys=True),
        "log": record.get("log"),
    }


def cells(recs: list[dict]) -> pd.DataFrame:
    """One row per cell, every status included (a run that only generates has none: the columns stay)."""
    if not recs:
        blank = record_io.new_record({"model": "", "backend": "", "engine": "", "precision": "", "batch": 0,
                                    "seq_len": 0}, {}, None)
        return pd.DataFrame(columns=list(_row(blank)))
    return pd.DataFrame([_row(r) for r in recs]).sort_values(KEY, kind="stable").reset_index(drop=True)


def samples(recs: list[dict]) -> pd.DataFrame:
    """One row per timed iteration of every measured cell (the raw data behind every statistic)."""
    rows = [
        {**r["key"], "round": rnd["index"], "iteration": i, "latency_ms": ms}
        for r in recs
        if r["status"] == "ok"
        for rnd in r["timing"]["rounds"]
        for i, ms in enumerate(rnd["samples_ms"])
    ]
    return pd.DataFrame(rows, columns=[*KEY, "round", "iteration", "latency_ms"])


def rounds(recs: list[dict]) -> pd.DataFrame:
    """One row per round of every measured cell: when it ran, its median, and the host's state then."""
    rows = []
    for r in recs:
        if r["status"] != "ok":
            continue
        for rnd in r["timing"]["rounds"]:
            host, gpu = rnd.get("host") or {}, rnd.get("device") or {}
            rows.append({**r["key"], "session": r["timing"].get("session"), "round": rnd["index"],
                         "started_at": rnd["started_at"], "offset_s": rnd["offset_s"], "position": rnd["position"],
                         "median_ms": rnd["median_ms"], "n": rnd["n"], "stop_reason": rnd["window"]["stop_reason"],
                         "host_probe_ms": host.get("probe_ms"), "cpu_mhz": host.get("cpu_mhz"),
                         "steal_pct": host.get("steal_pct"), "load1": host.get("load1"),
                         "sm_clock_mhz": gpu.get("sm_clock_mhz"), "power_w": gpu.get("power_w")})
    return pd.DataFrame(rows, columns=[*KEY, "session", "round", "started_at", "offset_s", "position", "median_ms",
                                       "n", "stop_reason", "host_probe_ms", "cpu_mhz", "steal_pct", "load1",
                                       "sm_clock_mhz", "power_w"])


def compare_cells(a: dict, b: dict, confidence: float = stats.CONFIDENCE) -> dict:
    """Latency ratio a / b of two records (their timing sections), paired by round where they shared a
    session, its interval widened by how far the two part on a host that drifts between runs (the larger
    ``timing.host_drift`` of the two records' policies; infbench.measure.stats: "Comparisons")."""
    ta, tb = a["timing"], b["timing"]
    paired = bool(ta.get("session")) and ta.get("session") == tb.get("session")
    ratio = stats.round_ratio_ci(stats.round_medians(ta), stats.round_medians(tb), paired, confidence)
    drift = max(float((t.get("policy") or {}).get("host_drift") or 0.0) for t in (ta, tb))
    return stats.with_host_drift(ratio, host_response.of_record(a), host_response.of_record(b), drift, confidence)


def speedups(recs: list[dict], baseline: dict) -> pd.DataFrame:
    """Speedup of every measured cell vs the baseline cell of the same model and shape, with a 95 % CI.

    speedup = latency(baseline) / latency(cell), so > 1 is faster; it is the geometric mean of the per-round
    ratios, the baseline and the cell having been timed seconds apart in each round (``paired_rounds``).
    ``significant`` is True when the interval excludes 1: only then does the report call a backend faster or
    slower.
    """
    base = {
        (environment_id(r), r["key"]["model"], r["key"]["batch"], r["key"]["seq_len"]): r
        for r in recs
        if r["status"] == "ok"
        and r["key"]["backend"] == baseline["backend"]
        and r["key"]["precision"] == baseline["precision"]
    }
    rows = []
    for r in recs:
        if r["status"] != "ok":
            continue
        ref = base.get((environment_id(r), r["key"]["model"], r["key"]["batch"], r["key"]["seq_len"]))
        if ref is None:
            continue
        ratio = compare_cells(ref, r)
        lo, hi = ratio["lo"], ratio["hi"]
        rows.append({**r["key"], "speedup": ratio["ratio"], "speedup_lo": lo, "speedup_hi": hi,
                     "significant": not stats.indistinguishable(ratio), "paired_rounds": ratio["paired_rounds"],
                     "method": ratio["method"], "accuracy_passed": r["accuracy"]["passed"],
                     "environment_id": environment_id(r)})
    return pd.DataFrame(rows, columns=[*KEY, "speedup", "speedup_lo", "speedup_hi", "significant", "paired_rounds",
                                       "method", "accuracy_passed", "environment_id"])


def environments(recs: list[dict]) -> pd.DataFrame:
    """Distinct software environments and devices the records came from, with how many cells each."""
    rows = [{"environment_id": environment_id(r), **{c: (r.get("env") or {}).get(c) for c in ENV_COLUMNS},
             "container": container_label((r.get("env") or {}).get("container")),
             "device": (r.get("device") or {}).get("name")} for r in recs]
    frame = pd.DataFrame(rows, columns=["environment_id", *ENV_COLUMNS, "device"]).astype("string").fillna("-")
    return frame.value_counts().rename("cells").reset_index()


def container_label(container: dict | None) -> str | None:
    """An image as one cell of the environment table: path and the start of its sha256."""
    if not container:
        return None
    digest = container.get("sha256")
    return f"{container['image']} (sha256:{digest[:12]})" if digest else container["image"]


BEST_COLUMNS = [*SHAPE, "backend", "precision", "median_ms", "speedup", "speedup_lo", "speedup_hi", "runner_up",
                "runner_up_backend", "runner_up_precision", "runner_up_ms", "runner_up_ratio", "runner_up_ratio_lo",
                "runner_up_ratio_hi", "tie", "tie_why", "native_backend", "native_precision", "native_ms",
                "native_ratio", "native_ratio_lo", "native_ratio_hi", "verdict"]
# PyTorch's own engines: what a user who does not leave PyTorch deploys (the answer says what leaving it buys)
NATIVE_ENGINES = ("torch", "torch_compile", "aot_inductor")


def tie_why(ratio: dict, practical_margin: float) -> str | None:
    """Why the runner-up counts as equal to the winner, or None when the winner leads.

    Statistically: the 95 % interval of the paired latency ratio contains 1. Practically: the lead is below
    ``practical_margin`` (aggregate.practical_margin in config/schema.yaml says why 5 %): a lead smaller than
    what the same cell moves between machines of one kind can reverse on the user's machine."""
    if stats.indistinguishable(ratio):
        return "interval contains 1"
    if ratio["ratio"] < 1.0 + practical_margin:
        return f"lead below {100 * practical_margin:g} %"
    return None


def runner_up(members: list[dict], practical_margin: float) -> dict:
    """The second-fastest of a shape's accurate cells (``members`` sorted by latency) against the fastest,
    paired round by round: its backend, precision and latency, the ratio with its interval, and the tie call
    (``tie_why``). Empty where the shape has one cell. Shared by the forward and the generation tables."""
    if len(members) < 2:
        return {}
    best, second = members[0], members[1]
    ratio = compare_cells(second, best)
    why = tie_why(ratio, practical_margin)
    return {"backend": second["key"]["backend"], "precision": second["key"]["precision"],
            "ms": second["timing"]["median_ms"], "ratio": ratio["ratio"], "ratio_lo": ratio["lo"],
            "ratio_hi": ratio["hi"], "tie": why is not None, "tie_why": why}


def best_per_shape(recs: list[dict], speedup_frame: pd.DataFrame, practical_margin: float = 0.0) -> pd.DataFrame:
    """For each shape, the fastest measured (backend, precision) that passes the accuracy check; whether the
    runner-up can be told apart from it (``tie``, ``tie_why``); and the fastest PyTorch-native cell with its
    latency over the winner's (``native_*``: what leaving PyTorch buys; the winner itself when it is native).

    Ratios come from rounds paired in time (same shape session). A tie names both in the verdict: one of two
    numbers within noise, or within the practical margin, of each other is not "the fastest"."""
    ok = [r for r in recs if r["status"] == "ok" and (r.get("accuracy") or {}).get("passed")]
    groups: dict[tuple, list[dict]] = {}
    for r in ok:
        groups.setdefault((environment_id(r), *(r["key"][k] for k in SHAPE)), []).append(r)
    rows = []
    for members in groups.values():
        members.sort(key=lambda r: r["timing"]["median_ms"])
        best = members[0]
        row = {**{k: best["key"][k] for k in SHAPE}, "backend": best["key"]["backend"],
               "precision": best["key"]["precision"], "median_ms": best["timing"]["median_ms"], "tie": False,
               "verdict": label(best["key"])}
        second = runner_up(members, practical_margin)
        if second:
            name = label(members[1]["key"])
            row.update({f"runner_up_{k}": v for k, v in second.items() if k not in ("tie", "tie_why")},
                       runner_up=name, tie=second["tie"], tie_why=second["tie_why"],
                       verdict=f"{label(best['key'])} ≈ {name} ({second['tie_why']})" if second["tie"] else label(best["key"]))
        native = next((r for r in members if r["key"]["engine"] in NATIVE_ENGINES), None)
        if native is not None:
            ratio = compare_cells(native, best) if native is not best else {"ratio": 1.0, "lo": 1.0, "hi": 1.0}
            row.update(native_backend=native["key"]["backend"], native_precision=native["key"]["precision"],
                       native_ms=native["timing"]["median_ms"], native_ratio=ratio["ratio"],
                       native_ratio_lo=ratio["lo"], native_ratio_hi=ratio["hi"])
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=BEST_COLUMNS)
    frame = pd.DataFrame(rows).reindex(columns=[c for c in BEST_COLUMNS if c not in ("speedup", "speedup_lo", "speedup_hi")])
    merged = frame.merge(speedup_frame[[*SHAPE, "backend", "precision", "speedup", "speedup_lo", "speedup_hi"]],
                         on=[*SHAPE, "backend", "precision"], how="left")
    return merged[BEST_COLUMNS].sort_values(SHAPE).reset_index(drop=True)


def label(key: dict) -> str:
    return f"{key['backend']} {key['precision']}"


def roofline(cells_frame: pd.DataFrame, peaks: dict | None, work: dict[str, dict]) -> pd.DataFrame:
    """Per measured cell: FLOPs, minimum bytes, the device's time floor and the % of it reached.

    ``work``: per model, infbench.roofline.model_work (the counted FLOPs per shape and what part of the
    model was benchmarked); a cell whose shape was not counted has no row. Where a cell beat a measured peak
    the peak is raised to that cell's rate (infbench.roofline.raised_peaks) and ``peak_raised`` names it, so
    no cell reads as faster than its floor."""
    from infbench import roofline as rl

    columns = [*KEY, "benchmarked", "median_ms", "flops", "min_bytes", "floor_ms", "bound", "pct_of_floor",
               "achieved_flops_per_s", "intensity_flops_per_byte", "peak_raised"]
    counted_rows = []
    for row in cells_frame[cells_frame["status"] == "ok"].itertuples(index=False):
        model = work.get(row.model)
        counted = model and rl.cell_work(model, int(row.batch), int(row.seq_len), row.precision)
        if counted:
            options = json.loads(row.options) if isinstance(row.options, str) else {}
            counted_rows.append((row, model, counted, rl.peak_key(row.precision, bool(options.get("tf32")))))
    achieved = [(key, c["flops"] / (r.median_ms / 1e3), c["min_bytes"] / (r.median_ms / 1e3))
                for r, _, c, key in counted_rows]
    effective, raised = rl.raised_peaks(peaks or {}, achieved) if peaks else ({}, [])
    rows = []
    for row, model, counted, key in counted_rows:
        bound = rl.floor(counted, effective, row.precision, key == "tf32")
        rows.append({**{k: getattr(row, k) for k in KEY}, "benchmarked": model.get("benchmarked"),
                     "median_ms": row.median_ms, **counted,
                     "floor_ms": bound and bound["floor_ms"], "bound": bound and bound["bound"],
                     "pct_of_floor": bound and 100 * bound["floor_ms"] / row.median_ms,
                     "achieved_flops_per_s": counted["flops"] / (row.median_ms / 1e3),
                     "intensity_flops_per_byte": counted["flops"] / counted["min_bytes"],
                     "peak_raised": ", ".join(r for r in raised if r in (f"matmul {key}", "copy")) or None})
    return pd.DataFrame(rows, columns=columns)


def costs(cells_frame: pd.DataFrame, baseline: dict) -> pd.DataFrame:
    """What getting to each measured cell cost once (load + compile / engine build) beyond the baseline's
    load, and after how many requests the saved latency has paid for it (None: it never does)."""
    ok = cells_frame[cells_frame["status"] == "ok"].copy()
    for column in ("median_ms", "prepare_s", "compile_s", "build_s"):
        ok[column] = pd.to_numeric(ok[column], errors="coerce").astype(float)
    ok["setup_s"] = ok["prepare_s"].fillna(0) + ok["build_s"].where(ok["engine"] == "tensorrt", 0).fillna(0)
    base = ok[(ok["backend"] == baseline["backend"]) & (ok["precision"] == baseline["precision"])]
    base = base[[*SHAPE, "median_ms", "setup_s"]].rename(columns={"median_ms": "baseline_ms", "setup_s": "baseline_setup_s"})
    merged = ok[[*KEY, "median_ms", "setup_s", "compile_s", "build_s"]].merge(base, on=SHAPE, how="inner")
    merged["extra_setup_s"] = merged["setup_s"] - merged["baseline_setup_s"]
    merged["saved_ms_per_request"] = merged["baseline_ms"] - merged["median_ms"]
    paid = (merged["saved_ms_per_request"] > 0) & (merged["extra_setup_s"] > 0)
    saved = merged["saved_ms_per_request"].where(paid)
    merged["break_even_requests"] = (1000 * merged["extra_setup_s"] / saved).where(paid)
    merged.loc[(merged["extra_setup_s"] <= 0) & (merged["saved_ms_per_request"] > 0), "break_even_requests"] = 0
    return merged.sort_values(KEY).reset_index(drop=True)


TABLES = ("cells", "samples", "rounds", "speedup", "best", "environment", "roofline", "cost")


def build(recs: list[dict], baseline: dict, peaks: dict | None = None,
          geometries: dict[str, dict] | None = None, practical_margin: float = 0.0) -> dict[str, pd.DataFrame]:
    """Every table (TABLES) from the records."""
    frames = {"cells": cells(recs), "samples": samples(recs), "rounds": rounds(recs),
              "speedup": speedups(recs, baseline), "environment": environments(recs)}
    frames["best"] = best_per_shape(recs, frames["speedup"], practical_margin)
    frames["roofline"] = roofline(frames["cells"], peaks, geometries or {})
    frames["cost"] = costs(frames["cells"], baseline)
    return frames


def write_all(record_paths, baseline: dict, out_dir: Path, peaks: dict | None = None,
              geometries: dict[str, dict] | None = None, mix_environments: bool = False,
              practical_margin: float = 0.0) -> dict[str, pd.DataFrame]:
    recs = load(record_paths)
    check_environments(recs, mix_environments)
    frames = build(recs, baseline, peaks, geometries, practical_margin)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        frames[name].to_csv(out_dir / f"{name}.csv", index=False)
    return frames


def read_all(table_dir: Path) -> dict[str, pd.DataFrame]:
    """A run's forward tables; empty ones (with their columns) where it only generated (no cells.csv)."""
    if not (Path(table_dir) / "cells.csv").is_file():
        return build([], {"backend": None, "precision": None})
    return {name: pd.read_csv(Path(table_dir) / f"{name}.csv") for name in TABLES}
