"""Recompute the statistics of existing records from their raw rounds with the current estimator
(infbench.measure.stats; a generation cell's TPOT, TTFT and tokens/s with them), in place. For a results tree
measured before an estimator change, or with a newly calibrated ``timing.host_drift`` or ``timing.systematic_rel``:
the samples are the data, the summary is derived.
Each rewritten record says so (timing.resummarized_at), and its policy names the values it was summarized with.

All or nothing: every record is read and summarized before any is written, and the new records are written
to temporary files first, then renamed; a record that cannot be read or summarized is named in one line,
the tree is left as it was, and the exit status is 1 (as for a missing or empty directory).

    python3 -m scripts.resummarize results/cells [--max-cv 0.1 --max-clock-change 0.1] [--host-drift D]
                                                 [--systematic-rel G]
"""

import argparse
import math

from infbench import cell, records
from infbench.workloads.generate import session as generation


def finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", help="a results/cells directory")
    parser.add_argument("--max-cv", type=finite, default=0.1, help="stability.max_cv of the run")
    parser.add_argument("--max-clock-change", type=finite, default=0.1, help="stability.max_clock_change of the run")
    parser.add_argument("--host-drift", type=finite, default=None,
                        help="a new timing.host_drift (e.g. estimated by scripts.compare_runs); default: the record's own")
    parser.add_argument("--systematic-rel", type=finite, default=None,
                        help="a new timing.systematic_rel (e.g. estimated by scripts.compare_runs); default: the record's own")
    args = parser.parse_args()
    try:
        found = records.read_all(args.cells)
    except ValueError as error:
        raise SystemExit(f"resummarize: {error}; nothing rewritten") from None
    updated = []
    for path, record in found:
        try:
            if record["status"] != "ok" or not (record.get("timing") or {}).get("rounds"):
                continue
            for key, value in (("host_drift", args.host_drift), ("systematic_rel", args.systematic_rel)):
                if value is not None:
                    record["timing"].setdefault("policy", {})[key] = value
            limits = {"max_cv": args.max_cv, "max_clock_change": args.max_clock_change}
            if record["key"].get("workload") == "generate":
                generation.summarize(record, limits)
            else:
                cell.summarize(record, limits)
            record["timing"]["resummarized_at"] = records.now()
        except Exception as error:  # noqa: BLE001 - any record that cannot be summarized stops all, named
            raise SystemExit(f"resummarize: {path}: cannot be summarized ({type(error).__name__}: "
                             f"{records.one_line(str(error))}); nothing rewritten") from None
        updated.append((record, path))
    try:
        records.write_all(updated)
    except OSError as error:
        raise SystemExit(f"resummarize: {type(error).__name__}: {records.one_line(str(error))}; nothing rewritten") from None
    print(f"{len(updated)} records resummarized ({len(found) - len(updated)} not timed, left as they were)")


if __name__ == "__main__":
    main()
