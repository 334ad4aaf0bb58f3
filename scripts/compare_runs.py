"""Compare two result sets (their results/tables directories) → one diff page with significant changes marked.

    python3 -m scripts.compare_runs A/results/tables B/results/tables --out report/compare.html
"""

import argparse
import logging

from infbench import compare

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
a, b = compare.load(args.a), compare.load(args.b)
table = compare.changes(a, b, args.min_change)
if args.csv:
    table.to_csv(args.csv, index=False)
drift = compare.between_run_drift(a, b)
compare.render(a, b, table, (args.label_a or args.a, args.label_b or args.b), args.min_change, args.out, drift)
logging.info("compare: %s", table["verdict"].value_counts().to_dict())
logging.info("drift between the runs, from %d cells: %s", drift["cells"], "not estimable" if drift["host_drift"] is None
             else f"timing.host_drift {drift['host_drift']:.3f}, timing.systematic_rel {drift['systematic_rel']:.4f}")
