"""Rule figures: the tables → PNG figures in results/figures/."""

import argparse
import json
import logging
from pathlib import Path

from infbench import figures, tables
from infbench.workloads.generate import tables as generation_tables

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--tables-dir", required=True)
parser.add_argument("--baseline", required=True, help="baseline entry as JSON")
parser.add_argument("--peaks", default=None, help="results/device/peaks.json")
parser.add_argument("--out-dir", required=True)
parser.add_argument("--labels", default="{}", help="backend → display name overrides as JSON (config backends.*.label)")
parser.add_argument("--generation-labels", default="{}", help="the same for generation.backends.*.label")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
peaks = json.loads(Path(args.peaks).read_text()) if args.peaks else None
frames = {**tables.read_all(args.tables_dir), **(generation_tables.read_all(args.tables_dir) or {})}
paths = figures.write_all(frames, json.loads(args.baseline), args.out_dir, peaks, json.loads(args.labels),
                          json.loads(args.generation_labels))
logging.info("figures: %s", [str(p) for p in paths.values()])
