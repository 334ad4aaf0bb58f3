"""Rule convert_fp16: the fp16 version of an (optimized) ONNX graph, for fp16 ONNX Runtime cells."""

import argparse
import json
import logging

from infbench import onnx_graphs

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--graph", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
info = onnx_graphs.to_fp16(args.graph, args.out)
logging.info("fp16: %s", json.dumps(info["fused_ops"]))
