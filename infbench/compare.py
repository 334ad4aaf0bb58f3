"""Compare two result sets (two GPUs, two library versions, before/after a change, or the same config run
twice): per cell, the latency ratio B/A with a 95 % CI from both runs' round medians, and which changes are
significant; and how well B reproduces A.

A change is significant when its 95% CI excludes 1 *and* it is at least ``min_change`` (a fraction). The
CI comes from the rounds (unpaired: two runs share no round), so it carries the host's drift between rounds
of each run, not only the iterations' noise of one window. Cells whose status changed, or that exist in one
run only, are listed too: a backend that stopped working is the biggest change of all.

Reproducibility (``reproducibility``): the share of B's medians inside A's published intervals, the
between-run spread and A's interval widths, by how host-bound the cells are (GPU busy share classes).
``between_run_drift`` estimates, from the same two runs, how much the host's speed and the GPU-side speed
moved between them: the values of ``timing.host_drift`` and ``timing.systematic_rel`` that make a config's
intervals cover a rerun on this host (infbench.measure.stats).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from infbench.report import TEMPLATE_DIR, styled
from infbench.measure import stats
from infbench.tables import KEY


def load(table_dir: Path) -> dict[str, pd.DataFrame]:
    """A run's forward tables, and its generation cells where it generated (``generation``: None if not)."""
    table_dir = Path(table_dir)
    frames = {name: pd.read_csv(table_dir / f"{name}.csv") for name in ("cells", "rounds", "environment")}
    generation = table_dir / "generation.csv"
    frames["generation"] = pd.read_csv(generation) if generation.is_file() else None
    return frames


GENERATION_KEY = ["model", "backend", "precision", "batch", "prompt_len", "new_tokens"]


