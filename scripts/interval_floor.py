"""How narrow could any interval be? The hindsight floor under a run's published intervals.

For every cell of one published run, the re-measurements of it that other runs and an outside harness made:
single timing windows (each run's rounds.csv: one median per round; an outside harness's measured.csv: one
median per window) and, apart, whole runs' medians (each run's cells.csv). For each, the narrowest interval
that holds a share of them (0.90, 0.95):
- centred on the published median (symmetric on the log scale), as the published interval is;
- anywhere (the shortest), chosen after seeing every re-measurement: no estimator from one run does better.
Summarised by the published run's GPU busy class: the median half-width of each, how many cells need more than
a threshold (default ±3 %), and the share of windows the published intervals hold.

Why: a target such as "GPU-bound 95 % intervals within ±3 %, holding ≥ 90 % of an outside harness's
re-measurements" is about the data before it is about an estimator. Where even the hindsight interval over
windows from several machines and days is wider than ±3 %, no interval built from one run can be both that
narrow and hold an outside harness's windows; where the run medians' floor is narrow, an interval for a
rerun's *median* could be. The table says which.

    python3 -m scripts.interval_floor --published report/reference/h100 \\
        --run "run 5=report/reference/h100/reproducibility/run5" ... \\
        --measured report/reference/h100/reproducibility/independent/measured.csv --out floor.csv
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from infbench.measure.gpu_busy import CLASSES
from infbench.tables import KEY

SHARES = (0.90, 0.95)


def _needed(n: int, share: float) -> int:
    return max(1, math.ceil(share * n - 1e-9))


def centred_half(values, centre: float, share: float) -> float:
    """Smallest relative half-width h with ``share`` of ``values`` in [centre / (1 + h), centre * (1 + h)]."""
    logs = np.abs(np.log(np.asarray(values, dtype=float) / centre))
    if logs.size == 0:
        return math.nan
    return math.expm1(float(np.sort(logs)[_needed(logs.size, share) - 1]))


def shortest_half(values, share: float) -> float:
    """Half the log width, as a relative half-width, of the shortest interval holding ``share`` of ``values``."""
    logs = np.sort(np.log(np.asarray(values, dtype=float)))
    if logs.size == 0:
        return math.nan
    k = _needed(logs.size, share)
    return math.expm1(float(np.min(logs[k - 1:] - logs[: logs.size - k + 1])) / 2)


def floor_table(published: pd.DataFrame, windows: pd.DataFrame, medians: pd.DataFrame) -> pd.DataFrame:
    """One row per ok cell of ``published`` (cells.csv) with re-measurements: its published half-width (the
    wider side), the share of ``windows`` (KEY + median_ms) its interval holds, and the centred and shortest
    half-widths holding each share of the windows and of the run ``medians`` (KEY + median_ms)."""
    cells = published[published["status"] == "ok"].set_index(KEY)
    # no busy share (a CPU run): every cell is host work, as scripts.coverage_matrix counts it
    bounds = cells.get("bound", pd.Series(index=cells.index, dtype=object)).astype(object).fillna("host-bound")
    by_window = {key: part["median_ms"].to_numpy() for key, part in windows.groupby(KEY)}
    by_run = {key: part["median_ms"].to_numpy() for key, part in medians.groupby(KEY)}
    rows = []
    for key, cell in cells.iterrows():
        seen = by_window.get(key)
        if seen is None or not len(seen):
            continue
        lo, hi, centre = cell["ci_lo_ms"], cell["ci_hi_ms"], cell["median_ms"]
        row = dict(zip(KEY, key), bound=bounds[key], windows=len(seen),
                   published_half=math.expm1(max(math.log(hi / centre), math.log(centre / lo))),
                   held=float(np.mean((seen >= lo) & (seen <= hi))))
        runs = by_run.get(key, np.array([]))
        row["runs"] = len(runs)
        for share in SHARES:
            tag = f"{round(share * 100)}"
            row[f"window_centred_{tag}"] = centred_half(seen, centre, share)
            row[f"window_shortest_{tag}"] = shortest_half(seen, share)
            row[f"median_centred_{tag}"] = centred_half(runs, centre, share)
            row[f"median_shortest_{tag}"] = shortest_half(runs, share)
        rows.append(row)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, threshold: float = 0.03) -> pd.DataFrame:
    """Per class: cells, the median of each half-width column, how many cells exceed ``threshold``, and the
    share of all windows the published intervals hold."""
    halves = [c for c in table.columns if c == "published_half" or c.startswith(("window_", "median_"))]
    rows = []
    for name in CLASSES:
        part = table[table["bound"] == name]
        if part.empty:
            continue
        row = {"bound": name, "cells": len(part),
               "windows_held": round(float(np.average(part["held"], weights=part["windows"])), 3)}
        for column in halves:
            row[f"{column}_median"] = round(float(part[column].median()), 4)
            over = part[column] > threshold * (1 + 1e-9)  # a cell at exactly the threshold is within it
            row[f"{column}_over"] = f"{int(over.sum())}/{int(part[column].notna().sum())}"
        rows.append(row)
    return pd.DataFrame(rows)


def _windows(runs: list[Path], measured: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    windows, medians = [], []
    for path in runs:
        windows.append(pd.read_csv(path / "rounds.csv")[KEY + ["median_ms"]])
        cells = pd.read_csv(path / "cells.csv")
        medians.append(cells[cells["status"] == "ok"][KEY + ["median_ms"]])
    for path in measured:
        table = pd.read_csv(path)
        windows.append(table[table["status"] == "ok"][KEY + ["median_ms"]])
    return pd.concat(windows, ignore_index=True), pd.concat(medians, ignore_index=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--published", required=True, type=Path, help="the run whose intervals are judged (cells.csv)")
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=TABLES_DIR",
                        help="another run of the matrix (its rounds.csv and cells.csv); repeat")
    parser.add_argument("--measured", action="append", default=[], type=Path,
                        help="an outside harness's measured.csv (tools/independent_check.py); repeat")
    parser.add_argument("--threshold", type=float, default=0.03, help="the half-width counted against (0.03: ±3 %%)")
    parser.add_argument("--out", required=True, type=Path, help="per-cell CSV; the summary goes beside it")
    args = parser.parse_args(argv)
    if not (args.published / "cells.csv").is_file():
        parser.error(f"--published {args.published}: no cells.csv there")
    runs = []
    for given in args.run:
        label, sep, path = given.partition("=")
        if not sep or not label or not (Path(path) / "rounds.csv").is_file():
            parser.error(f"--run {given!r}: expected LABEL=TABLES_DIR with rounds.csv and cells.csv")
        runs.append(Path(path))
    for path in args.measured:
        if not path.is_file():
            parser.error(f"--measured {path}: no such file")
    if not runs and not args.measured:
        parser.error("--run or --measured: nothing to hold against the published intervals")
    windows, medians = _windows(runs, args.measured)
    table = floor_table(pd.read_csv(args.published / "cells.csv"), windows, medians)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.round(5).to_csv(args.out, index=False)
    brief = summary(table, args.threshold)
    brief.to_csv(args.out.with_name(args.out.stem + "_summary.csv"), index=False)
    print(f"{len(table)} cells, {len(windows)} windows of {len(runs)} runs and {len(args.measured)} harness "
          f"tables -> {args.out}")
    print(brief.T.to_string(header=False))


if __name__ == "__main__":
    main()
