"""The generation tables, derived from the generation records like the forward ones (infbench.tables).

- ``generation.csv``: one row per generation cell (every status): TPOT with its interval, TTFT with its
  interval, the first and last decode step, tokens/s, end to end, the cache (an encoder–decoder's
  cross-attention cache's bytes beside its self-attention cache's), the floor and TPOT over it,
  accuracy (teacher-forced agreement, logits error, first divergence), memory, preparation;
- ``generation_best.csv``: per generation shape (model, batch, prompt_len, new_tokens), the backend with the
  lowest TPOT among those that pass the accuracy check, the runner-up's TPOT over the winner's (paired round
  by round: same shape session) with its interval and the tie call (infbench.tables.tie_why), and the speedup
  of the winner over the generation baseline (what ``generate`` with transformers' default cache gives).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from infbench import tables as forward_tables

KEY = ["model", "backend", "engine", "precision", "batch", "prompt_len", "new_tokens"]
SHAPE = ["model", "batch", "prompt_len", "new_tokens"]
TABLES = ("generation", "generation_best")


def is_generation(record: dict) -> bool:
    return (record.get("key") or {}).get("workload") == "generate"


def _row(record: dict) -> dict:
    gen = record.get("generation") or {}
    timing = record.get("timing") or {}
    acc = record.get("accuracy") or {}
    prep = record.get("prepare") or {}
    mem = record.get("memory") or {}
    cache = gen.get("cache") or {}
    steps = gen.get("step_ms") or [None, None]
    tpot_ci = gen.get("tpot_ci95_ms") or [None, None]
    ttft_ci = gen.get("ttft_ci95_ms") or [None, None]
    model = record.get("model") or {}
    kernels = gen.get("kernels") or {}
    own, weights = mem.get("backend_peak_bytes"), mem.get("weights_bytes")
    return {
        **{k: record["key"].get(k) for k in KEY}, "options": json.dumps(record.get("options") or {}, sort_keys=True),
        "environment_id": forward_tables.environment_id(record), "status": record["status"], "reason": record.get("reason"),
        "tpot_ms": gen.get("tpot_ms"), "tpot_lo_ms": tpot_ci[0], "tpot_hi_ms": tpot_ci[1],
        "ttft_ms": gen.get("ttft_ms"), "ttft_lo_ms": ttft_ci[0], "ttft_hi_ms": ttft_ci[1],
        "first_step_ms": steps[0], "last_step_ms": steps[1], "e2e_ms": gen.get("e2e_ms"),
        "tokens_per_s": (gen.get("tokens_per_s") or {}).get("total"),
        "tokens_per_s_per_sequence": (gen.get("tokens_per_s") or {}).get("per_sequence"),
        "rounds": timing.get("rounds_n"), "clock": (timing.get("policy") or {}).get("clock"), "cache": cache.get("kind"), "cache_allocated_len": cache.get("allocated_len"),
        "kv_bytes": cache.get("bytes"), "cross_kv_bytes": cache.get("cross_bytes"), "floor_ms": gen.get("floor_ms"), "tpot_over_floor": gen.get("tpot_over_floor"),
        "kernels_per_token": kernels.get("kernels_per_token"), "kernel_ms_per_token": kernels.get("kernel_ms_per_token"),
        "busy_share": kernels.get("busy_share"), "gap_ms": kernels.get("gap_ms"),
        "accuracy_passed": acc.get("passed"), "teacher_forced_top1": acc.get("teacher_forced_top1"),
        "clear_steps": acc.get("clear_steps"), "logits_rel_err": acc.get("logits_rel_err"),
        "first_divergence": acc.get("first_divergence"), "prepare_s": prep.get("seconds"),
        "cuda_graph": prep.get("cuda_graph"), "compiled": prep.get("compiled"), "recompiles": prep.get("recompiles"),
        "backend_peak_bytes": None if own is None else own + (weights or 0), "weights_bytes": weights,
        "memory_method": mem.get("backend_method"), "lm_head_scale": model.get("lm_head_scale"),
        "parameters": model.get("parameters"), "model_build_s": model.get("build_s"),
        "device": (record.get("device") or {}).get("name"), "driver": (record.get("device") or {}).get("driver"),
        "cuda": (record.get("device") or {}).get("cuda"), "git_commit": (record.get("env") or {}).get("git_commit"),
        "torch": (record.get("env") or {}).get("torch"), "log": record.get("log"),
    }


COLUMNS = list(_row({"key": {}, "status": None}).keys())


def cells(recs: list[dict]) -> pd.DataFrame:
    rows = [_row(r) for r in recs if is_generation(r)]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True) if len(frame) else frame


BEST_COLUMNS = [*SHAPE, "backend", "precision", "tpot_ms", "ttft_ms", "speedup", "speedup_lo", "speedup_hi",
                "runner_up_backend", "runner_up_precision", "runner_up_tpot_ms", "runner_up_ratio", "runner_up_ratio_lo",
                "runner_up_ratio_hi", "tie", "tie_why", "baseline_backend", "baseline_precision"]


def best(recs: list[dict], baseline: dict | None, practical_margin: float = 0.0) -> pd.DataFrame:
    """Per generation shape: the lowest accurate TPOT, its runner-up and tie call, its speedup over the baseline."""
    ok = [r for r in recs if is_generation(r) and r["status"] == "ok" and (r.get("accuracy") or {}).get("passed")]
    measured = {(*(r["key"][k] for k in SHAPE), r["key"]["backend"], r["key"]["precision"]): r
                for r in recs if is_generation(r) and r["status"] == "ok"}
    groups: dict[tuple, list[dict]] = {}
    for r in ok:
        groups.setdefault(tuple(r["key"][k] for k in SHAPE), []).append(r)
    rows = []
    for shape, members in sorted(groups.items()):
        members.sort(key=lambda r: r["timing"]["median_ms"])
        top = members[0]
        row = {**dict(zip(SHAPE, shape)), "backend": top["key"]["backend"], "precision": top["key"]["precision"],
               "tpot_ms": top["timing"]["median_ms"], "ttft_ms": (top.get("generation") or {}).get("ttft_ms"),
               "tie": False}
        second = forward_tables.runner_up(members, practical_margin)
        if second:
            row.update({f"runner_up_{k}": v for k, v in second.items() if k not in ("tie", "tie_why", "ms")},
                       runner_up_tpot_ms=second["ms"], tie=second["tie"], tie_why=second["tie_why"])
        base = measured.get((*shape, baseline["backend"], baseline["precision"])) if baseline else None
        if base is not None:
            speed = forward_tables.compare_cells(base, top)
            row.update(speedup=speed["ratio"], speedup_lo=speed["lo"], speedup_hi=speed["hi"],
                       baseline_backend=baseline["backend"], baseline_precision=baseline["precision"])
        rows.append(row)
    return pd.DataFrame(rows, columns=BEST_COLUMNS)


def build(recs: list[dict], baseline: dict | None, practical_margin: float = 0.0) -> dict[str, pd.DataFrame]:
    return {"generation": cells(recs), "generation_best": best(recs, baseline, practical_margin)}


def write_all(recs: list[dict], baseline: dict | None, out_dir: Path, practical_margin: float = 0.0) -> dict:
    frames = build(recs, baseline, practical_margin)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(out_dir / f"{name}.csv", index=False)
    return frames


def read_all(table_dir: Path) -> dict[str, pd.DataFrame] | None:
    """The generation tables of a run, or None where it has none (a run from before the workload)."""
    paths = {name: Path(table_dir) / f"{name}.csv" for name in TABLES}
    if not all(p.exists() for p in paths.values()):
        return None
    frames = {}
    for name, path in paths.items():
        try:
            frames[name] = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            frames[name] = pd.DataFrame()
    return frames
