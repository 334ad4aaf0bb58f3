"""Compare two result sets (their results/tables directories) → one diff page with significant changes marked.

    python3 -m scripts.compare_runs A/results/tables B/results/tables --out report/compare.html

A directory without the tables, or a table that cannot be read, is one line naming it (exit status 1).
"""

import argparse
import logging
from pathlib import Path

from infbench import compare
from infbench.records import one_line

TABLES = ("cells", "rounds", "environment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="tables directory of run A (the reference)")
    parser.add_argument("b", help="tables directory of run B")
    parser.add_argument("--label-a", default=None)
    parser.add_argument("--label-b", default=None)
    parser.add_argument("--min-change", type=float, default=0.05, help="smallest relative change that counts")
    parser.add_argument("--out", required=True, help="the HTML page")
    parser.add_argument("--csv", default=None, help="also write the comparison table here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    for directory in (args.a, args.b):
        missing = [f"{name}.csv" for name in TABLES if not (Path(directory) / f"{name}.csv").is_file()]
        if not Path(directory).is_dir():
            raise SystemExit(f"compare_runs: {directory}: no such directory (a results/tables directory?)")
        if missing:
            raise SystemExit(f"compare_runs: {directory}: no {', '.join(missing)} (a results/tables directory?)")
    try:
        a, b = compare.load(args.a), compare.load(args.b)
    except Exception as error:  # noqa: BLE001 - a table pandas cannot read: named, one line
        raise SystemExit(f"compare_runs: cannot read the tables of {args.a} or {args.b}: {type(error).__name__}: "
                         f"{one_line(str(error))}") from None
    try:
        table = compare.changes(a, b, args.min_change)
        if args.csv:
            table.to_csv(args.csv, index=False)
        drift = compare.between_run_drift(a, b)
        compare.render(a, b, table, (args.label_a or args.a, args.label_b or args.b), args.min_change, args.out, drift)
    except KeyError as error:
        raise SystemExit(f"compare_runs: a table of {args.a} or {args.b} lacks column {error} (tables of another "
                         "version?)") from None
    except OSError as error:
        raise SystemExit(f"compare_runs: {type(error).__name__}: {one_line(str(error))}") from None
    logging.info("compare: %s", table["verdict"].value_counts().to_dict())
    generation = compare.generation_changes(a, b)
    if not generation.empty:
        logging.info("generation: %d of %d cells have B's time per token inside A's 95 %% interval",
                     int(generation["tpot_b_inside_a"].sum()), len(generation))
    logging.info("drift between the runs, from %d cells: %s", drift["cells"], "not estimable" if drift["host_drift"] is None
                 else f"timing.host_drift {drift['host_drift']:.3f}, timing.systematic_rel {drift['systematic_rel']:.4f}")


if __name__ == "__main__":
    main()
