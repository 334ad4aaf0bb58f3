"""Every ordered pair of several runs of one matrix → one CSV: how many medians of one run lie inside the
other's 95 % intervals, by the GPU busy class of one chosen run (so that every pair counts the same cells in
the same class), the median half-width of the intervals (their slow side, log scale: log(hi / median)) and the median
change |B / A - 1| per class, and the host drift and
GPU-side drift that scripts.compare_runs estimates from the pair.

Why one chosen run's classes: a cell's class moves a little between runs (its busy share is measured in each),
and a table whose rows count different cells per class cannot be read down a column.

    python3 -m scripts.coverage_matrix --run "reference=report/reference/h100" --run "run 5=run5/tables" \\
        --classes-from reference --out coverage.csv
"""

import argparse
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd

from infbench import compare
from infbench.measure.gpu_busy import CLASSES
from infbench.tables import KEY


def pair(label_a: str, a: dict, label_b: str, b: dict, by: pd.Series) -> dict:
    """One row: B's medians against A's intervals (compare.changes' ``b_inside_a_interval``), by class ``by``."""
    table = compare.changes(a, b)
    both = table[(table["status_a"] == "ok") & (table["status_b"] == "ok")].set_index(KEY)
    both = both.assign(cls=by.reindex(both.index), inside=both["b_inside_a_interval"].astype(bool),
                       half=np.log(both["ci_hi_ms_a"] / both["median_ms_a"]),
                       change=(both["median_ms_b"] / both["median_ms_a"] - 1).abs())
    row = {"intervals_of": label_a, "medians_of": label_b,
           "all_inside": f"{int(both['inside'].sum())}/{len(both)}"}
    for name in CLASSES:
        part = both[both["cls"] == name]
        row[f"{name}_inside"] = f"{int(part['inside'].sum())}/{len(part)}"
    row["share_inside"] = round(float(both["inside"].mean()), 3) if len(both) else None
    for name in CLASSES:
        part = both[both["cls"] == name]
        row[f"{name}_median_half_width"] = round(float(part["half"].median()), 4) if len(part) else None
        row[f"{name}_median_change"] = round(float(part["change"].median()), 4) if len(part) else None
    drift = compare.between_run_drift(a, b)
    row["host_drift_estimate"] = None if drift["host_drift"] is None else round(drift["host_drift"], 3)
    row["systematic_estimate"] = None if drift["systematic_rel"] is None else round(drift["systematic_rel"], 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=TABLES_DIR",
                        help="a run's label and its tables directory (cells.csv, rounds.csv); two or more")
    parser.add_argument("--classes-from", required=True, help="the label of the run whose GPU busy classes count")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs = {}
    for given in args.run:
        label, sep, path = given.partition("=")
        if not sep or not label or not path:
            parser.error(f"--run {given!r}: expected LABEL=TABLES_DIR")
        runs[label] = compare.load(Path(path))
    if args.classes_from not in runs:
        parser.error(f"--classes-from {args.classes_from!r}: not one of the runs ({', '.join(runs)})")
    # no busy share (a CPU run): every cell is host work
    by = runs[args.classes_from]["cells"].set_index(KEY)["bound"].astype(object).fillna("host-bound")
    rows = [pair(a, runs[a], b, runs[b], by) for a, b in permutations(runs, 2)]
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"{len(rows)} ordered pairs of {len(runs)} runs -> {args.out}")


if __name__ == "__main__":
    main()
