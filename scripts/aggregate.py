"""Rule aggregate: every record → tidy CSV tables in results/tables/."""

import argparse
import json
import logging

from infbench import tables

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--baseline", required=True, help="baseline entry as JSON")
parser.add_argument("--out-dir", required=True)
parser.add_argument("records", nargs="+")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
frames = tables.write_all(args.records, json.loads(args.baseline), args.out_dir)
logging.info("tables: %s", {name: len(frame) for name, frame in frames.items()})
