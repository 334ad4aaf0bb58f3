"""Recompute the statistics of existing records from their raw rounds with the current estimator
(infbench.measure.stats), in place. For a results tree measured before an estimator change, or with a newly
calibrated ``timing.host_drift`` or ``timing.systematic_rel``: the samples are the data, the summary is derived.
Each rewritten record says so (timing.resummarized_at), and its policy names the values it was summarized with.

    python3 -m scripts.resummarize results/cells [--max-cv 0.1 --max-clock-change 0.1] [--host-drift D]
                                                 [--systematic-rel G]
"""

import argparse
from pathlib import Path

from infbench import cell, records

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("cells", help="a results/cells directory")
parser.add_argument("--max-cv", type=float, default=0.1, help="stability.max_cv of the run")
parser.add_argument("--max-clock-change", type=float, default=0.1, help="stability.max_clock_change of the run")
parser.add_argument("--host-drift", type=float, default=None,
                    help="a new timing.host_drift (e.g. estimated by scripts.compare_runs); default: the record's own")
parser.add_argument("--systematic-rel", type=float, default=None,
                    help="a new timing.systematic_rel (e.g. estimated by scripts.compare_runs); default: the record's own")
args = parser.parse_args()
count = 0
for path in sorted(Path(args.cells).rglob("*.json")):
    record = records.read(path)
    if record["status"] != "ok" or not (record.get("timing") or {}).get("rounds"):
        continue
    for key, value in (("host_drift", args.host_drift), ("systematic_rel", args.systematic_rel)):
        if value is not None:
            record["timing"].setdefault("policy", {})[key] = value
    cell.summarize(record, {"max_cv": args.max_cv, "max_clock_change": args.max_clock_change})
    record["timing"]["resummarized_at"] = records.now()
    records.write(record, path)
    count += 1
print(f"{count} records resummarized")
