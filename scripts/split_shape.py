"""Rule cell_record: one cell's record out of its shape job's bundle (what aggregation and the report read)."""

import argparse
from pathlib import Path

from infbench import records

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--bundle", required=True)
parser.add_argument("--backend", required=True)
parser.add_argument("--precision", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
try:
    bundle = records.read_bundle(args.bundle)
except records.Unreadable as error:
    # a truncated bundle is removed, so that the next run measures its shape again
    Path(args.bundle).unlink(missing_ok=True)
    raise SystemExit(f"{error}: removed; run snakemake again to re-measure this shape") from None
matches = [r for r in bundle if r["key"]["backend"] == args.backend and r["key"]["precision"] == args.precision]
if len(matches) != 1:
    raise SystemExit(f"{args.bundle}: {len(matches)} records of {args.backend} {args.precision}, expected 1")
records.write(matches[0], args.out)
