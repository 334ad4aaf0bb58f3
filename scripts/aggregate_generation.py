"""Rule aggregate_generation: every generation record → results/tables/generation.csv and generation_best.csv."""

import argparse
import json
import logging

from infbench import tables
from infbench.workloads.generate import tables as generation_tables

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--baseline", default="null", help="the generation baseline entry as JSON (null: none)")
parser.add_argument("--practical-margin", type=float, default=0.0, help="a lead below this fraction is a tie")
parser.add_argument("--out-dir", required=True)
parser.add_argument("--mix-environments", action="store_true", help="keep unlike environments apart, not refused")
parser.add_argument("--records", nargs="*", default=[])
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
try:
    recs = tables.load(args.records)
except tables.CorruptRecords as error:
    raise SystemExit(f"aggregate_generation: unreadable record(s): {error}; delete them and run snakemake again "
                     "(their shapes are measured again)") from None
try:
    tables.check_environments(recs, args.mix_environments)
except tables.MixedEnvironments as error:
    raise SystemExit(f"aggregate_generation: {error}") from None
frames = generation_tables.write_all(recs, json.loads(args.baseline), args.out_dir, args.practical_margin)
logging.info("generation tables: %s", {name: len(frame) for name, frame in frames.items()})
