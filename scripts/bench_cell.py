"""Rule bench: time one cell (model, backend, precision, batch, seq_len) and write its record.

Always writes a record and exits 0 for a cell that failed to measure: the failure is data (status + reason),
and the rest of the matrix, the tables and the report still complete. The cell runs in a forked child of
the cell worker (infbench/worker.py: imports paid once per run) unless INFBENCH_WORKER=0.
"""

import time

PROCESS_START = time.perf_counter()  # before the imports: the cell's overhead includes them

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from infbench import cell, devices, worker  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--cell", required=True, help="key, options, device, timing, tolerance as JSON")
parser.add_argument("--manifest", required=True, help="the model's manifest.json (its directory holds the weights)")
parser.add_argument("--reference", required=True)
parser.add_argument("--graph", default=None)
parser.add_argument("--engine", default=None, help="a serialized TensorRT engine (build_engine rule)")
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--log", required=True, help="this job's log path, stored in the record")
parser.add_argument("--timeout", type=int, default=None, help="seconds before the cell process is killed")
parser.add_argument("--out", required=True)
args = parser.parse_args()
request = {
    "cell": json.loads(args.cell), "manifest": args.manifest, "reference": args.reference, "graph": args.graph, "engine": args.engine,
    "threads": args.threads, "log": args.log, "out": args.out, "process_start": PROCESS_START,
    "timeout_s": args.timeout,
}
Path(args.out).unlink(missing_ok=True)
waiting = time.perf_counter()
with devices.leased(devices.scheduled(request["cell"]["device"])):
    request["lease_wait_s"] = time.perf_counter() - waiting  # not the cell's cost: reported apart
    reply = worker.run_job(request)
if not Path(args.out).exists():
    if reply.get("timed_out"):
        reason = f"timed out after {request['timeout_s']} s (cell_timeout_s): the cell process was killed"
    else:
        reason = f"cell process exited with {reply.get('exit')} before writing its record"
    cell.failed_without_record(request, reason)
