"""Rule aggregate: every record (+ the device's peaks and the models' counted FLOPs) → tidy CSV tables.

A model's FLOP counts are read from the sidecars beside its references (see infbench.roofline.model_work);
a model whose counts cannot be read loses its roofline rows with a warning, never the tables.
"""

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
parser.add_argument("--work", nargs="*", default=None,
                    help="the reference jobs' FLOP counts (results/reference/<model>/*.json); default: found beside "
                         "each manifest's results tree")
parser.add_argument("--mix-environments", action="store_true", help="keep unlike environments apart, not refused")
parser.add_argument("--records", nargs="+", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
peaks = json.loads(Path(args.peaks).read_text()) if args.peaks else None


def model_work(manifest: str) -> dict | None:
    model = Path(manifest).parent.name
    paths = None if args.work is None else [p for p in args.work if Path(p).parent.name == model]
    try:
        return roofline.model_work(Path(manifest), paths)
    except (OSError, ValueError, KeyError, TypeError) as error:
        logging.warning("roofline: no counted work for %s (%s: %s)", model, type(error).__name__, error)
        return None


geometries = {Path(m).parent.name: work for m in args.manifests if (work := model_work(m)) is not None}
try:
    frames = tables.write_all(args.records, json.loads(args.baseline), args.out_dir, peaks, geometries,
                              args.mix_environments)
except tables.MixedEnvironments as error:
    raise SystemExit(f"aggregate: {error}") from None
logging.info("tables: %s", {name: len(frame) for name, frame in frames.items()})
