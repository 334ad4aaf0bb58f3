"""Rule build_model: build (random init) or load (pretrained) one model into results/models/<model>/."""

import argparse
import json
import logging

from infbench import models

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--spec", required=True, help="the model's config entry, as JSON")
parser.add_argument("--out-dir", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
manifest = models.build(json.loads(args.spec), args.out_dir)
logging.info("built %s (%s parameters)", manifest["architecture"], f"{manifest['parameters']:,}")
