"""What predicts a window's level? Reads published runs' rounds.csv (CPU only, no GPU needed).

A cell whose round medians form two levels (infbench.measure.spread.levels: the small CUDA-graph replays) has
each window on its low or its high level. This sets the share of low-level windows against what the session
did earlier in the same round, pooled over several runs (infbench.measure.order, which the report applies to
one run): for every other cell C, the share among windows that C's window preceded in their round vs among
those it did not (position >= 1: at position 0 nothing preceded), named one at a time by a test within
positions (``order.predictors``); then, for the leading backend (any precision), the shares overall, by cell
and by position.

    python3 level_predictors.py --backends graph reference=../../report/reference/h100/rounds.csv \
        run8=../../report/reference/h100/reproducibility/run8/rounds.csv [--out predictors.csv]

Why pooled over runs: ten runs give over a thousand windows of the same cells under shuffled orders, which no
single GPU experiment matches. It shows association, not cause: a candidate is then tested on the GPU
(level_bisect.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from infbench.measure import order  # noqa: E402


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
        parts.append(order.windows(pd.read_csv(path), args.backends).assign(run=label))
    seen = pd.concat(parts, ignore_index=True)
    if seen.empty:
        raise SystemExit("no cell of these runs has two levels: nothing to predict")
    table = order.predictors(seen)
    print(f"{len(seen)} windows of {seen.groupby(['run', 'cell', 'batch', 'seq_len']).ngroups} two-level cells "
          f"in {len(parts)} runs; low-level share {seen.low.mean():.2f}")
    print("low-level share by position:",
          " ".join(f"{p}:{share:.2f}" for p, share in seen.groupby("position").low.mean().items()))
    print(table.round(3).to_string(index=False))
    backend = table.earlier_in_round[0].split("/")[0]
    later = seen[seen.position >= 1]
    after = order.after_backend(later, backend)
    shares = later.groupby(after).low.agg(["mean", "size"])
    print(f"\nafter a {backend} window (any precision) or not: low-level share (windows)")
    print(shares.round(2).to_string())
    print("by cell:")
    print(later.groupby(["cell", after]).low.mean().unstack().round(2).to_string())
    print("by position:")
    print(order.by_position(seen, backend).round(2).to_string())
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
