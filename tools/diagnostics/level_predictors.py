"""What predicts a window's level? Reads published runs' rounds.csv (CPU only, no GPU needed).

A cell whose round medians form two levels (infbench.measure.spread.levels: the small CUDA-graph replays) has
each window on its low or its high level. This sets the share of low-level windows against what the session
did earlier in the same round: for every other cell C, the share among windows that C's window preceded in
their round vs among those it did not (position >= 1: at position 0 nothing preceded); and the share by
position. A cell that switches the level shows as the largest difference, at every position.

    python3 level_predictors.py reference=../../report/reference/h100/rounds.csv run8=.../run8/rounds.csv \
        [--out predictors.csv]

Why from the published rounds: each round records its session, its windows' order and their medians, so ten
runs give over a thousand windows of the same cells under shuffled orders, which no single GPU experiment
matches. It shows association, not cause: a candidate is then tested on the GPU (level_bisect.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from infbench.measure import spread  # noqa: E402

KEY = ["backend", "precision", "batch", "seq_len"]


def windows(rounds: pd.DataFrame, backends: str = "") -> pd.DataFrame:
    """One row per window of a two-level cell (of a backend matching the regular expression ``backends``): its
    level (``low``), position, and the cells timed before it in its round (``before``: a frozenset of
    'backend/precision')."""
    rounds = rounds.assign(cell=rounds.backend + "/" + rounds.precision)
    rows = []
    for _, cell in rounds[rounds.backend.str.contains(backends)].groupby(KEY):
        found = spread.levels(cell.median_ms)
        if not found:
            continue
        cut = np.sqrt(found["low_ms"] * found["high_ms"])  # the clusters are tight: any point between them
        for index, window in cell.iterrows():
            same = rounds[(rounds.session == window.session) & (rounds["round"] == window["round"])]
            rows.append({"cell": window.cell, "batch": window.batch, "seq_len": window.seq_len,
                         "position": window.position, "low": window.median_ms < cut,
                         "before": frozenset(same.cell[same.position < window.position])})
    return pd.DataFrame(rows, columns=["cell", "batch", "seq_len", "position", "low", "before"])


def predictors(seen: pd.DataFrame) -> pd.DataFrame:
    """For every cell C that preceded some window: the low-level share of windows (position >= 1) with and
    without C before them, their counts, and the difference; largest absolute difference first."""
    later = seen[seen.position >= 1]
    rows = []
    for candidate in sorted(set().union(*later.before)) if len(later) else []:
        after = later.before.apply(lambda before: candidate in before)
        rows.append({"earlier_in_round": candidate, "low_share_after": later.low[after].mean(),
                     "windows_after": int(after.sum()), "low_share_not_after": later.low[~after].mean(),
                     "windows_not_after": int((~after).sum())})
    table = pd.DataFrame(rows, columns=["earlier_in_round", "low_share_after", "windows_after",
                                        "low_share_not_after", "windows_not_after"])
    table["difference"] = table.low_share_after - table.low_share_not_after
    return table.reindex(table.difference.abs().sort_values(ascending=False).index).reset_index(drop=True)


def by_position(seen: pd.DataFrame, backend: str) -> pd.DataFrame:
    """The low-level share by position, with and without a cell of ``backend`` (any precision) earlier in the
    round: a backend that sets the level keeps its difference at every position, one that merely comes early
    does not."""
    after = seen.before.apply(lambda before: any(c.split("/")[0] == backend for c in before))
    after = after.map({True: "after", False: "not after"})
    return seen.groupby(["position", after]).low.agg(["mean", "size"]).unstack()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=path/to/rounds.csv")
    parser.add_argument("--backends", default="", help="only cells of backends matching this regular expression")
    parser.add_argument("--out", help="write the predictor table here (CSV)")
    args = parser.parse_args(argv)
    parts = []
    for run in args.runs:
        label, _, path = run.partition("=")
        if not path:
            parser.error(f"runs: {run!r} is not LABEL=path/to/rounds.csv")
        parts.append(windows(pd.read_csv(path), args.backends).assign(run=label))
    seen = pd.concat(parts, ignore_index=True)
    if seen.empty:
        raise SystemExit("no cell of these runs has two levels: nothing to predict")
    table = predictors(seen)
    print(f"{len(seen)} windows of {seen.groupby(['run', 'cell', 'batch', 'seq_len']).ngroups} two-level cells "
          f"in {len(parts)} runs; low-level share {seen.low.mean():.2f}")
    print("low-level share by position:",
          " ".join(f"{p}:{share:.2f}" for p, share in seen.groupby("position").low.mean().items()))
    print(table.round(2).to_string(index=False))
    backend = table.earlier_in_round[0].split("/")[0]
    print(f"\nlow-level share by position, after a {backend} window (any precision) or not:")
    print(by_position(seen, backend).round(2).to_string())
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
