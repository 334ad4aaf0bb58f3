"""Rule export_onnx: one ONNX graph per model, dynamic batch and sequence axes, checked and parity-tested.

A failed export exits 0 with a failed sidecar (infbench.onnx_graphs.guarded): the cells that need the graph
record the reason, and the rest of the matrix goes on.
"""

import argparse
import json
import logging
from pathlib import Path

from infbench import devices, onnx_graphs

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--manifest", required=True, help="the model's manifest.json (its directory holds the weights)")
parser.add_argument("--out", required=True)
parser.add_argument("--opset", type=int, required=True)
parser.add_argument("--parity-rtol", type=float, required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
with devices.heavy():  # never beside a timing round (infbench/devices.py)
    info = onnx_graphs.guarded("ONNX export", Path(args.out), lambda: onnx_graphs.export(
        Path(args.manifest).parent, args.out, args.opset, args.parity_rtol))
logging.info("exported: %s", json.dumps({k: info.get(k) for k in ("status", "reason", "parity", "fused_ops")}))
