"""Rule convert_precision: the fp16 or bf16 version of an ONNX graph (fp16 ORT cells, typed TensorRT-RTX builds)."""

import argparse
import json
import logging
from pathlib import Path

from infbench import devices, onnx_graphs, onnx_precision

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--graph", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--precision", required=True, choices=["fp16", "bf16"])
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
with devices.heavy():  # never beside a timing round (infbench/devices.py)
    info = onnx_graphs.guarded(f"{args.precision} conversion", Path(args.out),
                              lambda: onnx_precision.to_typed(args.graph, args.out, args.precision), upstream=Path(args.graph))
logging.info("%s: %s %s", args.precision, info["status"], json.dumps(info["fused_ops"]))
