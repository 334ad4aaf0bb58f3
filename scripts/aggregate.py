"""Rule aggregate: every record (+ the device's peaks and the models' geometry) → tidy CSV tables."""

import argparse
import json
import logging
from pathlib import Path

from infbench import roofline, tables

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--baseline", required=True, help="baseline entry as JSON")
parser.add_argument("--out-dir", required=True)
parser.add_argument("--peaks", default=None, help="results/device/peaks.json (for the roofline)")
parser.add_argument("--manifests", nargs="*", default=[], help="models' manifest.json (for the roofline)")
parser.add_argument("--mix-environments", action="store_true", help="keep unlike environments apart, not refused")
parser.add_argument("--records", nargs="+", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
peaks = json.loads(Path(args.peaks).read_text()) if args.peaks else None
geometries = {Path(m).parent.name: roofline.model_geometry(Path(m).parent) for m in args.manifests}
try:
    frames = tables.write_all(args.records, json.loads(args.baseline), args.out_dir, peaks, geometries,
                              args.mix_environments)
except tables.MixedEnvironments as error:
    raise SystemExit(f"aggregate: {error}") from None
logging.info("tables: %s", {name: len(frame) for name, frame in frames.items()})
