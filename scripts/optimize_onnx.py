"""Rule optimize_onnx: transformer fusions for ONNX Runtime, parity-checked against the exported graph.

A failure (or a failed export) exits 0 with a failed sidecar: see infbench.onnx_graphs.guarded.
"""

import argparse
import json
import logging
from pathlib import Path

from infbench import devices, onnx_graphs

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--exported", required=True)
parser.add_argument("--manifest", required=True, help="the model's manifest.json (its directory holds the weights)")
parser.add_argument("--out", required=True)
parser.add_argument("--parity-rtol", type=float, required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
with devices.heavy():  # never beside a timing round (infbench/devices.py)
    info = onnx_graphs.guarded("ORT fusion", Path(args.out), lambda: onnx_graphs.optimize(
        args.exported, args.out, Path(args.manifest).parent, args.parity_rtol), upstream=Path(args.exported))
logging.info("optimized: %s", json.dumps({k: info.get(k) for k in ("status", "reason", "parity", "fused_ops", "fusions")}))
