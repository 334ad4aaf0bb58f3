"""Rule bench_generate: one generation shape session (model, batch, prompt_len) → the bundle of its records.

Every generation backend and precision of the shape is prepared once and timed in interleaved rounds
(infbench/workloads/generate/session.py). The device's measured copy bandwidth (rule device_peaks) sets each
cell's decode floor. Never fails the run: whatever a backend does becomes its record.
"""

import argparse
import json
import logging
import os
from pathlib import Path

from infbench import devices, records
from infbench.workloads.generate import session

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--request", required=True, help="the shape's model spec, device, timing and cells, as JSON")
parser.add_argument("--peaks", default=None, help="results/device/peaks.json (the decode floor's bandwidth)")
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--log", required=True, help="this job's log path, stored in the records")
parser.add_argument("--out", required=True, help="the bundle of the shape's records")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
request = {**json.loads(args.request), "threads": args.threads, "log": args.log}
try:
    request["bandwidth_bytes_per_s"] = json.loads(Path(args.peaks).read_text()).get("copy_bytes_per_s") if args.peaks else None
except (OSError, ValueError, AttributeError):
    request["bandwidth_bytes_per_s"] = None  # no floor, never no record
Path(args.out).unlink(missing_ok=True)
with devices.placed(request["device"]):
    import torch

    if request["device"] == "cpu":
        torch.set_num_threads(args.threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    recs = session.run_shape(request)
records.write_bundle(recs, args.out)
for record in recs:
    logging.info("%s %s: %s %s", record["key"]["backend"], record["key"]["precision"], record["status"], record["reason"] or "")
