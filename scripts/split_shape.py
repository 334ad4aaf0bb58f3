"""Rule cell_record: one cell's record out of its shape job's bundle (what aggregation and the report read)."""

import argparse

from infbench import records

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--bundle", required=True)
parser.add_argument("--backend", required=True)
parser.add_argument("--precision", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
matches = [r for r in records.read_bundle(args.bundle)
           if r["key"]["backend"] == args.backend and r["key"]["precision"] == args.precision]
if len(matches) != 1:
    raise SystemExit(f"{args.bundle}: {len(matches)} records of {args.backend} {args.precision}, expected 1")
records.write(matches[0], args.out)
