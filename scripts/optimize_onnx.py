"""Rule optimize_onnx: transformer fusions for ONNX Runtime, parity-checked against the exported graph."""

import argparse
import json
import logging

from infbench import onnx_graphs

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--exported", required=True)
parser.add_argument("--model-dir", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--parity-rtol", type=float, required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
info = onnx_graphs.optimize(args.exported, args.out, args.model_dir, args.parity_rtol)
logging.info("optimized: %s", json.dumps({k: info[k] for k in ("parity", "fused_ops", "fusions")}))
