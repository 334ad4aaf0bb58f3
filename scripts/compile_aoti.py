"""Rule compile_aoti: every AOTInductor package a model's matrix needs, in parallel, then the index.

Exits 0 when a compile fails: the package's sidecar holds the status and reason, and its cells record them.
"""

import argparse
import json
import logging
from pathlib import Path

from infbench import aoti, devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", required=True, help="the model's manifest.json (its directory holds the weights)")
    parser.add_argument("--packages", required=True, help="the package specs as JSON (infbench.aoti.package_spec)")
    parser.add_argument("--device", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", required=True, help="the index (packages beside it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    out = Path(args.out)
    with devices.heavy():  # never beside a timing round (infbench/devices.py)
        index = aoti.compile_all(Path(args.manifest).parent, json.loads(args.packages), out.parent, args.device, args.workers)
    for key, info in sorted(index.items()):
        logging.info("%s %s %s %s: %s%s, %.1f s", key, info["spec"]["backend"], info["spec"]["precision"],
                     info["spec"]["profile"], info["status"], " (reused)" if info.get("reused") else "",
                     info.get("compile_seconds") or 0.0)
    out.write_text(json.dumps(index, indent=1, sort_keys=True))


if __name__ == "__main__":  # the compile workers are spawned: they re-import this module
    main()
