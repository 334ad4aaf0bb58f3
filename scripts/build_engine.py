"""Rule build_engine: parse the ONNX graph and serialize one TensorRT / TensorRT-RTX engine with its sidecar.

Exits 0 when the library is missing or the build fails: the sidecar holds the status and reason, and every
cell of the engine records them (a failed build is data, not a stopped DAG).
"""

import argparse
import json
import logging

from infbench import devices, trt_build

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--graph", required=True)
parser.add_argument("--build", required=True, help="library, precision, profile, options as JSON")
parser.add_argument("--out", required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
build = json.loads(args.build)
# heavy: never beside a timing round; the builder times tactics on the device: one kernel timer at a time
with devices.heavy(), devices.autotune_exclusive():
    info = trt_build.build(args.graph, args.out, build["library"], build["precision"], build["profile"], build["options"])
logging.info("%s %s: %s, %s bytes, %.1f s", build["library"], build["precision"], info["status"],
             info["plan_bytes"], info.get("build_seconds") or 0.0)
if info["status"] != "ok":
    logging.warning("%s", info["reason"])
