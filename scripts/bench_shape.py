"""Rule bench: time every cell of one shape (model, batch, seq_len) in interleaved rounds; write their records.

Always writes a record for every cell and exits 0 for cells that failed to measure: the failure is data
(status + reason), and the rest of the matrix, the tables and the report still complete. The session runs
in a forked child of the cell worker (infbench/worker.py: imports paid once per run) unless INFBENCH_WORKER=0.
If the session dies (a crash, or a step past --timeout seconds), its progress file names the cell it was
working on: that cell is recorded as failed with the reason, and the session runs again without it.
"""

import time

PROCESS_START = time.perf_counter()  # before the imports: the session's cost includes them

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from infbench import cell, devices, records, worker  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--shape", required=True, help="device, timing, stability and the cells (key, options, "
                    "graph, engine, tolerance) as JSON")
parser.add_argument("--manifest", required=True, help="the model's manifest.json (its directory holds the weights)")
parser.add_argument("--reference", required=True)
parser.add_argument("--threads", type=int, required=True)
parser.add_argument("--log", required=True, help="this job's log path, stored in the records")
parser.add_argument("--timeout", type=int, default=None, help="seconds one step (a cell's prepare, or one of "
                    "its rounds) may take before the session is killed")
parser.add_argument("--out", required=True, help="the bundle of the shape's records")
args = parser.parse_args()
shape = json.loads(args.shape)
request = {
    **shape, "manifest": args.manifest, "reference": args.reference, "threads": args.threads, "log": args.log,
    "out": args.out, "process_start": PROCESS_START, "step_timeout_s": args.timeout, "progress": f"{args.out}.progress",
}
out = Path(args.out)
out.unlink(missing_ok=True)
failed: list[dict] = []
pending = list(shape["cells"])
waiting = time.perf_counter()
# on a GPU host: a GPU for the session; its preparation runs beside other sessions' and its rounds take turns
# with theirs on the host's timing lock (infbench/devices.py). On the CPU: the CPU's timing lease.
with devices.placed(shape["device"]):
    if devices.gated(shape["device"]):  # sessions compile side by side: a share of the cores each
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(2, (os.cpu_count() or 8) // 4)))
    request["lease_wait_s"] = time.perf_counter() - waiting  # not the cells' cost: reported apart
    while pending:
        Path(request["progress"]).unlink(missing_ok=True)
        # the job's own deadline is a backstop: the session's watchdog ends a stuck step after --timeout
        steps = len(pending) * (2 + int(shape["timing"].get("rounds", 1)))
        reply = worker.run_job({**request, "job": "shape", "cells": pending,
                                "timeout_s": args.timeout and args.timeout * steps})
        if out.exists():
            break
        step = cell.last_step(request["progress"]) or {}
        if step.get("step") == "wait":  # died while others timed or prepared: no cell of it is to blame
            reason = (f"the shape session exited with {reply.get('exit')} while waiting for the host's timing "
                      "lock, before writing records")
            print(reason, flush=True)
            failed += [cell.failed_without_record(request, c, reason) for c in pending]
            break
        culprit = next((c for c in pending if f"{c['key']['backend']}/{c['key']['precision']}" == step.get("cell")),
                       pending[0])
        elapsed = time.time() - step["t"] if step.get("t") else None
        where = f"during {step.get('step', 'start-up')}" + (f" (round {step['round']})" if step.get("round") is not None else "")
        if reply.get("timed_out") or (args.timeout and elapsed is not None and elapsed >= args.timeout):
            reason = f"timed out after {args.timeout} s (cell_timeout_s) {where}: the shape session was killed"
        else:
            reason = f"the shape session exited with {reply.get('exit')} {where} before writing records"
        print(f"{step.get('cell') or 'session'}: {reason}; measuring the others again without it", flush=True)
        failed.append(cell.failed_without_record(request, culprit, reason))
        pending = [c for c in pending if c is not culprit]
measured = records.read_bundle(out) if out.exists() else []
by_key = {json.dumps(r["key"], sort_keys=True): r for r in [*measured, *failed]}
records.write_bundle([by_key[json.dumps(c["key"], sort_keys=True)] for c in shape["cells"]], out)
Path(request["progress"]).unlink(missing_ok=True)
