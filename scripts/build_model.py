"""Rule build_model: build (random init) or load (pretrained) one model into results/models/<model>/.

A model that cannot be built (an unreachable hub id, a config transformers refuses, no memory) is data: the
manifest records the failure and its one-line reason, every step that reads it (export, reference, compile,
cells) fails with `model: <reason>`, and the rest of the matrix and the report still complete.
"""

import argparse
import json
import logging

from pathlib import Path

from infbench import devices, models, records

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--spec", required=True, help="the model's config entry, as JSON")
parser.add_argument("--out-dir", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
spec = json.loads(args.spec)
try:
    with devices.heavy():  # never beside a timing round (infbench/devices.py)
        manifest = models.build(spec, args.out_dir)
except Exception as error:  # noqa: BLE001 - a model that cannot be built is recorded, not a stopped run
    logging.exception("model build failed")
    reason = f"{type(error).__name__}: {records.one_line(str(error))}"
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.out_dir) / "manifest.json").write_text(json.dumps(
        {"status": "failed", "reason": reason, "spec": spec, "input_names": [], "benchmarked": None}, indent=2))
else:
    logging.info("built %s (%s parameters)", manifest["architecture"], f"{manifest['parameters']:,}")
