"""Rules build_ort_genai and export_decoder: one ONNX Runtime generation model directory (its manifest.json).

``ort_genai``: onnxruntime-genai's model builder on the saved model; ``ort_decoder``: infbench's export of the
decoder with its KV cache, fused and typed (infbench/workloads/generate/ort_build.py). The weights are drawn on
the session's device, as the session's own model is. A failure exits 0 with a failed manifest: every cell
that reads it records the reason.
"""

import argparse
import json
import logging
from pathlib import Path

from infbench import devices
from infbench.workloads.generate import ort_build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", required=True, help="ort_build.build_params(...) as JSON")
    parser.add_argument("--out", required=True, help="the directory's manifest.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    params = json.loads(args.build)
    # heavy work on the session's device: never beside a timing round (infbench/devices.py)
    with devices.placed(params["device"], timing=False), devices.host_shared(params["device"]):
        info = ort_build.build(params, Path(args.out))
    logging.info("%s %s: %s %s fused %s in %.1f s", params["engine"], params["precision"], info["status"],
                 info["reason"] or "", json.dumps(info.get("fused_ops")), info["seconds"])


if __name__ == "__main__":  # a typed export runs in a spawned child, which imports this module again
    main()
