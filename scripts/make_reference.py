"""Rule reference: the inputs of one shape and the eager PyTorch outputs (fp32, fp64) cells are judged by.

Runs in a forked child of the cell worker (imports paid once per run, see infbench/worker.py) like the
cells: on the GPU host a fresh interpreter spent ~16 s importing per reference.

Never fails the run: a reference that cannot be made (out of memory, no device, a crash) is written as a
file that records why (infbench.artifacts.save_failed_reference); the shape's cells then carry that reason.
"""

import argparse
import json
from pathlib import Path

from infbench import artifacts, devices, worker

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--manifest", required=True, help="the model's manifest.json (its directory holds the weights)")
parser.add_argument("--batch", type=int, required=True)
parser.add_argument("--seq-len", type=int, required=True)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--device", default="cpu", help="where the reference runs (fp64 is slow on a CPU)")
parser.add_argument("--log", required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
request = {"job": "reference", "manifest": args.manifest, "batch": args.batch, "seq_len": args.seq_len,
           "seed": args.seed, "device": args.device, "log": args.log, "out": args.out}
Path(args.out).unlink(missing_ok=True)
with devices.placed(args.device, timing=False), devices.host_shared(args.device):  # never beside a timing round
    reply = worker.run_job(request)
if not Path(args.out).exists():
    # the process died without a word (killed for memory, a crash): that is the cells' reason
    reason = f"the reference process exited with {reply.get('exit')} before writing {args.out} (see {args.log})"
    print(reason, flush=True)
    artifacts.save_failed_reference(Path(args.out), reason)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"status": "failed", "reason": reason}))