def generation_changes(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per generation cell measured in both runs: A's time per token with its 95 % interval, B's, B/A, and
    whether B's median is inside A's interval; the same for the first token."""
    columns = [*GENERATION_KEY, "tpot_ms_a", "tpot_lo_ms_a", "tpot_hi_ms_a", "tpot_ms_b", "tpot_b_over_a",
               "tpot_b_inside_a", "ttft_ms_a", "ttft_ms_b", "ttft_b_over_a"]
    if a.get("generation") is None or b.get("generation") is None:
        return pd.DataFrame(columns=columns)
    ok = [g[g["status"] == "ok"][[*GENERATION_KEY, "tpot_ms", "tpot_lo_ms", "tpot_hi_ms", "ttft_ms"]]
          for g in (a["generation"], b["generation"])]
    both = ok[0].merge(ok[1], on=GENERATION_KEY, suffixes=("_a", "_b"))
    both["tpot_b_over_a"] = both["tpot_ms_b"] / both["tpot_ms_a"]
    both["tpot_b_inside_a"] = both["tpot_ms_b"].between(both["tpot_lo_ms_a"], both["tpot_hi_ms_a"])
    both["ttft_b_over_a"] = both["ttft_ms_b"] / both["ttft_ms_a"]
    return both[columns].sort_values(GENERATION_KEY).reset_index(drop=True)


def changes(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame], min_change: float = 0.05) -> pd.DataFrame:
    """One row per cell present in either run: both medians, ratio B/A with CI, status in each, verdict."""
    columns = [*KEY, "status", "median_ms", "ci_lo_ms", "ci_hi_ms"]
    cells = a["cells"][[*columns, "bound"]].merge(b["cells"][columns], on=KEY, how="outer", suffixes=("_a", "_b"))
    rounds_a = {k: dict(zip(g["round"], g["median_ms"])) for k, g in a["rounds"].groupby(KEY)}
    rounds_b = {k: dict(zip(g["round"], g["median_ms"])) for k, g in b["rounds"].groupby(KEY)}
    rows = []
    for row in cells.to_dict("records"):
        key = tuple(row[k] for k in KEY)
        ratio = lo = hi = None
        if key in rounds_a and key in rounds_b:
            result = stats.round_ratio_ci(rounds_b[key], rounds_a[key], paired=False)  # latency B / latency A
            ratio, lo, hi = result["ratio"], result["lo"], result["hi"]
        significant = ratio is not None and not stats.indistinguishable({"lo": lo, "hi": hi}) and abs(ratio - 1) >= min_change
        if pd.isna(row["status_a"]) or pd.isna(row["status_b"]):
            verdict = "only in A" if pd.isna(row["status_b"]) else "only in B"
        elif row["status_a"] != row["status_b"]:
            verdict = f"status {row['status_a']} → {row['status_b']}"
        elif significant:
            verdict = "slower" if ratio > 1 else "faster"
        else:
            verdict = "same" if ratio is not None else "not measured"
        inside = (row["ci_lo_ms_a"] <= row["median_ms_b"] <= row["ci_hi_ms_a"]) if ratio is not None else None
        rows.append({**row, "ratio_b_over_a": ratio, "ratio_lo": lo, "ratio_hi": hi, "significant": significant,
                     "b_inside_a_interval": inside, "verdict": verdict})
    frame = pd.DataFrame(rows, columns=[*cells.columns, "ratio_b_over_a", "ratio_lo", "ratio_hi", "significant",
                                        "b_inside_a_interval", "verdict"])  # no rows: a run that only generated
    return frame.sort_values(KEY).reset_index(drop=True)


def between_run_drift(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> dict:
    """The between-run drift seen by two runs of the same cells: {"host_drift", "systematic_rel", "cells"}
    (``timing.host_drift`` and ``timing.systematic_rel``; None where no cell was measured in both). Each cell
    contributes its log ratio of medians, less what its rounds already explain, by its host sensitivity in A
    (the replayed host response's elasticity; 1 - GPU busy share for tables without it; 1 on a CPU)."""
    def per_cell(run):
        logs = run["rounds"].assign(log=lambda f: np.log(f["median_ms"])).groupby(KEY)["log"]
        return pd.DataFrame({"mean": logs.mean(), "var_of_mean": logs.var(ddof=1) / logs.count()})

    ok = a["cells"][a["cells"]["status"] == "ok"].set_index(KEY)
    both = per_cell(a).merge(per_cell(b), left_index=True, right_index=True, suffixes=("_a", "_b")).join(ok, how="inner")
    if both.empty:
        return {"host_drift": None, "systematic_rel": None, "cells": 0}
    def column(name):
        return pd.to_numeric(both.get(name, pd.Series(index=both.index, dtype=float)), errors="coerce")
    sensitivity = column("host_sensitivity").fillna(1.0 - column("gpu_busy_share")).fillna(1.0)
    return stats.between_run_drift(both["mean_b"] - both["mean_a"],
                                   (both["var_of_mean_a"] + both["var_of_mean_b"]).fillna(0.0), sensitivity)


def reproducibility(table: pd.DataFrame) -> pd.DataFrame:
    """How well B reproduces A, by A's GPU busy class (host-bound cells drift with the host's CPU; on a CPU
    run every cell is host work): cells measured in both, the share of B's medians inside A's 95 %
    intervals, the between-run spread |B/A - 1| and A's interval half-width, as medians and maxima."""
    both = table[table["ratio_b_over_a"].notna()].copy()
    columns = ["class", "cells", "b_inside_a", "share_inside", "median_between_run", "max_between_run",
               "median_half_width", "max_half_width"]
    if both.empty:
        return pd.DataFrame(columns=columns)
    both["class"] = both["bound"].astype(object).fillna("no GPU busy share (CPU)")
    both["between_run"] = (both["median_ms_b"] / both["median_ms_a"] - 1).abs()
    both["half_width"] = (both["ci_hi_ms_a"] - both["ci_lo_ms_a"]) / 2 / both["median_ms_a"]
    rows = []
    for name, group in [("all", both), *both.groupby("class")]:
        inside = group["b_inside_a_interval"].astype(bool)
        rows.append({"class": name, "cells": len(group), "b_inside_a": int(inside.sum()), "share_inside": inside.mean(),
                     "median_between_run": group["between_run"].median(), "max_between_run": group["between_run"].max(),
                     "median_half_width": group["half_width"].median(), "max_half_width": group["half_width"].max()})
    return pd.DataFrame(rows, columns=columns)


def render(a: dict, b: dict, table: pd.DataFrame, labels: tuple[str, str], min_change: float, out: Path,
           drift: dict) -> str:
    """The comparison page; ``drift`` is ``between_run_drift(a, b)`` (the caller logs it too)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    notable = table[table["verdict"] != "same"]
    generation = generation_changes(a, b)
    html = env.get_template("compare.html.j2").render(
        generation=styled(generation) if not generation.empty else None,
        generation_inside=(int(generation["tpot_b_inside_a"].sum()), len(generation)),
        reproducibility=styled(reproducibility(table)),
        drift=drift,
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        labels=labels, min_change=min_change,
        counts=table["verdict"].value_counts().to_dict(),
        notable=styled(notable),
        everything=styled(table),
        environment_a=styled(a["environment"]), environment_b=styled(b["environment"]),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return html
